"""What the operators' commands print: stored values as JSON, and the times operators type."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connector.operators.console import parse_moment, plain, to_json, utc


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


def test_values_from_outside_are_printed_as_they_are_not_read_as_markup() -> None:
    from rich.console import Console

    from connector.operators.console import failures_table, findings_table
    from connector.operators.realign import Finding

    console = Console(width=400, record=True)
    console.print(failures_table([{"id": 1, "state": "open", "dossier_no": "[/x]", "reason": "[bold]r"}], total=1))
    console.print(findings_table([Finding("[/i]", 1, "differs", "TrangThaiHoSo '[/i]' on the portal")]))
    text = console.export_text()
    assert "[/x]" in text and "[bold]r" in text and "TrangThaiHoSo '[/i]'" in text
