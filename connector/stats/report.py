"""The report table (pure): per period × agency, optionally × procedure or field (PORTAL.md §3).

Periods are half-open, [start, end) in Asia/Ho_Chi_Minh, so a moment on a boundary belongs to exactly one
period. Per period:
- received: accepted in the period (online / direct or postal); carried over: accepted before it and not ended
  before it; total = received + carried over.
- resolved: ended in the period, every end state (processed, returned, stopped, refused after examination,
  withdrawn, as the portal's index counts them), split early / on time / late by ``deadlines.judge``; withdrawn
  and refused are shown again as "of which" columns.
- pending: accepted before the end and not ended by it: within deadline / overdue at the period's end (at the
  report's moment for the current period).
- a dossier refused at the desk was never accepted and counts nowhere.
The identities total = resolved + pending and carried over(next) = pending(this) are checked on every report;
a broken one is a ``ReportInconsistent``, never a table that does not add up. Percentages are exact decimals
rounded half up to two places, and None (shown "—") when there is nothing to divide by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from connector.errors import InternalError
from connector.national_time import PORTAL_TZ
from connector.stats.deadlines import judge
from connector.stats.facts import DossierFacts

PeriodKind = Literal["month", "quarter", "year"]
GroupBy = Literal["procedure", "field"]
_PERIOD = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?$")


class ReportInconsistent(InternalError):
    """A report whose identities do not hold: a bug, reported as one rather than printed."""

    def __init__(self, message: str) -> None:
        super().__init__(ValueError(message), stage="checking the statistics report")
        self.message = message


@dataclass(frozen=True, order=True)
class Period:
    kind: PeriodKind
    year: int
    number: int  # the month (1-12), the quarter (1-4), or 1 for a year

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2026-03`` (a month), ``2026-Q1`` (a quarter) or ``2026`` (a year); ValueError otherwise."""
        found = _PERIOD.match(text.strip())
        if found is None:
            raise ValueError(f"{text!r} is not a period: write 2026-03, 2026-Q1 or 2026")
        year = int(found["year"])
        if found["month"] is not None:
            month = int(found["month"])
            if not 1 <= month <= 12:
                raise ValueError(f"{text!r}: the month must be 01 to 12")
            return cls("month", year, month)
        if found["quarter"] is not None:
            return cls("quarter", year, int(found["quarter"]))
        return cls("year", year, 1)

    @classmethod
    def month_of(cls, moment: datetime) -> Period:
        local = moment.astimezone(PORTAL_TZ)
        return cls("month", local.year, local.month)

    @property
    def first_day(self) -> date:
        month = {"month": self.number, "quarter": 3 * self.number - 2, "year": 1}[self.kind]
        return date(self.year, month, 1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), PORTAL_TZ)

    @property
    def end(self) -> datetime:
        """The next period's start (exclusive)."""
        return self.following.start

    @property
    def following(self) -> Period:
        last = {"month": 12, "quarter": 4, "year": 1}[self.kind]
        if self.number == last:
            return Period(self.kind, self.year + 1, 1)
        return Period(self.kind, self.year, self.number + 1)

    @property
    def previous(self) -> Period:
        last = {"month": 12, "quarter": 4, "year": 1}[self.kind]
        if self.number == 1:
            return Period(self.kind, self.year - 1, last)
        return Period(self.kind, self.year, self.number - 1)

    def __str__(self) -> str:
        if self.kind == "month":
            return f"{self.year}-{self.number:02d}"
        if self.kind == "quarter":
            return f"{self.year}-Q{self.number}"
        return str(self.year)


def percent(part: int, whole: int) -> Decimal | None:
    """``part`` of ``whole`` in percent, two decimals rounded half up; None when ``whole`` is 0."""
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class Row:
    """One line of the report: an agency (and a procedure or field when grouped)."""

    agency_code: str
    agency_name: str
    key: str | None = None  # the procedure or field code when the report is grouped by one
    received_online: int = 0
    received_direct: int = 0  # in person or by post
    carried_over: int = 0
    early: int = 0
    on_time: int = 0
    late: int = 0
    resolved_undetermined: int = 0  # no due time at all (not expected: mapping refuses such a dossier)
    withdrawn: int = 0  # of the resolved
    refused: int = 0  # of the resolved: refused after examination, or stopped
    within: int = 0
    overdue: int = 0
    pending_undetermined: int = 0

    @property
    def received(self) -> int:
        return self.received_online + self.received_direct

    @property
    def total(self) -> int:
        return self.received + self.carried_over

    @property
    def resolved(self) -> int:
        return self.early + self.on_time + self.late + self.resolved_undetermined

    @property
    def pending(self) -> int:
        return self.within + self.overdue + self.pending_undetermined

    @property
    def resolved_in_time(self) -> int:
        return self.early + self.on_time

    def percentages(self) -> dict[str, Decimal | None]:
        return {
            "early": percent(self.early, self.resolved),
            "on_time": percent(self.on_time, self.resolved),
            "in_time": percent(self.resolved_in_time, self.resolved),
            "late": percent(self.late, self.resolved),
            "within": percent(self.within, self.pending),
            "overdue": percent(self.overdue, self.pending),
            "online": percent(self.received_online, self.received),
        }

    def add(self, other: Row) -> None:
        for f in fields(Row):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_json(self) -> dict[str, object]:
        counts = {name: getattr(self, name) for name in COUNT_COLUMNS}
        return {"agency_code": self.agency_code, "agency_name": self.agency_name, "key": self.key, **counts,
                "percent": {k: None if v is None else str(v) for k, v in self.percentages().items()}}


