"""Hostile dossier events on ``dossier.events``: whatever a careless or malicious producer writes, the event
ends as a clear refusal naming the field and the rule (``InvalidEvent``), the reader never raises past the
record, the daemon keeps running, and the next valid event of the same partition is delivered.

Duplicate keys in an event are read as every JSON reader of the ministry's systems reads them (the last one
wins): the one-stop system is the producer, and a duplicate key there is a bug, not a forgery, so it is not
refused here (the inbound HTTP surfaces, where forgery matters, refuse them)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import signal
from typing import Any

import pytest
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.kafka import dead_letter_headers
from connector.observability import Metrics
from connector.push.events import DossierEvent, InvalidEvent, decode_event
from connector.push.mapping import load_mappings
from connector.push.sync import EventReader, Rejected
from connector.store import StateStore
from tests.databases import drop_postgres_database, postgres_database_or_skip, state_database
from tests.factories import ConsumedRecord, event_dict, raw, raw_with
from tests.integration.pipeline_harness import (
    Topics,
    daemon_config,
    portal_dossiers,
    run_until_committed,
    wait_until,
    write_config,
)
from tests.kafkatools import committed_offsets, consume_all, produce

MAX = 1_048_576
NO = "000.00.01.G12-201005-0001"
KEY = NO.encode()
MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
READER = EventReader(load_settings(None), MAPPINGS, Metrics())
TP = TopicPartition("dossier.events", 0)


def valid() -> dict[str, Any]:
    return event_dict(no=NO)


def changed(path: str, value: Any) -> bytes:
    return raw_with(valid(), path, value)


def spliced(old: bytes, new: bytes) -> bytes:
    body = raw(valid(), ascii_only=False)
    assert old in body
    return body.replace(old, new, 1)


# (value bytes, the reason, the field); key is the dossier number unless the case says otherwise.
HOSTILE: dict[str, tuple[bytes, str, str]] = {
    "lone surrogate in a name": (changed("dossier.applicant.name", "Nguy\ud800n"), "invalid_text",
                                 "dossier.applicant.name"),
    "lone low surrogate in a note": (changed("dossier.note", "\udfff"), "invalid_text", "dossier.note"),
    "surrogate pair halves apart": (changed("dossier.summary", "\ud83d x \ude00"), "invalid_text", "dossier.summary"),
    "surrogate in a key": (spliced(b'"note"', b'"no\\ud800te"'), "invalid_text", "dossier"),
    "surrogate encoded as bytes": (spliced(b'"BN-0001"', b'"BN-\xed\xa0\x80"'), "malformed_json", "(value)"),
    "NUL in procedure_code": (changed("dossier.procedure_code", "BXD-NLHD-01\x00"), "invalid_text",
                              "dossier.procedure_code"),
    "NUL in a document name": (changed("dossier.documents", [{"id": "d", "name": "a\x00b", "url": "https://a.vn/x"}]),
                               "invalid_text", "dossier.documents[0].name"),
    "escape sequence in agency_name": (changed("dossier.agency_name", "\x1b[31mred"), "invalid_text",
                                       "dossier.agency_name"),
    "vertical tab in a note": (changed("dossier.note", "a\x0bb"), "invalid_text", "dossier.note"),
    "backspace in a note (the short escape \\b)": (changed("dossier.note", "a\x08b"), "invalid_text", "dossier.note"),
    "form feed in a summary (the short escape \\f)": (changed("dossier.summary", "a\x0cb"), "invalid_text",
                                                     "dossier.summary"),
    "raw control byte in a string": (spliced(b'"BN-0001"', b'"BN-\x01"'), "malformed_json", "(value)"),
    "overlong UTF-8": (spliced(b'"BN-0001"', b'"BN-\xc0\xaf"'), "malformed_json", "(value)"),
    "invalid UTF-8": (spliced(b'"BN-0001"', b'"BN-\xff"'), "malformed_json", "(value)"),
    "byte-order mark": (b"\xef\xbb\xbf" + raw(valid()), "malformed_json", "(value)"),
    "UTF-16": (json.dumps(valid()).encode("utf-16"), "malformed_json", "(value)"),
    "10 MB value": (b'{"pad": "' + b"x" * 10_000_000 + b'"}', "too_large", "(value)"),
    "depth 10,000": (b"[" * 10_000 + b"]" * 10_000, "malformed_json", "(value)"),
    "depth 10,000 inside the event": (spliced(b'"results": []', b'"results": ' + b"[" * 10_000 + b"]" * 10_000),
                                      "malformed_json", "(value)"),
    "version 1e400": (spliced(b'"version": 1', b'"version": 1e400'), "schema", "dossier.version"),
    "version NaN": (spliced(b'"version": 1', b'"version": NaN'), "schema", "dossier.version"),
    "version -0": (changed("dossier.version", -0.0), "schema", "dossier.version"),
    "version of 5,000 digits": (spliced(b'"version": 1', b'"version": ' + b"9" * 5000), "malformed_json", "(value)"),
    "version a huge integer": (changed("dossier.version", 2**70), "schema", "dossier.version"),
    "version as a string": (changed("dossier.version", "2"), "schema", "dossier.version"),
    "agency_name as a number": (changed("dossier.agency_name", 5), "schema", "dossier.agency_name"),
    "fee amount as a string": (changed("dossier.fees", [{"code": "LP", "name": "x", "amount": "1000", "kind": "fee"}]),
                               "schema", "dossier.fees.0.amount"),
    "applicant as a list": (changed("dossier.applicant", []), "schema", "dossier.applicant"),
    "dossier as null": (changed("dossier", None), "schema", "dossier"),
    "dossier.no ending in a newline": (changed("dossier.no", NO + "\n"), "schema", "dossier.no"),
    "procedure_code ending in a newline": (changed("dossier.procedure_code", "BXD-NLHD-01\n"), "schema",
                                           "dossier.procedure_code"),
    "offset +24:00": (changed("dossier.received_at", "2020-10-05T08:30:00+24:00"), "schema", "dossier.received_at"),
    "offset without a colon": (changed("dossier.received_at", "2020-10-05T08:30:00+0700"), "schema",
                               "dossier.received_at"),
    "leap second": (changed("dossier.received_at", "2016-12-31T23:59:60+00:00"), "schema", "dossier.received_at"),
    "February 30th": (changed("dossier.due_at", "2021-02-30T17:00:00+07:00"), "schema", "dossier.due_at"),
    "hour 24": (changed("occurred_at", "2020-10-05T24:00:00+07:00"), "schema", "occurred_at"),
    "schema_version 2": (changed("schema_version", 2), "unsupported_schema_version", "schema_version"),
    # The statistics fields (optional, additive to v1).
    "refusal of no known kind": (changed("dossier.refusal", "maybe"), "schema", "dossier.refusal"),
    "supplements as an object": (changed("dossier.supplements", {}), "schema", "dossier.supplements"),
    "a supplement without its request time": (changed("dossier.supplements", [{"completed_at": None}]), "schema",
                                             "dossier.supplements.0"),
    "a supplement asked on February 30th": (changed("dossier.supplements", [
        {"requested_at": "2026-02-30T10:00:00+07:00"}]), "schema", "dossier.supplements.0.requested_at"),
    "101 supplements": (changed("dossier.supplements", [{"requested_at": "2026-03-02T10:00:00+07:00"}] * 101),
                        "schema", "dossier.supplements"),
    "withdrawn at hour 24": (changed("dossier.withdrawn_at", "2026-03-02T24:00:00+07:00"), "schema",
                             "dossier.withdrawn_at"),
    "due_at as a number": (changed("dossier.due_at", 20261231), "schema", "dossier.due_at"),
    "a JSON string, not an object": (b'"dossier"', "schema", "(event)"),
    "empty value": (b"", "malformed_json", "(value)"),
    "two JSON values": (raw(valid()) + b" {}", "malformed_json", "(value)"),
}

HOSTILE_KEYS: dict[str, tuple[bytes | None, str]] = {
    "no key": (None, "key_mismatch"),
    "another dossier's key": (b"000.00.01.G12-201005-0002", "key_mismatch"),
    "key with a NUL": (KEY + b"\x00", "key_mismatch"),
    "key not UTF-8": (b"\xff\xfe", "key_mismatch"),
    "key with CRLF": (KEY + b"\r\n", "key_mismatch"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_event_is_refused_naming_the_field_and_the_rule(name: str) -> None:
    value, reason, field = HOSTILE[name]
    with pytest.raises(InvalidEvent) as caught:
        decode_event(KEY, value, max_bytes=MAX if reason != "too_large" else 8 * 1024 * 1024)
    assert (caught.value.reason, caught.value.field) == (reason, field), caught.value.message
    # The rule, never the value: the event's own text is not repeated in the message.
    assert "Nguy" not in caught.value.message and "001089012345" not in caught.value.message


def test_a_null_due_date_without_a_time_limit_for_its_procedure_is_that_events_refusal() -> None:
    procedures = dict(MAPPINGS.procedures)
    procedures["BXD-NLHD-01"] = procedures["BXD-NLHD-01"].model_copy(update={"time_limit": None})
    reader = EventReader(load_settings(None), MAPPINGS.model_copy(update={"procedures": procedures}), Metrics())
    read = reader.read(TP, ConsumedRecord(TP.topic, 0, 0, KEY, changed("dossier.due_at", None)))
    assert isinstance(read, Rejected)
    assert (read.error.reason, read.error.field) == ("no_due_time", "dossier.due_at")
    assert "time_limit" in read.error.message


@pytest.mark.parametrize("name", sorted(HOSTILE_KEYS))
def test_a_hostile_key_is_refused(name: str) -> None:
    key, reason = HOSTILE_KEYS[name]
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, raw(valid()), max_bytes=MAX)
    assert (caught.value.reason, caught.value.field) == (reason, "(key)")


def test_a_tombstone_is_refused() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(KEY, None, max_bytes=MAX)
    assert caught.value.reason == "empty_value"


@pytest.mark.parametrize("text", ["Hồ sơ\tđầy đủ\r\n", "\\u0000 as text, escaped", "emoji \U0001f600 pair"])
def test_usable_text_still_passes(text: str) -> None:
    event = decode_event(KEY, changed("dossier.note", text), max_bytes=MAX)
    assert event.dossier.note == text


@pytest.mark.parametrize("path", ["dossier.colour", "extra", "dossier.applicant.nickname"])
def test_an_unknown_field_is_passed_over_and_never_sent(path: str) -> None:
    # Forward compatibility: a newer one-stop system may add fields; the mapping sends only what it knows.
    event = decode_event(KEY, changed(path, "079301234567"), max_bytes=MAX)
    read = READER.read(TP, _Record(KEY, changed(path, "079301234567")))
    assert event.dossier.no == NO and not isinstance(read, Rejected)
    assert "079301234567" not in json.dumps(read.mapped.record)


def test_duplicate_keys_are_read_last_one_wins() -> None:
    body = spliced(b'"receipt_no": "BN-0001"', b'"receipt_no": "BN-0001", "receipt_no": "BN-0002"')
    assert decode_event(KEY, body, max_bytes=MAX).dossier.receipt_no == "BN-0002"


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _leaves(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _leaves(child, (*path, index))
    return found


WRONG_TYPES = [None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}]


@pytest.mark.parametrize("wrong", WRONG_TYPES, ids=repr)
def test_a_wrong_type_at_any_field_is_refused_or_taken_never_raises(wrong: Any) -> None:
    # Every field of a full event, each given a value of another type: a refusal naming a field, or (where the
    # schema allows that type) an event; never another exception.
    base = valid()
    base["step"] = {"actor": "a", "title": "t", "department": "d", "at": "2020-10-06T09:15:00+07:00",
                    "status": "processing"}
    for path in _leaves(base):
        document = copy.deepcopy(base)
        node = document
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = wrong
        try:
            decode_event(KEY, raw(document), max_bytes=MAX)
        except InvalidEvent as error:
            refused = (bool(error.field), error.reason)
        else:
            continue
        assert refused[0] and refused[1] in {"schema", "key_mismatch", "unsupported_schema_version"}, path


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_any_bytes_decode_or_raise_invalid_event(value: bytes) -> None:
    try:
        event = decode_event(KEY, value, max_bytes=MAX)
    except InvalidEvent:
        return
    assert isinstance(event, DossierEvent)


TEXTS = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0xFFFF), max_size=12)
VALUES = st.none() | st.booleans() | st.integers() | st.floats() | TEXTS


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_value_at_any_field_reads_as_an_admitted_event_or_a_rejection(data: st.DataObject) -> None:
    document = valid()
    paths = _leaves(document)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node: Any = document
        for step in path[:-1]:
            node = _child(node, step)
        if _child(node, path[-1]) is not _MISSING:
            node[path[-1]] = data.draw(VALUES | st.lists(VALUES, max_size=2))
    value = json.dumps(document, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    read = READER.read(TP, _Record(KEY, value))
    if isinstance(read, Rejected):
        assert read.error.reason != "internal_error", read.error.message


_MISSING = object()


def _child(node: Any, step: Any) -> Any:
    """``node[step]`` where an earlier change left that place in the document, else ``_MISSING``."""
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step, _MISSING)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return _MISSING


class _Record:
    topic, partition, offset = "dossier.events", 0, 0

    def __init__(self, key: bytes | None, value: bytes | None) -> None:
        self.key, self.value = key, value
        self.headers: list[tuple[str, bytes | None]] = []


@pytest.mark.broker
async def test_content_no_rule_foresaw_is_that_records_internal_error_and_the_daemon_goes_on(
    kafka_bootstrap, topics, portal_url, tmp_path
) -> None:
    # A deployment's procedure name holding a lone surrogate (data no rule checks): the record built for that
    # procedure cannot be serialised where it is hashed for the ledger. Its events are recorded failures
    # naming the exception's class; the other procedure's dossier is synced.
    broken = MAPPINGS.model_copy(update={"procedures": {
        **MAPPINGS.procedures,
        "BXD-NLHD-01": MAPPINGS.procedures["BXD-NLHD-01"].model_copy(update={"name": "T\ud800n"})}})
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    topics.group_id())
    other = "000.00.01.G12-201005-0002"
    expected = await produce(kafka_bootstrap, stream.events, [
        (KEY, raw(valid())), (other.encode(), raw(event_dict(no=other, procedure_code="BXD-CCHN-02")))])
    settings = load_settings(None, **daemon_config(kafka_bootstrap, portal_url, stream, tmp_path))
    await run_until_committed(settings, kafka_bootstrap, stream, expected, mappings=broken)
    state = await StateStore.open(settings.state.url)
    try:
        failures = await state.failures()
    finally:
        await state.close()
    assert [(f["dossier_no"], f["reason"], f["error_kind"]) for f in failures] == [(NO, "internal_error", "permanent")]
    assert failures[0]["error_class"] == "PydanticSerializationError"
    assert re.search(r"while syncing the dossier, in hashed_record \(\w+\.py:\d+\)", failures[0]["message"])
    assert set(await portal_dossiers(portal_url)) == {other}


def test_dead_letter_headers_never_raise_on_text_that_is_not_utf8() -> None:
    error = InvalidEvent("a message holding \ud800", reason="schema", field="dossier.\udc00")
    headers = dict(dead_letter_headers([("trace", b"\xff")], topic="t", partition=0, offset=1, error=error,
                                       attempts=1))
    assert headers["__connect.errors.exception.message"] == b"dossier.\\udc00: a message holding \\ud800"
    assert headers["trace"] == b"\xff"


# ---- through the broker: the daemon goes on, the next valid event is delivered ---------------------------

def _broker_cases() -> list[tuple[str, bytes]]:
    """Every hostile value the broker takes (it refuses a 10 MB record before it reaches us)."""
    return [(name, value) for name, (value, _, _) in sorted(HOSTILE.items()) if len(value) < 900_000]


@pytest.mark.broker
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_each_hostile_event_is_a_recorded_failure_and_the_next_valid_event_is_delivered(
    kafka_bootstrap, topics, portal_url, tmp_path, store
) -> None:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    topics.group_id())
    cases = _broker_cases()
    good = event_dict(no=NO, version=7)
    messages = [(KEY, value) for _, value in cases] + [(KEY, raw(good))]
    expected = await produce(kafka_bootstrap, stream.events, messages)
    async with state_database(store, tmp_path) as url:
        config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
        config["state"] = {"url": url}
        await run_until_committed(load_settings(None, **config), kafka_bootstrap, stream, expected)
        state = await StateStore.open(url)
        try:
            failures = await state.failures()
        finally:
            await state.close()
    assert sorted(f["offset"] for f in failures) == list(range(len(cases)))
    by_offset = {f["offset"]: f for f in failures}
    for offset, (name, _) in enumerate(cases):
        assert by_offset[offset]["reason"] == HOSTILE[name][1], name
        assert by_offset[offset]["field"] == HOSTILE[name][2], name
    dead = await consume_all(kafka_bootstrap, stream.dead_letter, count=len(cases), timeout=30)
    assert len(dead) == len(cases)
    portal = await portal_dossiers(portal_url)
    assert portal[NO]["record"]["GhiChu"].endswith("(phiên bản 7)")


@pytest.mark.broker
async def test_a_surrogate_and_a_nul_event_cannot_crash_loop_the_daemon(
    kafka_bootstrap, topics, portal_url, tmp_path, start_daemon
) -> None:
    """The crash loop of old: the daemon died on a surrogate while hashing the record, restarted, read the same
    uncommitted record and died again. Now: a surrogate event, a NUL event and a valid event on one partition,
    the daemon killed and restarted twice (a new triple each time): every valid event is delivered, every
    other one is a recorded failure, and the committed offset moves past them all."""
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    topics.group_id())
    name, url = await postgres_database_or_skip()  # PostgreSQL: where a NUL in text breaks a whole batch
    try:
        config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
        config["state"] = {"url": url}
        path = write_config(tmp_path / "config.yaml", config)
        log = tmp_path / "daemon.log"
        produced = 0
        for run in range(3):
            no = f"000.00.01.G12-201005-{run + 10:04d}"
            surrogate = event_dict(no=no, version=1)
            surrogate["dossier"]["applicant"]["name"] = "Nguy\ud800n"
            nul = event_dict(no=no, version=2, procedure_code="BXD-NLHD-01\x00")
            valid_event = event_dict(no=no, version=3)
            offsets = await produce(kafka_bootstrap, stream.events, [
                (no.encode(), raw(surrogate)), (no.encode(), raw(nul)), (no.encode(), raw(valid_event))])
            produced = offsets[0]
            daemon = await start_daemon(path, log)

            async def moved_past(target: int = produced, process=daemon) -> bool:
                assert process.returncode is None, f"the daemon stopped: {log.read_text()[-2000:]}"
                return (await committed_offsets(kafka_bootstrap, stream.group, stream.events, [0])).get(0) == target

            await wait_until(moved_past, timeout=90, what=f"run {run}: the offset past the triple")
            assert (await portal_dossiers(portal_url))[no]["record"]["GhiChu"].endswith("(phiên bản 3)")
            daemon.send_signal(signal.SIGKILL)
            await asyncio.wait_for(daemon.wait(), timeout=30)
        dead = await consume_all(kafka_bootstrap, stream.dead_letter, count=6, timeout=30)
        reasons = sorted((r.key.decode(), dict(r.headers)["__connect.errors.reason"].decode()) for r in dead)
        assert reasons == sorted((f"000.00.01.G12-201005-{run + 10:04d}", "invalid_text")
                                 for run in range(3) for _ in range(2))
    finally:
        await drop_postgres_database(name)
