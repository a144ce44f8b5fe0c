"""The statistics loop: reports and the index read from the state store, and the scheduled UpdateStatistic push.

Where time, storage and the portal meet for statistics; the rules stay in the pure modules beside it. The push
is idempotent per agency × month: a record the portal accepted is kept with its digest, and the same record is
not sent again. A push that fails is kept as failed (with the error) and tried again at the next run; nothing
is lost by a crash, because every record is computed afresh from the dossiers' facts.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic_core import to_json

from connector.config import Settings
from connector.errors import SyncError
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.portal.gateway import PortalGateway
from connector.stats.facts import DossierFacts, facts_from_row
from connector.stats.index import AgencyIndex, build_index
from connector.stats.report import GroupBy, Period, Report, build_report
from connector.stats.statistic import statistic_record
from connector.store import StateStore

log = structlog.get_logger(__name__)


async def facts_for(store: StateStore, period: Period, *, agency: str | None = None) -> list[DossierFacts]:
    """The facts of every dossier a report of ``period`` sees."""
    rows = await store.facts_in_view(start=period.start, end=period.end, agency_code=agency)
    return [facts_from_row(row) for row in rows]


async def load_report(store: StateStore, period: Period, *, now: datetime, group_by: GroupBy | None = None,
                      agency: str | None = None) -> Report:
    return build_report(await facts_for(store, period, agency=agency), period, now=now, group_by=group_by,
                        agency=agency)


async def load_index(store: StateStore, period: Period, *, now: datetime,
                     agency: str | None = None) -> tuple[AgencyIndex, ...]:
    facts = await facts_for(store, period, agency=agency)
    paid = await store.paid_online([f.dossier_no for f in facts if f.has_fees])
    return build_index(facts, period, now=now, paid_online=paid, agency=agency)


@dataclass(frozen=True)
class PushResult:
    agency_code: str
    period: Period
    final: bool
    outcome: str  # pushed / unchanged / failed
    error: str | None = None


def _digest(record: dict[str, object]) -> tuple[str, str]:
    text = to_json(record)
    return text.decode("utf-8"), hashlib.sha256(text).hexdigest()


class StatisticsPublisher:
    def __init__(self, settings: Settings, store: StateStore, gateway: PortalGateway, metrics: Metrics, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._settings = settings.stats
        self._store = store
        self._gateway = gateway
        self._metrics = metrics
        self._clock = clock or (lambda: datetime.now(PORTAL_TZ))

    async def push_month(self, period: Period, *, final: bool | None = None, force: bool = False,
                         agency: str | None = None) -> list[PushResult]:
        """Push every agency's record of the month ``period`` (final once the month is over, unless told);
        an agency whose record the portal already holds is left alone unless ``force``."""
        now = self._clock()
        final = period.end <= now if final is None else final
        report = await load_report(self._store, period, now=now, agency=agency)
        known = await self._store.statistics_pushes(year=period.year, month=period.number)
        wanted = set(self._settings.agencies)
        results = []
        for row in report.rows:
            if wanted and row.agency_code not in wanted:
                continue
            record = statistic_record(row, period, final=final)
            text, digest = _digest(record)
            before = known.get(row.agency_code)
            if (not force and before is not None and before["state"] == "pushed"
                    and before["record_sha256"] == digest):
                results.append(PushResult(row.agency_code, period, final, "unchanged"))
                continue
            error: str | None = None
            try:
                await self._gateway.push_statistic(record)
            except SyncError as exc:
                error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - one agency's record must not stop the others
                error = f"{type(exc).__name__} (unexpected)"
                log.error("statistics push failed unexpectedly", agency=row.agency_code, period=str(period),
                          error=type(exc).__name__)
            await self._store.record_statistics_push(agency_code=row.agency_code, year=period.year,
                                                     month=period.number, record_json=text, record_sha256=digest,
                                                     final=final, error=error)
            outcome = "pushed" if error is None else "failed"
            self._metrics.statistics_pushes.labels(outcome).inc()
            (log.info if error is None else log.warning)(
                "statistics pushed" if error is None else "statistics push failed", agency=row.agency_code,
                period=str(period), final=final, error=error)
            results.append(PushResult(row.agency_code, period, final, outcome, error))
        return results

    async def run_once(self) -> list[PushResult]:
        """One scheduled run: the current month, and the month before as final while within ``final_days``."""
        now = self._clock()
        current = Period.month_of(now)
        results = []
        if now - current.start < timedelta(days=self._settings.final_days):
            results += await self.push_month(current.previous, final=True)
        results += await self.push_month(current, final=False)
        await self.observe(now)
        return results

    async def observe(self, now: datetime) -> None:
        """The current month's figures per agency, for the metrics."""
        report = await load_report(self._store, Period.month_of(now), now=now)
        for row in report.rows:
            for figure, value in (("received", row.received), ("resolved", row.resolved), ("late", row.late),
                                  ("overdue", row.overdue), ("pending", row.pending)):
                self._metrics.month_dossiers.labels(row.agency_code, figure).set(value)

    def next_run(self, now: datetime) -> datetime:
        local = now.astimezone(PORTAL_TZ)
        today = datetime.combine(local.date(), self._settings.daily_at, PORTAL_TZ)
        return today if today > local else today + timedelta(days=1)

    async def run(self, stop: asyncio.Event) -> None:
        """Push at start (a missed run is made up), then every day at ``daily_at``, until ``stop``."""
        while not stop.is_set():
            try:
                await self.run_once()
            except SyncError as error:  # the store unreachable: try again at the next run
                log.warning("statistics run failed", error=type(error).__name__, message=str(error))
            wait = (self.next_run(self._clock()) - self._clock()).total_seconds()
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 1.0))
            except TimeoutError:
                continue