COUNT_COLUMNS = ("received", "received_online", "received_direct", "carried_over", "total", "resolved", "early",
                 "on_time", "late", "resolved_undetermined", "withdrawn", "refused", "pending", "within",
                 "overdue", "pending_undetermined")


@dataclass(frozen=True)
class Report:
    period: Period
    as_of: datetime  # the moment pending dossiers were judged at: the period's end, or now for the current one
    group_by: GroupBy | None
    rows: tuple[Row, ...]
    total: Row

    def as_json(self) -> dict[str, object]:
        return {"period": str(self.period), "as_of": self.as_of.isoformat(), "group_by": self.group_by,
                "rows": [r.as_json() for r in self.rows], "total": self.total.as_json()}


def judged_at(period: Period, now: datetime) -> datetime:
    """Pending dossiers are judged at the period's end, or at ``now`` while the period runs."""
    return min(period.end, now)


def in_view(facts: DossierFacts, period: Period) -> bool:
    """Whether a dossier appears in the period's report at all."""
    return facts.counted and facts.received_at < period.end and (
        facts.ended_at is None or facts.ended_at >= period.start)


def build_report(dossiers: Iterable[DossierFacts], period: Period, *, now: datetime,
                 group_by: GroupBy | None = None, agency: str | None = None) -> Report:
    """The report of ``period`` from the dossiers' facts (any superset of the ones in view), as of ``now``."""
    at = judged_at(period, now)
    rows: dict[tuple[str, str | None], Row] = {}
    kept = [f for f in dossiers if in_view(f, period) and (agency is None or f.agency_code == agency)]
    for facts in kept:
        key = None if group_by is None else (facts.procedure_code if group_by == "procedure" else facts.field_code)
        row = rows.get((facts.agency_code, key))
        if row is None:
            row = rows[(facts.agency_code, key)] = Row(facts.agency_code, facts.agency_name, key)
        _count(row, facts, period, at)
    ordered = tuple(rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] or "")))
    total = Row("", "")
    for row in ordered:
        total.add(row)
    report = Report(period, at, group_by, ordered, total)
    check(report, kept)
    return report


def _count(row: Row, facts: DossierFacts, period: Period, at: datetime) -> None:
    if facts.received_at >= period.start:
        if facts.channel == "online":
            row.received_online += 1
        else:
            row.received_direct += 1
    else:
        row.carried_over += 1
    ended = facts.ended_at is not None and facts.ended_at < period.end
    verdict = judge(facts.clock, at if not ended else period.end)
    standing = verdict.standing
    if ended:
        if standing == "early":
            row.early += 1
        elif standing == "on_time":
            row.on_time += 1
        elif standing == "late":
            row.late += 1
        else:
            row.resolved_undetermined += 1
        if facts.terminal == "withdrawn":
            row.withdrawn += 1
        elif facts.terminal in ("refused", "stopped"):
            row.refused += 1
    elif standing == "within":
        row.within += 1
    elif standing == "overdue":
        row.overdue += 1
    else:
        row.pending_undetermined += 1


def carried_into(dossiers: Sequence[DossierFacts], period: Period) -> int:
    """Dossiers accepted before ``period`` and not ended before it, counted afresh (for the identity check)."""
    return sum(1 for f in dossiers if f.counted and f.received_at < period.start
               and (f.ended_at is None or f.ended_at >= period.start))


def pending_at_end(dossiers: Sequence[DossierFacts], period: Period) -> int:
    """Dossiers accepted before the period's end and not ended by it."""
    return sum(1 for f in dossiers if f.counted and f.received_at < period.end
               and (f.ended_at is None or f.ended_at >= period.end))


def check(report: Report, dossiers: Sequence[DossierFacts]) -> None:
    """Raise ``ReportInconsistent`` unless every identity holds."""
    broken: list[str] = []
    for row in (*report.rows, report.total):
        name = row.agency_code or "(all)"
        if row.key:
            name += f" / {row.key}"
        if row.total != row.resolved + row.pending:
            broken.append(f"{name}: total {row.total} != resolved {row.resolved} + pending {row.pending}")
        if row.withdrawn + row.refused > row.resolved:
            broken.append(f"{name}: withdrawn + refused exceed the resolved")
    if report.total.carried_over != carried_into(dossiers, report.period):
        broken.append("carried over does not match the dossiers open at the period's start")
    if report.total.pending != pending_at_end(dossiers, report.period):
        broken.append(f"pending {report.total.pending} != carried over into {report.period.following}")
    if broken:
        raise ReportInconsistent("; ".join(broken))
