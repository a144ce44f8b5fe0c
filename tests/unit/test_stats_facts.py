"""Dossier facts folded from events as the daemon reads them: every event counts, coalesced or not."""

from __future__ import annotations

from datetime import datetime

import pytest

from connector.national_time import PORTAL_TZ
from tests.factories import event_dict, step_dict
from tests.stats_support import folded_facts

NO = "000.00.01.G12-260302-0001"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PORTAL_TZ)


def ev(version: int, status: str, when: str, *, sub_status: str | None = None, event_type: str = "dossier.updated",
       **dossier: object) -> dict[str, object]:
    fields = {"received_at": "2026-03-02T08:00:00+07:00", "due_at": "2026-03-30T17:00:00+07:00", **dossier}
    event = event_dict(no=NO, version=version, status=status, sub_status=sub_status, event_type=event_type,
                       **fields)
    event["occurred_at"] = when
    return event


def test_a_supplement_request_and_its_completion_in_one_unit_are_both_counted() -> None:
    # Versions 3 (asked) and 4 (supplied) would be pushed as one record; the facts see both.
    facts = folded_facts([
        ev(1, "received", "2026-03-02T08:00:00+07:00"),
        ev(2, "processing", "2026-03-03T09:00:00+07:00"),
        ev(3, "waiting", "2026-03-05T10:00:00+07:00", sub_status="supplement_requested"),
        ev(4, "processing", "2026-03-09T14:00:00+07:00"),
    ])[NO]
    assert facts.supplement_requests == 1
    assert facts.supplement_requested_at == at("2026-03-05T10:00:00")
    assert facts.supplement_completed_at == at("2026-03-09T14:00:00")
    assert facts.terminal is None


def test_a_second_request_is_kept_and_the_first_one_stays_the_paused_one() -> None:
    facts = folded_facts([
        ev(1, "waiting", "2026-03-04T10:00:00+07:00", sub_status="supplement_requested"),
        ev(2, "processing", "2026-03-06T10:00:00+07:00"),
        ev(3, "waiting", "2026-03-10T10:00:00+07:00", sub_status="supplement_requested"),
        ev(4, "waiting", "2026-03-11T10:00:00+07:00", sub_status="supplement_requested"),  # still the same request
    ])[NO]
    assert facts.supplement_requests == 2
    assert facts.supplement_completed_at == at("2026-03-06T10:00:00")
    assert facts.second_supplement_at == at("2026-03-10T10:00:00")


def test_a_supplement_history_on_the_event_wins_over_transitions() -> None:
    facts = folded_facts([ev(1, "processing", "2026-03-12T10:00:00+07:00", supplements=[
        {"requested_at": "2026-03-04T10:00:00+07:00", "completed_at": "2026-03-05T10:00:00+07:00"}])])[NO]
    assert (facts.supplement_requests, facts.supplement_completed_at) == (1, at("2026-03-05T10:00:00"))


def test_the_original_due_time_is_the_first_one_seen() -> None:
    facts = folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00"),
                          ev(2, "processing", "2026-03-03T08:00:00+07:00", due_at="2026-04-30T17:00:00+07:00")])[NO]
    assert facts.due_at == at("2026-03-30T17:00:00")


def test_no_due_date_takes_the_procedure_time_limit_in_working_days() -> None:
    # BXD-NLHD-01: 20 working days. Mon 2 March 08:00 + 20 × 8 working hours = Mon 30 March 08:00.
    facts = folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00", due_at=None)])[NO]
    assert facts.due_from_limit
    assert facts.due_at == at("2026-03-30T08:00:00")


