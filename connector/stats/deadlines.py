"""Deadlines (pure): a dossier's due time, and how it stands against it, by the national portal's rules.

The rules (PORTAL.md §3, the portal's real-time index, indicator 2.1):
- **Due time.** The event's ``due_at``, as first seen: a re-appointed due date never turns a late dossier on time.
  A procedure without a fixed term (``due_at`` null) takes its time limit from mappings ``procedures``:
  hours are working hours inside the work sessions, working days are 8 working hours each (one-stop practice),
  days and months follow the Civil Code (Art. 147–148: the first day is not counted, the period ends at the
  close of its last day, moved to the next working day's close when that day is not a working day).
- **The end compared with the due time.** The end of processing; while waiting for a supplement, the moment it was
  requested; after the supplement arrived, the end less the pause (completed − requested). Not ended by the
  instant of judgement: that instant.
- **More than one supplement request** makes the dossier late (overdue while pending).
- **Early** (the index has no such class; this is our rule, kept stable): by date. Early when the end's date is
  before the due date's (Asia/Ho_Chi_Minh), on time when on the due date at or before the due time, late after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from connector.national_time import PORTAL_TZ
from connector.stats.calendar import WorkCalendar

TimeUnit = Literal["hours", "days", "working_days", "months"]


class TimeLimit(BaseModel):
    """A procedure's statutory time limit (mappings ``procedures.<code>.time_limit``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: int = Field(gt=0, le=10_000)
    unit: TimeUnit

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.replace('_', ' ')}"


def due_from_limit(received_at: datetime, limit: TimeLimit, calendar: WorkCalendar) -> datetime:
    """The due time of a dossier accepted at ``received_at`` under ``limit``."""
    if limit.unit == "hours":
        return calendar.add_working_hours(received_at, limit.amount)
    if limit.unit == "working_days":
        return calendar.add_working_days(received_at, limit.amount)
    if limit.unit == "days":
        return calendar.add_calendar_days(received_at, limit.amount)
    return calendar.add_months(received_at, limit.amount)


Standing = Literal["early", "on_time", "late", "within", "overdue", "undetermined"]
ENDED_STANDINGS: tuple[Standing, ...] = ("early", "on_time", "late")
PENDING_STANDINGS: tuple[Standing, ...] = ("within", "overdue")


class Clock(NamedTuple):
    """What the deadline rules need of one dossier (``facts.DossierFacts`` carries them)."""

    due_at: datetime | None  # the original due time (first seen, or from the time limit)
    ended_at: datetime | None  # the end of processing; None while in progress
    supplement_requested_at: datetime | None  # the first request
    supplement_completed_at: datetime | None  # that request's completion
    second_supplement_at: datetime | None  # a second request: the dossier is late from then on


class Verdict(NamedTuple):
    standing: Standing
    why: str | None  # for late / overdue / undetermined: the rule that decided
    end: datetime | None  # the end compared with the due time


def judge(clock: Clock, at: datetime) -> Verdict:
    """How the dossier stands at instant ``at``: ended before ``at`` → early / on time / late, otherwise pending
    → within / overdue. ``undetermined`` when it has no due time at all."""
    ended = clock.ended_at is not None and clock.ended_at < at
    if clock.due_at is None:
        return Verdict("undetermined", "no due date, and no time limit for its procedure", None)
    cut = clock.ended_at if ended and clock.ended_at is not None else at
    second = clock.second_supplement_at
    if second is not None and second <= cut:
        return Verdict("late" if ended else "overdue", "more than one supplement request", cut)
    end = _clock_end(clock, cut)
    if end > clock.due_at:
        why = f"ended {_late_by(end, clock.due_at)} after its due time" if ended else "past its due time"
        return Verdict("late" if ended else "overdue", why, end)
    if not ended:
        return Verdict("within", None, end)
    early = end.astimezone(PORTAL_TZ).date() < clock.due_at.astimezone(PORTAL_TZ).date()
    return Verdict("early" if early else "on_time", None, end)


def _clock_end(clock: Clock, cut: datetime) -> datetime:
    """The end as the portal compares it: ``cut`` (the end, or the instant of judgement), stopped at a supplement
    request still open then, less the pause of one completed before it."""
    requested = clock.supplement_requested_at
    if requested is None or requested > cut:
        return cut
    completed = clock.supplement_completed_at
    if completed is None or completed > cut:
        return requested  # waiting for the citizen: the clock stopped when the supplement was asked for
    return cut - (completed - requested)


def _late_by(end: datetime, due: datetime) -> str:
    late = end - due
    if late >= timedelta(days=1):
        return f"{late.days} day(s)"
    hours, rest = divmod(int(late.total_seconds()), 3600)
    return f"{hours} h {rest // 60} min"
