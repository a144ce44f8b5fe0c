"""The portal's on-time rules, one case each, times written by hand."""

from __future__ import annotations

from datetime import datetime

import pytest

from connector.national_time import PORTAL_TZ
from connector.stats.calendar import WorkCalendar
from connector.stats.deadlines import Clock, TimeLimit, due_from_limit, judge


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PORTAL_TZ)


DUE = at("2026-03-20T17:00:00")  # a Friday
END_OF_MARCH = at("2026-04-01T00:00:00")


def clock(end: str | None = None, *, due: datetime | None = DUE, asked: str | None = None,
          supplied: str | None = None, second: str | None = None) -> Clock:
    return Clock(due, at(end) if end else None, at(asked) if asked else None, at(supplied) if supplied else None,
                 at(second) if second else None)


@pytest.mark.parametrize(("end", "standing"), [
    ("2026-03-19T16:00:00", "early"),  # a date before the due date
    ("2026-03-20T08:00:00", "on_time"),  # on the due date, before the due time
    ("2026-03-20T17:00:00", "on_time"),  # end ≤ due
    ("2026-03-20T17:00:01", "late"),
    ("2026-03-23T09:00:00", "late"),
])
def test_an_ended_dossier_by_date(end: str, standing: str) -> None:
    assert judge(clock(end), END_OF_MARCH).standing == standing


def test_a_completed_supplement_pauses_the_clock() -> None:
    # Ended Tue 24/3 10:00, 4 days late; the citizen took Mon 9/3 10:00 → Fri 13/3 10:00 (4 days): end 20/3 10:00.
    verdict = judge(clock("2026-03-24T10:00:00", asked="2026-03-09T10:00:00", supplied="2026-03-13T10:00:00"),
                    END_OF_MARCH)
    assert (verdict.standing, verdict.end) == ("on_time", at("2026-03-20T10:00:00"))


def test_ended_while_waiting_for_the_citizen_ends_at_the_request() -> None:
    verdict = judge(clock("2026-03-28T10:00:00", asked="2026-03-18T10:00:00"), END_OF_MARCH)
    assert (verdict.standing, verdict.end) == ("early", at("2026-03-18T10:00:00"))


def test_more_than_one_supplement_request_is_late_whatever_the_dates() -> None:
    verdict = judge(clock("2026-03-10T10:00:00", asked="2026-03-03T10:00:00", supplied="2026-03-04T10:00:00",
                          second="2026-03-05T10:00:00"), END_OF_MARCH)
    assert verdict.standing == "late" and verdict.why == "more than one supplement request"


def test_a_second_request_after_the_judged_instant_does_not_count_yet() -> None:
    pending = clock(asked="2026-03-03T10:00:00", supplied="2026-03-04T10:00:00", second="2026-04-03T10:00:00",
                    due=at("2026-04-10T17:00:00"))
    assert judge(pending, END_OF_MARCH).standing == "within"


@pytest.mark.parametrize(("due", "standing"), [(at("2026-04-01T00:00:00"), "within"),
                                               (at("2026-03-31T17:00:00"), "overdue")])
def test_a_pending_dossier_is_judged_at_the_period_end(due: datetime, standing: str) -> None:
    assert judge(clock(due=due), END_OF_MARCH).standing == standing


def test_waiting_for_a_supplement_asked_before_the_due_time_is_within_deadline() -> None:
    assert judge(clock(asked="2026-03-19T10:00:00"), END_OF_MARCH).standing == "within"


def test_no_due_time_at_all_is_undetermined_never_early() -> None:
    assert judge(clock("2026-03-10T10:00:00", due=None), END_OF_MARCH).standing == "undetermined"


@pytest.mark.parametrize(("limit", "due"), [
    (TimeLimit(amount=8, unit="hours"), "2026-03-03T08:00:00"),  # Mon 08:00 + 8 working hours
    (TimeLimit(amount=5, unit="working_days"), "2026-03-09T08:00:00"),  # Mon + 5 working days: next Mon
    (TimeLimit(amount=5, unit="days"), "2026-03-09T17:00:00"),  # Sat 7/3 is the 5th day: moved to Mon's close
    (TimeLimit(amount=1, unit="months"), "2026-04-02T17:00:00"),  # 2/4 is a Thursday
])
def test_the_due_time_from_a_time_limit(limit: TimeLimit, due: str) -> None:
    assert due_from_limit(at("2026-03-02T08:00:00"), limit, WorkCalendar()) == at(due)
