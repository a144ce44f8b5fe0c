"""Backfill and reconcile: the portal re-aligned with local truth, the ledger's newest state of each dossier.

- **backfill** sends again the newest state the ledger holds of each selected dossier: for a new portal
  environment, or after the portal lost data;
- **reconcile** asks the portal (``TraCuuHoSo``) what it holds of each selected dossier and reports where
  that differs from the ledger's newest state; with ``fix``, sends those again.

Both call the adapter through a ``PortalGateway`` (rate limit, retries, breaker). Neither pushes an older
state over a newer one for good: the daemon may sync a newer version of a dossier while we send ours, and
ours may reach the portal last. So after sending, the ledger is read again, and a dossier whose newer
version was recorded meanwhile has that newer state sent too, until the ledger stands still. (What the
daemon has pushed but not yet recorded is the one window left; the next reconcile shows it.)

A dossier that started on the national portal is kept in the ledger as the ``DongBoTrangThaiHoSo`` data the
daemon sent back (``mapping.is_status_back`` tells it from a ``DongBoHoSoMC`` record): it is sent again the
same way, one dossier per call, and recorded again with the outcome ``status_back``, never as a whole record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from connector.config import Settings
from connector.errors import RetryableError, SyncError
from connector.observability import Metrics
from connector.portal.gateway import PortalGateway, RecordPush, open_gateway
from connector.push.mapping import is_status_back
from connector.store import LedgerFilter, LedgerRecord, StateStore

T = TypeVar("T")
SendState = Literal["sent", "failed", "not_kept"]
FindingState = Literal["same", "missing", "differs", "not_kept", "error"]

# The fields reconcile compares unless told otherwise: the status is what citizens see on the portal.
DEFAULT_COMPARED_FIELDS = ("TrangThaiHoSo",)
# Sending again because the daemon moved on meanwhile: a few rounds settle any dossier that is not being
# updated continuously; one that still moves is reported, and its own next event will carry it anyway.
MAX_ROUNDS = 5
_NOT_KEPT = "the ledger has no record of it to send (synced before the ledger kept records)"
# The ledger outcome of a state sent back with DongBoTrangThaiHoSo, kept as it is when re-sent.
STATUS_BACK_OUTCOME = "status_back"


@dataclass(frozen=True)
class Sent:
    """What became of one dossier sent again."""

    dossier_no: str
    version: int  # the version sent last (newer than the one selected if the daemon moved on meanwhile)
    state: SendState
    detail: str


@dataclass(frozen=True)
class Finding:
    """What the portal holds of one dossier, against the ledger's newest state."""

    dossier_no: str
    version: int
    state: FindingState
    detail: str
    differences: dict[str, dict[str, str | None]] = field(default_factory=dict)  # field → {local, portal}
    fixed: bool | None = None  # None: no fix asked (or nothing to fix)