@pytest.mark.parametrize(("status", "extra", "terminal", "end"), [
    ("done", {"finished_at": "2026-03-20T15:00:00+07:00"}, "processed", "2026-03-20T15:00:00"),
    ("withdrawn", {"withdrawn_at": "2026-03-18T09:00:00+07:00", "finished_at": "2026-03-19T09:00:00+07:00"},
     "withdrawn", "2026-03-18T09:00:00"),
    ("withdrawn", {"finished_at": "2026-03-19T09:00:00+07:00"}, "withdrawn", "2026-03-19T09:00:00"),
    ("stopped", {}, "stopped", "2026-03-21T10:00:00"),  # no finished_at: the event's time
    ("refused", {}, "refused", "2026-03-21T10:00:00"),  # after being accepted
    ("refused", {"refusal": "at_desk"}, "refused_at_desk", "2026-03-21T10:00:00"),
])
def test_the_end_state_and_when_it_came(status: str, extra: dict[str, str], terminal: str, end: str) -> None:
    facts = folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00"),
                          ev(2, status, "2026-03-21T10:00:00+07:00", **extra)])[NO]
    assert (facts.terminal, facts.ended_at) == (terminal, at(end))


def test_a_refusal_before_any_accepted_state_is_at_the_desk_and_counts_nowhere() -> None:
    facts = folded_facts([ev(1, "new", "2026-03-02T08:00:00+07:00"),
                          ev(2, "refused", "2026-03-02T09:00:00+07:00")])[NO]
    assert facts.terminal == "refused_at_desk" and not facts.counted


def test_the_sub_status_refused_at_counter_is_at_the_desk_even_after_reception() -> None:
    facts = folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00"),
                          ev(2, "refused", "2026-03-02T09:00:00+07:00", sub_status="refused_at_counter")])[NO]
    assert facts.terminal == "refused_at_desk"


def test_processed_then_returned_keeps_the_end_of_processing() -> None:
    facts = folded_facts([
        ev(1, "done", "2026-03-20T15:00:00+07:00", finished_at="2026-03-20T15:00:00+07:00"),
        ev(2, "returned", "2026-03-24T08:00:00+07:00", finished_at="2026-03-20T15:00:00+07:00",
           returned_at="2026-03-24T08:00:00+07:00"),
    ])[NO]
    assert (facts.terminal, facts.ended_at, facts.returned_at) == ("returned", at("2026-03-20T15:00:00"),
                                                                   at("2026-03-24T08:00:00"))


def test_a_reopened_dossier_is_in_progress_again() -> None:
    facts = folded_facts([ev(1, "done", "2026-03-20T15:00:00+07:00", finished_at="2026-03-20T15:00:00+07:00"),
                          ev(2, "processing", "2026-03-21T08:00:00+07:00")])[NO]
    assert (facts.terminal, facts.ended_at) == (None, None)


def test_an_end_before_the_reception_is_moved_to_the_reception() -> None:
    facts = folded_facts([ev(1, "done", "2026-03-20T15:00:00+07:00", finished_at="2026-02-01T15:00:00+07:00")])[NO]
    assert facts.ended_at == at("2026-03-02T08:00:00")


def test_an_older_version_arriving_late_changes_nothing() -> None:
    newer = ev(2, "done", "2026-03-20T15:00:00+07:00", finished_at="2026-03-20T15:00:00+07:00")
    older = ev(1, "waiting", "2026-03-05T10:00:00+07:00", sub_status="supplement_requested")
    facts = folded_facts([newer, older])[NO]
    assert (facts.version, facts.supplement_requests, facts.terminal) == (2, 0, "processed")


def test_a_step_event_happens_at_the_step_time() -> None:
    event = ev(2, "waiting", "2026-03-09T00:00:00+07:00", sub_status="supplement_requested",
               event_type="dossier.step")
    event["step"] = step_dict(at="2026-03-06T11:00:00+07:00", status="waiting")
    facts = folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00"), event])[NO]
    assert facts.supplement_requested_at == at("2026-03-06T11:00:00")


def test_fees_above_zero_make_a_dossier_with_fees() -> None:
    assert folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00")])[NO].has_fees
    assert not folded_facts([ev(1, "received", "2026-03-02T08:00:00+07:00", fees=[])])[NO].has_fees
