"""What the operators' tools give (``values``): stored values as JSON, the times operators type, a listing's
page; and what the commands print (``console``): tables that show outside values as they are."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connector.operators.console import to_json, utc
from connector.operators.values import failure_page, parse_moment, plain


def test_stored_bytes_are_text_when_they_are_utf8_and_base64_otherwise() -> None:
    assert plain(b'{"a": "\xc4\x91"}') == '{"a": "đ"}'
    assert plain(b"\xff\x00") == {"base64": "/wA="}


def test_times_are_iso_8601_in_utc_even_when_the_store_gave_them_without_a_zone() -> None:
    naive = datetime(2024, 5, 6, 1, 2, 3)  # SQLite gives stored UTC back without its zone
    ict = datetime(2024, 5, 6, 8, 2, 3, tzinfo=timezone(timedelta(hours=7)))
    assert plain({"at": [naive, ict]}) == {"at": ["2024-05-06T01:02:03+00:00", "2024-05-06T01:02:03+00:00"]}
    assert utc(None) is None
    assert json.loads(to_json({"value": b"x", "n": 1})) == {"value": "x", "n": 1}


def test_typed_times_with_an_offset_are_taken_as_given() -> None:
    assert parse_moment("2024-05-06T08:00:00+07:00") == datetime(2024, 5, 6, 1, 0, tzinfo=UTC)
    assert parse_moment("2024-05-06").tzinfo is UTC


def test_typed_times_without_an_offset_are_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Ho_Chi_Minh")
    time.tzset()
    try:
        assert parse_moment("2024-05-06T08:00") == datetime(2024, 5, 6, 1, 0, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_typed_time_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="isoformat"):
        parse_moment("yesterday")


def test_a_listing_page_names_the_id_to_page_on_from_only_when_it_is_full() -> None:
    rows = [{"id": 4, "record_key": b"k", "record_value": b"v", "mapped_payload": {}, "state": "open"},
            {"id": 9, "record_key": None, "record_value": None, "mapped_payload": None, "state": "open"}]
    assert failure_page(rows, total=5, limit=2) == {
        "total": 5, "failures": [{"id": 4, "state": "open"}, {"id": 9, "state": "open"}], "next_after_id": 9}
    assert failure_page(rows, total=2, limit=3)["next_after_id"] is None
    assert failure_page([], total=0, limit=1) == {"total": 0, "failures": [], "next_after_id": None}


def test_values_from_outside_are_printed_as_they_are_not_read_as_markup() -> None:
    from rich.console import Console

    from connector.operators.console import failures_table, findings_table, replay_table
    from connector.operators.reconcile import Finding
    from connector.operators.replay import ReplayItem, ReplayReport

    console = Console(width=400, record=True)
    console.print(failures_table([{"id": 1, "state": "open", "dossier_no": "[/x]", "reason": "[bold]r"}], total=1))
    console.print(findings_table([Finding("[/i]", 1, "differs", "TrangThaiHoSo '[/i]' on the portal")]))
    from_the_dlq = ReplayItem(None, "[/d]", None, "unreadable", None, "malformed_json: '[/m]'", None)
    console.print(replay_table(ReplayReport(True, [from_the_dlq])))
    console.print(replay_table(ReplayReport(False, [ReplayItem(7, "[/r]", 2, "send", "open", "failed again", None)])))
    text = console.export_text()
    assert "[/x]" in text and "[bold]r" in text and "TrangThaiHoSo '[/i]'" in text
    assert "[/d]" in text and "'[/m]'" in text and "[/r]" in text and "dry run" in text
