"""The working-day calendar and deadline arithmetic (connector/stats/calendar.py).

Every date below was checked by hand against the official notices (cited in mappings/calendar/<year>.yaml) and a
printed calendar, and is written as a literal: the expected values are never computed by the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.national_time import PORTAL_TZ
from connector.stats.calendar import (
    DEFAULT_CALENDAR_DIR,
    DEFAULT_SESSIONS,
    DayOverride,
    WorkCalendar,
    load_calendar,
)

CAL = load_calendar(DEFAULT_CALENDAR_DIR)


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=PORTAL_TZ)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


# --- holidays of 2024–2026 --------------------------------------------------------------------------------------

TET = {
    # year: (first day off, last day off, the working day before, the first working day after)
    2024: (date(2024, 2, 8), date(2024, 2, 14), date(2024, 2, 7), date(2024, 2, 15)),
    2025: (date(2025, 1, 25), date(2025, 2, 2), date(2025, 1, 24), date(2025, 2, 3)),
    2026: (date(2026, 2, 14), date(2026, 2, 22), date(2026, 2, 13), date(2026, 2, 23)),
}


@pytest.mark.parametrize("year", sorted(TET))
def test_every_day_of_tet_is_off_and_work_resumes_on_the_announced_day(year: int) -> None:
    first, last, before, after = TET[year]
    assert [d for d in days(first, last) if CAL.is_working_day(d)] == []
    assert CAL.is_working_day(before)
    assert CAL.is_working_day(after)
    assert CAL.next_working_day(before) == after
    assert CAL.holiday_name(first + timedelta(2)) is not None


LIBERATION_AND_LABOUR_DAY = {
    # year: (days off, make-up working day or None, working days around)
    2024: (days(date(2024, 4, 27), date(2024, 5, 1)), date(2024, 5, 4), [date(2024, 4, 26), date(2024, 5, 2)]),
    2025: (days(date(2025, 4, 30), date(2025, 5, 4)), date(2025, 4, 26), [date(2025, 4, 29), date(2025, 5, 5)]),
    2026: (days(date(2026, 4, 30), date(2026, 5, 3)), None, [date(2026, 4, 28), date(2026, 4, 29), date(2026, 5, 4)]),
}


@pytest.mark.parametrize("year", sorted(LIBERATION_AND_LABOUR_DAY))
def test_30_april_and_1_may_with_the_swaps_and_their_make_up_saturdays(year: int) -> None:
    off, makeup, working = LIBERATION_AND_LABOUR_DAY[year]
    assert [d for d in off if CAL.is_working_day(d)] == []
    assert all(CAL.is_working_day(d) for d in working)
    if makeup is not None:
        assert makeup.weekday() == 5
        assert CAL.is_working_day(makeup)
        assert CAL.holiday_name(makeup) is None


def test_the_swapped_weekdays_name_their_notice() -> None:
    assert "2450/VPCP-KGVX" in (CAL.holiday_name(date(2024, 4, 29)) or "")
    assert "26/4/2025" in (CAL.holiday_name(date(2025, 5, 2)) or "")
    assert "22/8/2026" in (CAL.holiday_name(date(2026, 8, 31)) or "")


NATIONAL_DAY = {
    # year: (days off, the working day before, the first working day after)
    2024: (days(date(2024, 8, 31), date(2024, 9, 3)), date(2024, 8, 30), date(2024, 9, 4)),
    2025: (days(date(2025, 8, 30), date(2025, 9, 2)), date(2025, 8, 29), date(2025, 9, 3)),
    2026: (days(date(2026, 8, 29), date(2026, 9, 2)), date(2026, 8, 28), date(2026, 9, 3)),
}


@pytest.mark.parametrize("year", sorted(NATIONAL_DAY))
def test_2_september_and_its_adjacent_day(year: int) -> None:
    off, before, after = NATIONAL_DAY[year]
    assert [d for d in off if CAL.is_working_day(d)] == []
    assert CAL.next_working_day(before) == after


def test_sat_22_august_2026_is_worked_for_mon_31_august() -> None:
    assert CAL.is_working_day(date(2026, 8, 22))
    assert not CAL.is_working_day(date(2026, 8, 31))


def test_hung_kings_day_on_a_sunday_is_made_up_on_the_monday() -> None:
    assert not CAL.is_working_day(date(2026, 4, 26))  # Sunday, 10/3 lunar
    assert CAL.holiday_name(date(2026, 4, 26)) is not None  # a holiday, not a plain weekend day
    assert not CAL.is_working_day(date(2026, 4, 27))
    assert CAL.is_working_day(date(2026, 4, 28))
    assert not CAL.is_working_day(date(2024, 4, 18))  # Thursday
    assert not CAL.is_working_day(date(2025, 4, 7))  # Monday


def test_new_year_2026_swap_from_the_override_file() -> None:
    assert not CAL.is_working_day(date(2026, 1, 1))
    assert not CAL.is_working_day(date(2026, 1, 2))  # Friday, swapped
    assert "12729/VPCP-KGVX" in (CAL.holiday_name(date(2026, 1, 2)) or "")
    assert CAL.is_working_day(date(2026, 1, 10))  # Saturday, worked
    assert CAL.next_working_day(date(2025, 12, 31)) == date(2026, 1, 5)
    assert CAL.next_working_day(date(2026, 1, 9)) == date(2026, 1, 10)
    assert CAL.next_working_day(date(2026, 1, 10)) == date(2026, 1, 12)


def test_without_overrides_the_make_up_saturday_is_a_weekend_day() -> None:
    bare = WorkCalendar()
    assert not bare.is_working_day(date(2026, 1, 10))
    assert bare.holiday_name(date(2026, 1, 10)) is None  # a plain weekend day has no name
    assert not bare.is_working_day(date(2026, 9, 2))
    assert bare.holiday_name(date(2027, 9, 2)) == "Quốc khánh"  # the package, in Vietnamese whatever the locale


def test_vietnamese_culture_day_2026_is_kept_as_a_day_off() -> None:
    assert not CAL.is_working_day(date(2026, 11, 24))
    assert "80-NQ/TW" in (CAL.holiday_name(date(2026, 11, 24)) or "")


def test_an_unconfirmed_entry_is_listed_but_not_applied_unless_asked() -> None:
    assert not CAL.is_working_day(date(2025, 2, 15))
    assert [o.day for o in CAL.unapplied] == [date(2025, 2, 15)]
    applied = load_calendar(DEFAULT_CALENDAR_DIR, apply_unconfirmed=True)
    assert applied.is_working_day(date(2025, 2, 15))
    assert applied.unapplied == ()


def test_an_override_wins_over_the_package_both_ways() -> None:
    cal = WorkCalendar([DayOverride(date(2027, 9, 2), off=False, notice="worked"),
                        DayOverride(date(2027, 3, 3), off=True, notice="closed: test notice")])
    assert cal.is_working_day(date(2027, 9, 2))
    assert not cal.is_working_day(date(2027, 3, 3))
    assert cal.holiday_name(date(2027, 3, 3)) == "closed: test notice"


def test_a_day_overridden_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        WorkCalendar([DayOverride(date(2027, 3, 3), off=True, notice="a"),
                      DayOverride(date(2027, 3, 3), off=False, notice="b")])


def test_a_datetime_is_not_taken_for_a_date() -> None:
    with pytest.raises(TypeError):
        CAL.is_working_day(at(2026, 1, 2, 10))


# --- working hours ------------------------------------------------------------------------------------------------


def test_one_working_day_is_eight_working_hours_from_the_receipt() -> None:
    assert CAL.hours_per_day == 8.0
    assert CAL.add_working_days(at(2026, 1, 5, 10), 1) == at(2026, 1, 6, 10)  # Mon 10:00 → Tue 10:00
    # Tue 6, Wed 7, Thu 8, Fri 9, then the make-up Saturday 10/1 is the fifth working day; Sunday 11/1 is not.
    assert CAL.add_working_days(at(2026, 1, 5, 10), 5) == at(2026, 1, 10, 10)
    assert CAL.add_working_days(at(2026, 1, 5, 10), 6) == at(2026, 1, 12, 10)


def test_a_receipt_after_the_afternoon_close_counts_from_the_next_morning() -> None:
    # Mon 5/1/2026 17:30: Tue 07:00–11:30 (4.5 h) + 13:30–17:00 (3.5 h) = 8 h, ending at the close.
    assert CAL.add_working_hours(at(2026, 1, 5, 17, 30), 8) == at(2026, 1, 6, 17)
    assert CAL.add_working_days(at(2026, 1, 5, 17, 30), 1) == at(2026, 1, 6, 17)
    assert CAL.add_working_hours(at(2026, 1, 5, 17, 30), 0.5) == at(2026, 1, 6, 7, 30)


def test_a_receipt_at_lunch_counts_from_the_afternoon_session() -> None:
    assert CAL.add_working_hours(at(2026, 1, 5, 12), 1) == at(2026, 1, 5, 14, 30)
    assert CAL.add_working_hours(at(2026, 1, 5, 12), 8) == at(2026, 1, 6, 11, 30)  # 3.5 h Mon + 4.5 h Tue


def test_a_receipt_before_opening_or_on_a_day_off_counts_from_the_next_session() -> None:
    assert CAL.add_working_hours(at(2026, 1, 5, 6), 1) == at(2026, 1, 5, 8)
    assert CAL.add_working_hours(at(2026, 1, 3, 9), 1) == at(2026, 1, 5, 8)  # Saturday 3/1 (not a make-up day)
    assert CAL.add_working_hours(at(2026, 1, 2, 9), 1) == at(2026, 1, 5, 8)  # Friday 2/1, swapped


def test_a_count_that_ends_at_the_morning_close_ends_there() -> None:
    assert CAL.add_working_hours(at(2026, 1, 5, 7), 4.5) == at(2026, 1, 5, 11, 30)
    assert CAL.add_working_hours(at(2026, 1, 5, 11, 30), 1) == at(2026, 1, 5, 14, 30)


def test_working_hours_across_tet_2026() -> None:
    # Fri 13/2 15:00: 2 h to the close, then Tết 14/2–22/2, then 2 h on Mon 23/2.
    assert CAL.add_working_hours(at(2026, 2, 13, 15), 4) == at(2026, 2, 23, 9)
    assert CAL.working_time_between(at(2026, 2, 13, 15), at(2026, 2, 23, 9)) == timedelta(hours=4)


def test_minutes_are_exact() -> None:
    assert CAL.add_working_hours(at(2026, 1, 5, 11, 29), 1 / 60) == at(2026, 1, 5, 11, 30)
    assert CAL.add_working_hours(at(2026, 1, 5, 11, 29), 2 / 60) == at(2026, 1, 5, 13, 31)
    assert CAL.add_working_hours(at(2026, 1, 5, 7), 0.1) == at(2026, 1, 5, 7, 6)


def test_working_time_across_a_weekend_and_across_lunch() -> None:
    fri, mon = at(2026, 1, 16, 16), at(2026, 1, 19, 8)
    assert CAL.working_time_between(fri, mon) == timedelta(hours=2)
    assert CAL.working_time_between(mon, fri) == -timedelta(hours=2)
    assert CAL.working_time_between(at(2026, 1, 19, 11), at(2026, 1, 19, 14)) == timedelta(hours=1)
    assert CAL.working_time_between(at(2026, 1, 19, 12), at(2026, 1, 19, 13)) == timedelta(0)
    # Fri 9/1 16:00 → Mon 12/1 08:00 passes the make-up Saturday 10/1: 1 + 8 + 1 hours.
    assert CAL.working_time_between(at(2026, 1, 9, 16), at(2026, 1, 12, 8)) == timedelta(hours=10)


def test_times_in_other_zones_are_read_and_returned_in_vietnam_time() -> None:
    due = CAL.add_working_days(datetime(2026, 1, 5, 3, 0, tzinfo=UTC), 1)  # 10:00 in Hanoi
    assert due == at(2026, 1, 6, 10)
    assert due.tzinfo is PORTAL_TZ


def test_bad_amounts_and_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="zone"):
        CAL.add_working_hours(datetime(2026, 1, 5, 10), 1)
    for hours in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="hours"):
            CAL.add_working_hours(at(2026, 1, 5, 10), hours)
    with pytest.raises(ValueError, match="whole number"):
        CAL.add_working_days(at(2026, 1, 5, 10), -1)
    with pytest.raises(ValueError, match="not a deadline"):
        CAL.working_time_between(at(1, 1, 1), at(9999, 1, 1))


def test_zero_is_the_start_itself() -> None:
    assert CAL.add_working_hours(at(2026, 1, 5, 12), 0) == at(2026, 1, 5, 12)
    assert CAL.add_working_days(at(2026, 1, 5, 12), 0) == at(2026, 1, 5, 12)


def test_working_days_between_counts_the_end_not_the_start() -> None:
    assert CAL.working_days_between(date(2026, 2, 13), date(2026, 2, 23)) == 1
    # 2/1 off, 3–4 weekend, 5–9 (5), Sat 10 worked (1), 11 Sunday, Mon 12 (1).
    assert CAL.working_days_between(date(2026, 1, 1), date(2026, 1, 12)) == 7
    assert CAL.working_days_between(date(2026, 1, 12), date(2026, 1, 1)) == 0
    assert CAL.working_days_between(date(2026, 1, 12), date(2026, 1, 12)) == 0


# --- configurable sessions ------------------------------------------------------------------------------------------


def test_one_session_a_day() -> None:
    cal = WorkCalendar(sessions=[(time(8), time(16))])
    assert cal.hours_per_day == 8.0
    assert cal.close_of(date(2026, 3, 2)) == at(2026, 3, 2, 16)
    assert cal.add_working_hours(at(2026, 3, 2, 15), 2) == at(2026, 3, 3, 9)
    assert cal.add_working_hours(at(2026, 3, 2, 12), 1) == at(2026, 3, 2, 13)  # no lunch break
    assert cal.add_working_days(at(2026, 3, 2, 10), 1) == at(2026, 3, 3, 10)


def test_a_shorter_day_makes_a_working_day_shorter() -> None:
    cal = WorkCalendar(sessions=[(time(8), time(12)), (time(13), time(16, 30))])
    assert cal.hours_per_day == 7.5
    assert cal.add_working_days(at(2026, 3, 2, 16, 30), 1) == at(2026, 3, 3, 16, 30)


@pytest.mark.parametrize("sessions", [
    [],
    [(time(11), time(9))],
    [(time(9), time(9))],
    [(time(7), time(12)), (time(11), time(17))],
    [(time(13), time(17)), (time(7), time(11))],
    [(time(7, tzinfo=UTC), time(11))],
    [("07:00", "11:00")],
    [(time(7),)],
])
def test_bad_sessions_are_refused(sessions: list[tuple[time, time]]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        WorkCalendar(sessions=sessions)


def test_the_default_sessions() -> None:
    assert CAL.sessions == DEFAULT_SESSIONS == ((time(7), time(11, 30)), (time(13, 30), time(17)))
    assert CAL.close_of(date(2026, 1, 3)) == at(2026, 1, 3, 17)


# --- Civil Code: days and months ------------------------------------------------------------------------------------


def test_calendar_days_do_not_count_the_first_day_and_end_at_the_close() -> None:
    assert CAL.add_calendar_days(at(2026, 1, 5, 9), 1) == at(2026, 1, 6, 17)
    assert CAL.add_calendar_days(at(2026, 1, 5, 23, 59), 1) == at(2026, 1, 6, 17)


def test_a_due_day_that_is_a_holiday_moves_to_the_close_of_the_next_working_day() -> None:
    # Mon 20/4/2026 + 10 days = Thu 30/4, off; 1/5 off; 2–3/5 the weekend: Mon 4/5 at the close.
    assert CAL.add_calendar_days(at(2026, 4, 20, 10), 10) == at(2026, 5, 4, 17)
    # Ending on a Sunday: Mon 5/1 + 6 = Sun 11/1 → Mon 12/1.
    assert CAL.add_calendar_days(at(2026, 1, 5, 10), 6) == at(2026, 1, 12, 17)


def test_a_due_day_that_is_a_make_up_saturday_stays() -> None:
    assert CAL.add_calendar_days(at(2026, 1, 3, 10), 7) == at(2026, 1, 10, 17)


def test_civil_code_months() -> None:
    assert CAL.add_months(at(2025, 1, 31, 10), 1) == at(2025, 2, 28, 17)  # Friday
    assert CAL.add_months(at(2024, 1, 31, 10), 1) == at(2024, 2, 29, 17)  # leap year, Thursday
    assert CAL.add_months(at(2026, 1, 31, 10), 1) == at(2026, 3, 2, 17)  # 28/2/2026 is a Saturday
    assert CAL.add_months(at(2026, 1, 15, 10), 1) == at(2026, 2, 23, 17)  # 15/2/2026 is in Tết
    assert CAL.add_months(at(2025, 12, 15, 10), 1) == at(2026, 1, 15, 17)
    assert CAL.add_months(at(2025, 11, 30, 10), 3) == at(2026, 3, 2, 17)
    assert CAL.add_months(at(2026, 3, 31, 10), 12) == at(2027, 3, 31, 17)


# --- properties -----------------------------------------------------------------------------------------------------


@st.composite
def inside_a_session(draw: st.DrawFn) -> datetime:
    day = date(2024, 1, 1) + timedelta(draw(st.integers(0, 3 * 366)))
    if not CAL.is_working_day(day):
        day = CAL.next_working_day(day)
    start, end = draw(st.sampled_from(DEFAULT_SESSIONS))
    opens = datetime.combine(day, start, tzinfo=PORTAL_TZ)
    length = datetime.combine(day, end, tzinfo=PORTAL_TZ) - opens
    return opens + timedelta(seconds=draw(st.integers(0, int(length.total_seconds()) - 1)))


minutes = st.integers(0, 60 * 8 * 40)  # up to 40 working days


@settings(max_examples=300, deadline=None)
@given(inside_a_session(), minutes, minutes)
def test_adding_working_hours_in_two_steps_is_adding_them_at_once(start: datetime, a: int, b: int) -> None:
    assert CAL.add_working_hours(start, (a + b) / 60) == CAL.add_working_hours(CAL.add_working_hours(start, a / 60),
                                                                               b / 60)


@settings(max_examples=300, deadline=None)
@given(inside_a_session(), minutes)
def test_the_working_time_to_a_due_time_is_the_hours_added(start: datetime, m: int) -> None:
    due = CAL.add_working_hours(start, m / 60)
    assert due >= start
    assert CAL.working_time_between(start, due) == timedelta(minutes=m)
    assert CAL.working_time_between(due, start) == -timedelta(minutes=m)


@settings(max_examples=100, deadline=None)
@given(inside_a_session(), st.integers(0, 30))
def test_working_days_are_eight_working_hours_each(start: datetime, n: int) -> None:
    assert CAL.add_working_days(start, n) == CAL.add_working_hours(start, 8 * n)
