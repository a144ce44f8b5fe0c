"""The report's periods, percentages, identities and the UpdateStatistic record built from a row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connector.config import Settings
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.stats.facts import DossierFacts
from connector.stats.publisher import StatisticsPublisher
from connector.stats.report import Period, Report, ReportInconsistent, Row, build_report, check, percent
from connector.stats.statistic import statistic_record


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PORTAL_TZ)


def dossier(no: str, received: str, *, ended: str | None = None, due: str = "2026-03-20T17:00:00",
            terminal: str | None = None, channel: str = "direct") -> DossierFacts:
    return DossierFacts(
        dossier_no=no, version=1, agency_code="000.00.01.G12", agency_name="Cục A", procedure_code="P",
        field_code="F", channel=channel, received_at=at(received), due_at=at(due), due_from_limit=False,
        national_status=9 if ended else 4, terminal=terminal or ("processed" if ended else None),
        ended_at=at(ended) if ended else None, returned_at=None, supplement_requests=0,
        supplement_requested_at=None, supplement_completed_at=None, second_supplement_at=None, has_fees=False,
        ever_accepted=True)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-03", "2026-03-01T00:00:00", "2026-04-01T00:00:00"),
    ("2026-12", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ("2026-Q1", "2026-01-01T00:00:00", "2026-04-01T00:00:00"),
    ("2026", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
])
def test_periods_are_half_open_in_national_time(text: str, start: str, end: str) -> None:
    period = Period.parse(text)
    assert (period.start, period.end, str(period)) == (at(start), at(end), text)


@pytest.mark.parametrize("text", ["2026-13", "2026-3", "26-03", "2026-Q5", "March"])
def test_a_period_that_is_not_one_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match="2026"):
        Period.parse(text)


def test_percentages_round_half_up_and_never_divide_by_zero() -> None:
    assert percent(2, 3) == Decimal("66.67")
    assert percent(1, 8) == Decimal("12.50")
    assert percent(840, 847) == Decimal("99.17")
    assert percent(0, 0) is None


def test_a_moment_on_a_boundary_belongs_to_one_period_only() -> None:
    facts = [dossier("A-1", "2026-03-01T00:00:00", ended="2026-04-01T00:00:00"),
             dossier("A-2", "2026-02-28T23:59:59", ended="2026-03-01T00:00:00")]
    march = build_report(facts, Period.parse("2026-03"), now=at("2026-12-01T00:00:00")).total
    february = build_report(facts, Period.parse("2026-02"), now=at("2026-12-01T00:00:00")).total
    assert (march.received, march.carried_over, march.resolved, march.pending) == (1, 1, 1, 1)
    assert (february.received, february.resolved, february.pending) == (1, 0, 1)
    assert february.pending == march.carried_over


def test_the_current_month_judges_pending_dossiers_now() -> None:
    facts = [dossier("A-1", "2026-03-02T08:00:00", due="2026-03-20T17:00:00")]
    month = Period.parse("2026-03")
    assert build_report(facts, month, now=at("2026-03-10T08:00:00")).total.within == 1
    assert build_report(facts, month, now=at("2026-03-25T08:00:00")).total.overdue == 1


def test_a_report_that_does_not_add_up_is_an_error_not_a_table() -> None:
    facts = [dossier("A-1", "2026-03-02T08:00:00")]
    report = build_report(facts, Period.parse("2026-03"), now=at("2026-12-01T00:00:00"))
    broken = replace(report.rows[0], overdue=0)
    with pytest.raises(ReportInconsistent, match="total 1 != resolved 0 \\+ pending 0"):
        check(Report(report.period, report.as_of, None, (broken,), broken), facts)


def test_the_statistic_record_of_a_month_without_resolved_dossiers_says_so_instead_of_100() -> None:
    row = Row("000.00.01.G12", "Cục A", received_direct=3, within=2, overdue=1)
    record = statistic_record(row, Period.parse("2026-03"), final=True)
    assert record["SolvedInTime"] == 0 and record["SolvedLate"] == 0
    assert "SolvedInTime = 0" in record["Note"]
    assert (record["Total"], record["TotalSolved"], record["TotalPending"], record["Pending"]) == (3, 0, 3, 2)
    assert (record["PendingLate"], record["PendingPercent"]) == (33.33, 66.67)


def test_the_statistic_record_takes_only_months() -> None:
    with pytest.raises(ValueError, match="month"):
        statistic_record(Row("A", "A"), Period.parse("2026-Q1"), final=True)


@pytest.mark.parametrize(("now", "next_run"), [
    ("2026-03-10T00:30:00", "2026-03-10T01:00:00"),
    ("2026-03-10T01:00:00", "2026-03-11T01:00:00"),
    ("2026-03-31T23:00:00", "2026-04-01T01:00:00"),
])
def test_the_daily_statistics_run_is_at_daily_at_national_time(now: str, next_run: str) -> None:
    publisher = StatisticsPublisher(Settings(), None, None, Metrics())  # type: ignore[arg-type]
    assert publisher.next_run(at(now).astimezone(UTC)) == at(next_run)