def compare(local: Mapping[str, Any], portal: Mapping[str, Any] | None,
            fields: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """Where the portal's record differs from ours, field by field, as text (an adapter may answer a code
    as a number). An empty answer: the same. Only called with a portal record."""
    if portal is None:
        return {}
    found: dict[str, dict[str, str | None]] = {}
    for name in fields:
        ours, theirs = _text(local.get(name)), _text(portal.get(name))
        if ours != theirs:
            found[name] = {"local": ours, "portal": theirs}
    return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def finding_for(record: LedgerRecord, portal: Mapping[str, Any] | None, fields: Sequence[str]) -> Finding:
    """The verdict on one dossier, from the ledger's newest record and the portal's answer."""
    if record.record_json is None:
        return Finding(record.dossier_no, record.version, "not_kept", _NOT_KEPT)
    if portal is None:
        return Finding(record.dossier_no, record.version, "missing", "the portal does not have this dossier")
    differences = compare(json.loads(record.record_json), portal, fields)
    if differences:
        named = ", ".join(f"{name} {d['portal']!r} on the portal, {d['local']!r} here"
                          for name, d in differences.items())
        return Finding(record.dossier_no, record.version, "differs", named, differences)
    return Finding(record.dossier_no, record.version, "same", "")


class Reconciler:
    def __init__(self, store: StateStore, gateway: PortalGateway, *, batch_records: int, concurrency: int,
                 give_up_after: float | None = None) -> None:
        self.store = store
        self._gateway = gateway
        self._batch = batch_records
        self._limit = asyncio.Semaphore(max(1, concurrency))
        # The gateway waits out an unavailable adapter for as long as it takes, as the daemon must; an
        # operator's command should rather end and say so. Once a call gives up, the rest are not tried.
        self._give_up_after = give_up_after
        self._gave_up: str | None = None

    @classmethod
    def for_settings(cls, store: StateStore, gateway: PortalGateway, settings: Settings, *,
                     give_up_after: float | None = None) -> Reconciler:
        # Twice the adapter's concurrency in flight: enough to keep its limiter busy, not a flood.
        return cls(store, gateway, batch_records=settings.push.max_batch_records,
                   concurrency=settings.portal.rate_limit.max_concurrent_requests * 2, give_up_after=give_up_after)

    async def _within_patience(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._gave_up is not None:
            raise StoppedWaiting(self._gave_up)
        try:
            async with asyncio.timeout(self._give_up_after):
                return await call()
        except TimeoutError:
            self._gave_up = (f"not done: the adapter did not answer usefully within {self._give_up_after:g} s "
                             f"(unavailable, or refusing us); the rest was not tried")
            raise StoppedWaiting(self._gave_up) from None

    async def send(self, records: Sequence[LedgerRecord], *, outcome: str,
                   on_portal: Mapping[str, bool] | None = None) -> list[Sent]:
        """Send each record's state again, then the newer state of any dossier that moved on meanwhile.

        ``on_portal`` says which dossiers the portal has (from a lookup): those go as updates, the others as
        creates. Unknown ones go as creates, which the client turns into an update when the portal answers
        that the dossier already exists.
        """
        done: dict[str, Sent] = {}
        todo: list[LedgerRecord] = []
        for record in records:
            if record.record_json is None:
                done[record.dossier_no] = Sent(record.dossier_no, record.version, "not_kept", _NOT_KEPT)
            else:
                todo.append(record)
        moved: set[str] = set()
        for _ in range(MAX_ROUNDS):
            if not todo:
                break
            bodies = [json.loads(record.record_json or "{}") for record in todo]
            answers = await self._push(todo, bodies, on_portal or {})
            accepted = [record for record, answer in zip(todo, answers, strict=True) if answer is None]
            back = {record.dossier_no for record, body in zip(todo, bodies, strict=True) if is_status_back(body)}
            for record, answer in zip(todo, answers, strict=True):
                if answer is not None:
                    done[record.dossier_no] = Sent(record.dossier_no, record.version, "failed", answer)
            # Recorded only where the ledger has nothing newer (the store never moves a version back). A status
            # back keeps its outcome: it says how the dossier's state is sent.
            await self.store.record_synced_many([
                record.synced(STATUS_BACK_OUTCOME if record.dossier_no in back else outcome) for record in accepted])
            now = await self.store.ledger_records_of([record.dossier_no for record in accepted])
            todo = []
            for record in accepted:
                newest = now.get(record.dossier_no)
                if newest is not None and newest.version > record.version:
                    moved.add(record.dossier_no)
                    todo.append(newest)  # ours may have reached the portal after the newer one: send it too
                else:
                    detail = "sent; a newer version synced meanwhile was sent after it" \
                        if record.dossier_no in moved else "sent"
                    if record.dossier_no in back:
                        detail += " (as its status back, DongBoTrangThaiHoSo: it started on the national portal)"
                    done[record.dossier_no] = Sent(record.dossier_no, record.version, "sent", detail)
        for record in todo:
            done[record.dossier_no] = Sent(record.dossier_no, record.version, "failed",
                                           f"still changing after {MAX_ROUNDS} rounds; its own next event will "
                                           f"carry its newest state")
        return [done[record.dossier_no] for record in records]

    async def _push(self, records: list[LedgerRecord], bodies: list[dict[str, Any]],
                    on_portal: Mapping[str, bool]) -> list[str | None]:
        """Each record's body (``records[i].record_json`` read) sent again: DongBoHoSoMC in batches, a status
        back with DongBoTrangThaiHoSo one by one; per record, None when the portal took it, else why not."""
        answers: list[str | None] = [None] * len(records)
        whole = [i for i, body in enumerate(bodies) if not is_status_back(body)]

        async def batch(indexes: list[int]) -> None:
            pushes = [RecordPush(bodies[i], on_portal.get(records[i].dossier_no, False),
                                 len(records[i].record_json or "")) for i in indexes]
            async with self._limit:
                try:
                    results = await self._within_patience(
                        lambda: self._gateway.push_records(pushes, lambda _i, _answer: None))
                except StoppedWaiting as gave_up:
                    results = [gave_up] * len(pushes)
            for index, result in zip(indexes, results, strict=True):
                if isinstance(result, BaseException):
                    answers[index] = _why(result)

        async def status_back(index: int) -> None:
            async with self._limit:
                try:
                    await self._within_patience(lambda: self._gateway.push_status(bodies[index]))
                except (StoppedWaiting, SyncError) as error:
                    answers[index] = _why(error)

        await asyncio.gather(*(batch(whole[start:start + self._batch]) for start in range(0, len(whole), self._batch)),
                             *(status_back(i) for i, body in enumerate(bodies) if is_status_back(body)))
        return answers

    async def check(self, records: Sequence[LedgerRecord], fields: Sequence[str] = DEFAULT_COMPARED_FIELDS, *,
                    fix: bool = False, settle_seconds: float = 0.0,
                    on_done: Callable[[Finding], None] = lambda _f: None) -> list[Finding]:
        """Look each dossier up on the portal and compare it with the ledger's newest state; with ``fix``,
        send the missing and differing ones again.

        A dossier the daemon is syncing right now can look different: its newer record is on the portal, its
        ledger row not yet written. So before fixing, wait ``settle_seconds`` and look again: only a dossier
        still wrong, whose ledger row did not change meanwhile, is sent."""
        findings, newest = await self._compare(records, fields)
        if fix:
            wrong = [f for f in findings if f.state in ("missing", "differs")]
            if wrong and settle_seconds > 0:
                await asyncio.sleep(settle_seconds)  # a deliberate wait: let in-flight syncs finish
                again, newest_again = await self._compare([newest[f.dossier_no] for f in wrong], fields)
                by_no = {f.dossier_no: f for f in again}
                moved = {no for no in by_no if newest_again.get(no) != newest.get(no)}
                findings = [_settled(f, by_no[f.dossier_no], f.dossier_no in moved) if f.dossier_no in by_no else f
                            for f in findings]
                newest = {**newest, **newest_again}
            findings = await self._fix(findings, newest)
        for finding in findings:
            on_done(finding)
        return findings

    async def _compare(self, records: Sequence[LedgerRecord],
                       fields: Sequence[str]) -> tuple[list[Finding], dict[str, LedgerRecord]]:
        async def look(record: LedgerRecord) -> dict[str, Any] | str | None:
            if record.record_json is None:
                return None  # nothing to compare with: no need to ask
            async with self._limit:
                try:
                    return await self._within_patience(lambda: self._gateway.lookup(record.dossier_no))
                except StoppedWaiting as gave_up:
                    return str(gave_up)
                except SyncError as error:
                    return _why(error)

        answers = await asyncio.gather(*(look(record) for record in records))
        # The ledger read after the portal answered: a version synced meanwhile is then not a false alarm.
        newest = await self.store.ledger_records_of([record.dossier_no for record in records])
        findings: list[Finding] = []
        for record, answer in zip(records, answers, strict=True):
            current = newest.get(record.dossier_no, record)
            if isinstance(answer, str):
                findings.append(Finding(record.dossier_no, current.version, "error", f"lookup failed: {answer}"))
            else:
                findings.append(finding_for(current, answer, fields))
        return findings, newest

    async def _fix(self, findings: list[Finding], newest: Mapping[str, LedgerRecord]) -> list[Finding]:
        wrong = [f for f in findings if f.state in ("missing", "differs") and f.fixed is None]
        if not wrong:
            return findings
        sent = {s.dossier_no: s for s in await self.send(
            [newest[f.dossier_no] for f in wrong], outcome="reconciled",
            on_portal={f.dossier_no: f.state == "differs" for f in wrong})}
        fixed: list[Finding] = []
        for finding in findings:
            outcome = sent.get(finding.dossier_no)
            if outcome is None:
                fixed.append(finding)
            else:
                detail = finding.detail + ("; sent again" if outcome.state == "sent" else f"; not fixed: "
                                           f"{outcome.detail}")
                fixed.append(Finding(finding.dossier_no, outcome.version, finding.state, detail,
                                     finding.differences, outcome.state == "sent"))
        return fixed


def _settled(first: Finding, again: Finding, moved: bool) -> Finding:
    """The verdict after the second look: a dossier whose ledger row changed in between is being synced,
    and is left alone (fixed False: check it again later); otherwise the second look stands."""
    if moved and again.state in ("missing", "differs"):
        return Finding(again.dossier_no, again.version, again.state,
                       again.detail + "; being synced while checked: not fixed, check it again", again.differences,
                       fixed=False)
    return again


class StoppedWaiting(RetryableError):
    """An operator's command stopped waiting for the adapter (its ``give_up_after``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="stopped_waiting")


def _why(error: BaseException) -> str:
    if isinstance(error, StoppedWaiting):
        return str(error)
    if isinstance(error, SyncError):
        return f"{error.reason}: {error}"
    return type(error).__name__


async def selected(store: StateStore, where: LedgerFilter, *, sample: int | None = None,
                   page: int = 500) -> AsyncIterator[list[LedgerRecord]]:
    """The selected ledger rows, a page at a time (``sample``: that many, drawn at random)."""
    if sample is not None:
        drawn = await store.sample_ledger(where, sample)
        for start in range(0, len(drawn), page):
            yield drawn[start:start + page]
        return
    after = ""
    while rows := await store.ledger_records(where, after=after, limit=page):
        yield rows
        after = rows[-1].dossier_no


@contextlib.asynccontextmanager
async def open_reconciler(settings: Settings, *, store: StateStore | None = None, gateway: PortalGateway | None = None,
                         give_up_after: float | None = None) -> AsyncIterator[Reconciler]:
    """A reconciler with its own connections (or a running daemon's store and gateway)."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await StateStore.open(settings.state.url)
            stack.push_async_callback(store.close)
        if gateway is None:
            gateway = open_gateway(settings, store, Metrics(), stack).gateway
        yield Reconciler.for_settings(store, gateway, settings, give_up_after=give_up_after)
