"""The simulator's ``UpdateStatistic``: the report's rules and the reports kept, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from connector.dev.simulator.state import SimulatorConfig, SimulatorState
from connector.dev.simulator.statistics import StatisticRefused, StatisticsDesk
from connector.dev.simulator.validation import statistic_problem

AGENCY = "000.00.01.G12"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def report(**changes: Any) -> dict[str, Any]:
    """An ``UpdateStatistic`` call's JSON envelope: the report's fields beside the session and the service."""
    body: dict[str, Any] = {
        "session": "token", "service": "UpdateStatistic", "madonvi": AGENCY,
        "Month": 3, "Year": 2024, "IsMonthStatistic": True,
        "NewReception": 10, "PreExtisting": 2, "Total": 12, "TotalSolved": 8,
        "SolvedInTime": 87.5, "SolvedLate": 12.5, "TotalPending": 4, "Pending": 3,
        "PendingLate": 25, "PendingPercent": "33.33", "Note": "",
        "OrganizationInchargeIdlevel1": AGENCY, "OrganizationInchargeName": "Cục Quản lý hoạt động xây dựng",
    }  # fmt: skip
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}  # ... drops a field


KEPT = {
    "madonvi": AGENCY, "Month": 3, "Year": 2024, "IsMonthStatistic": True,
    "NewReception": 10, "PreExtisting": 2, "Total": 12, "TotalSolved": 8,
    "SolvedInTime": 87.5, "SolvedLate": 12.5, "TotalPending": 4, "Pending": 3,
    "PendingLate": 25.0, "PendingPercent": 33.33, "Note": "",
    "OrganizationInchargeIdlevel1": AGENCY, "OrganizationInchargeName": "Cục Quản lý hoạt động xây dựng",
}  # fmt: skip


# --- the rules --------------------------------------------------------------------------------------------


def test_a_valid_report_passes() -> None:
    assert statistic_problem(report()) is None


@pytest.mark.parametrize(("changes", "problem"), [
    ({"Month": ...}, "Month: required"),
    ({"Month": 13}, "Month: must be at most 12"),
    ({"Month": 0}, "Month: must be at least 1"),
    ({"Month": "3"}, "Month: must be an integer"),
    ({"Year": 1999}, "Year: must be at least 2000"),
    ({"Year": 2100}, "Year: must be at most 2099"),
    ({"IsMonthStatistic": "true"}, 'IsMonthStatistic: must be true or false (or the string "True" or "False")'),
    ({"IsMonthStatistic": 1}, 'IsMonthStatistic: must be true or false (or the string "True" or "False")'),
    ({"IsMonthStatistic": ...}, "IsMonthStatistic: required"),
    ({"NewReception": -1}, "NewReception: must be at least 0"),
    ({"PreExtisting": 2.0}, "PreExtisting: must be an integer"),
    ({"PreExtisting": True}, "PreExtisting: must be an integer"),
    ({"TotalSolved": 2**31, "Total": 2**31 + 4}, "Total: must be at most 2147483647"),
    ({"TotalPending": None}, "TotalPending: must be an integer"),
    ({"SolvedInTime": 100.5}, "SolvedInTime: must be from 0 to 100"),
    ({"SolvedInTime": -0.01}, "SolvedInTime: must be from 0 to 100"),
    ({"SolvedLate": 12.345}, "SolvedLate: must have at most 2 decimals"),
    ({"SolvedLate": "12.345"}, "SolvedLate: must have at most 2 decimals"),
    ({"PendingLate": "25%"}, 'PendingLate: must be a number, or a decimal string like "95.50"'),
    ({"PendingLate": "1e2"}, 'PendingLate: must be a number, or a decimal string like "95.50"'),
    ({"PendingLate": float("nan")}, 'PendingLate: must be a number, or a decimal string like "95.50"'),
    ({"PendingLate": True}, 'PendingLate: must be a number, or a decimal string like "95.50"'),
    ({"PendingPercent": ...}, "PendingPercent: required"),
    ({"Note": None}, "Note: must be a string"),
    ({"Note": "x" * 2001}, "Note: longer than 2000 characters"),
    ({"madonvi": "9" * 65}, "madonvi: longer than 64 characters"),
    ({"OrganizationInchargeIdlevel1": ""}, "OrganizationInchargeIdlevel1: must not be empty"),
    ({"OrganizationInchargeIdlevel1": 12}, "OrganizationInchargeIdlevel1: must be a string"),
    ({"OrganizationInchargeName": ...}, "OrganizationInchargeName: required"),
    ({"OrganizationInchargeName": "x" * 501}, "OrganizationInchargeName: longer than 500 characters"),
    ({"Total": 13}, "Total: must equal TotalSolved + TotalPending (13 ≠ 8 + 4)"),
    ({"TotalPending": 5}, "Total: must equal TotalSolved + TotalPending (12 ≠ 8 + 5)"),
])  # fmt: skip
def test_a_bad_report_is_refused_naming_the_field_and_the_rule(changes: dict[str, Any], problem: str) -> None:
    assert statistic_problem(report(**changes)) == problem


def test_the_first_field_in_the_xsd_order_is_named() -> None:
    assert statistic_problem(report(Year=1, OrganizationInchargeName="")) == "Year: must be at least 2000"


def test_the_identity_is_checked_only_once_every_field_is_valid() -> None:
    assert statistic_problem(report(Total=99, Month=13)) == "Month: must be at most 12"


@pytest.mark.parametrize("given", [True, "True"])
def test_is_month_statistic_is_a_boolean_or_its_string(given: Any) -> None:
    assert statistic_problem(report(IsMonthStatistic=given)) is None
    assert statistic_problem(report(IsMonthStatistic="False")) is None


@pytest.mark.parametrize("given", [0, 100, 99.99, "0", "100.00", " 95.5 ", "+95.50", ".5", "7.", "95.500"])
def test_percentages_take_numbers_and_the_xsd_decimal_form(given: Any) -> None:
    assert statistic_problem(report(SolvedInTime=given)) is None


def test_a_report_that_is_not_an_object_is_refused() -> None:
    assert statistic_problem(["x"]) == "must be an object"


# --- the reports kept -------------------------------------------------------------------------------------


def test_a_report_is_kept_in_its_normal_form_without_the_envelope() -> None:
    desk = StatisticsDesk(wall_clock=FakeClock(5.0))
    answer = desk.push(report(IsMonthStatistic="True", PendingLate="25.00"))
    assert answer == {"OrganizationInchargeIdlevel1": AGENCY, "Year": 2024, "Month": 3, "IsMonthStatistic": True,
                      "action": "created", "pushes": 1}
    assert desk.views() == [{"record": KEPT, "pushes": 1, "duplicate_pushes": 0,
                             "first_received_at": 5.0, "last_received_at": 5.0}]
    assert list(desk.views()[0]["record"]) == list(KEPT)  # the XSD's order; no session, no service


def test_an_absent_note_is_kept_as_empty() -> None:
    desk = StatisticsDesk()
    desk.push(report(Note=...))
    assert desk.views()[0]["record"]["Note"] == ""


def test_pushing_the_same_month_again_replaces_it_and_counts_the_push() -> None:
    clock = FakeClock(10.0)
    desk = StatisticsDesk(wall_clock=clock)
    desk.push(report())
    clock.now = 20.0
    assert desk.push(report())["action"] == "replaced"  # the same report: a harmless re-send
    clock.now = 30.0
    corrected = report(NewReception=11, Total=13, TotalPending=5, Pending=4, Note="đã sửa")
    assert desk.push(corrected) == {"OrganizationInchargeIdlevel1": AGENCY, "Year": 2024, "Month": 3,
                                    "IsMonthStatistic": True, "action": "replaced", "pushes": 3}
    [kept] = desk.views()
    assert kept["record"] == {**KEPT, "NewReception": 11, "Total": 13, "TotalPending": 5, "Pending": 4,
                              "Note": "đã sửa"}
    assert (kept["pushes"], kept["duplicate_pushes"]) == (3, 1)
    assert (kept["first_received_at"], kept["last_received_at"]) == (10.0, 30.0)


def test_the_key_is_agency_year_month_and_the_kind_of_report() -> None:
    desk = StatisticsDesk()
    pushed = [
        report(),
        report(IsMonthStatistic=False),
        report(Month=4),
        report(Year=2023),
        report(OrganizationInchargeIdlevel1="000.00.02.G12"),
        report(madonvi="000.00.09.G12"),  # the sender is not part of the key: it replaces the first
    ]
    for body in pushed:
        desk.push(body)
    keys = [(v["record"]["OrganizationInchargeIdlevel1"], v["record"]["Year"], v["record"]["Month"],
             v["record"]["IsMonthStatistic"], v["pushes"]) for v in desk.views()]
    assert keys == [
        (AGENCY, 2023, 3, True, 1),
        (AGENCY, 2024, 3, True, 2),
        (AGENCY, 2024, 3, False, 1),
        (AGENCY, 2024, 4, True, 1),
        ("000.00.02.G12", 2024, 3, True, 1),
    ]


def test_views_filter_by_agency_year_and_month() -> None:
    desk = StatisticsDesk()
    for body in (report(), report(Month=4), report(Year=2023), report(OrganizationInchargeIdlevel1="OTHER")):
        desk.push(body)

    def months(**filters: Any) -> list[tuple[str, int, int]]:
        return [(v["record"]["OrganizationInchargeIdlevel1"], v["record"]["Year"], v["record"]["Month"])
                for v in desk.views(**filters)]

    assert months(agency="OTHER") == [("OTHER", 2024, 3)]
    assert months(agency=AGENCY, year=2024) == [(AGENCY, 2024, 3), (AGENCY, 2024, 4)]
    assert months(month=3) == [(AGENCY, 2023, 3), (AGENCY, 2024, 3), ("OTHER", 2024, 3)]
    assert months(agency="nobody") == []


def test_a_refused_report_changes_nothing() -> None:
    desk = StatisticsDesk()
    desk.push(report())
    with pytest.raises(StatisticRefused, match=r"^Total: must equal TotalSolved \+ TotalPending"):
        desk.push(report(Total=1))
    assert desk.views()[0]["pushes"] == 1


def test_the_kept_report_shares_nothing_with_the_call() -> None:
    desk = StatisticsDesk()
    body = report()
    desk.push(body)
    body["Note"] = "changed afterwards"
    assert desk.views()[0]["record"]["Note"] == ""


# --- through the state ------------------------------------------------------------------------------------


def test_the_state_answers_like_the_adapter_and_reset_forgets_the_reports() -> None:
    state = SimulatorState(SimulatorConfig(), wall_clock=lambda: 7.0)
    reply = state.apply_statistic(report())
    assert reply["error_code"] == "0"
    assert reply["result"]["action"] == "created"
    refused = state.apply_statistic(report(Month=13))
    assert refused == {"error_code": "-1", "message": "Month: must be at most 12"}
    assert len(state.statistics.views()) == 1
    state.reset()
    assert state.statistics.views() == []
