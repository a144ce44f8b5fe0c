"""Hostile payment inputs on the two payment surfaces.

1. The ``payment.requested`` event read from ``payment.requests`` (``decode_payment_request``): whatever a
   careless or malicious producer writes, the record ends as ``InvalidPaymentRequest`` naming the field (and
   the rule, never the value), or as a request every field of which keeps the contract; never another
   exception.
2. The Payment Platform's result notification posted to the public listener (a ``PaymentTracker`` over a real
   SQLite state store, served on loopback): whatever body or headers arrive, the reply is well-formed JSON in
   the platform's format (never a 500, never a traceback), nothing is settled by a forged or malformed
   message, the next genuine notification is still taken, and no secret, checksum or identity reaches a log
   event.

Duplicate keys in a request are read as the dossier events read them (the last one wins): the producer is
the ministry's own one-stop system. The notification comes from outside, where forgery matters: a body with a
duplicate key is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import load_settings
from connector.contracts import DOSSIER_NO
from connector.listeners import create_public_app, start_public
from connector.national_time import portal_time
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay
from connector.payments.checksum import NOTIFICATION_FIELDS, REPLY_FIELDS, checksum, signed, verify
from connector.payments.messages import (
    REFERENCE,
    InvalidPaymentRequest,
    PaymentRequest,
    decode_payment_request,
)
from connector.payments.platform import PaymentPlatformClient
from connector.payments.tracker import PaymentTracker
from connector.store import StateStore
from connector.store.way_back import InboundStore
from tests.factories import ConsumedRecord, raw, raw_with

# ---- 1. payment.requested -------------------------------------------------------------------------------

NO = "000.00.01.H22-261124-0001"
KEY = NO.encode()
MAX = 64 * 1024
IDENTITY = ("001089012345", "0912345678", "an.nguyen@example.vn")


def valid() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b",
        "event_type": "payment.requested",
        "occurred_at": "2026-11-24T09:00:00+07:00",
        "source": "motcua",
        "payment": {
            "dossier_no": NO,
            "reference": "PAY-2611-0001",
            "amount": 150_000,
            "currency": "VND",
            "requested_at": "2026-11-24T09:00:00+07:00",
            "expires_at": "2026-11-25T09:00:00+07:00",
        },
    }


def changed(path: str, value: Any) -> bytes:
    return raw_with(valid(), path, value)


def without(path: str) -> bytes:
    document = valid()
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    del node[last]
    return raw(document)


def spliced(old: bytes, new: bytes) -> bytes:
    body = raw(valid(), ascii_only=False)
    assert old in body
    return body.replace(old, new, 1)


STRING_FIELDS = ("event_id", "event_type", "occurred_at", "source", "payment.dossier_no", "payment.reference",
                 "payment.currency", "payment.requested_at", "payment.expires_at")
TIME_FIELDS = ("occurred_at", "payment.requested_at", "payment.expires_at")
# A string that is not text is refused by the schema (a pattern, a const) or as text (the dossier events' way).
TEXT = frozenset({"schema", "invalid_text"})
MALFORMED = frozenset({"malformed_json"})
SCHEMA = frozenset({"schema"})

# name -> (value bytes, the reasons accepted, the field named); the key is the dossier number.
HOSTILE: dict[str, tuple[bytes, frozenset[str], str]] = {
    **{f"lone surrogate in {path}": (changed(path, "PAY\ud800"), TEXT, path) for path in STRING_FIELDS},
    **{f"lone low surrogate in {path}": (changed(path, "\udfff"), TEXT, path) for path in STRING_FIELDS},
    "surrogate encoded as bytes in source": (spliced(b'"motcua"', b'"mot\xed\xa0\x80"'), MALFORMED, "(value)"),
    "surrogate encoded as bytes in the reference": (spliced(b'"PAY-2611-0001"', b'"PAY-\xed\xa0\x80"'), MALFORMED,
                                                    "(value)"),
    "NUL in source": (changed("source", "motcua\x00"), TEXT, "source"),
    "NUL in the reference": (changed("payment.reference", "PAY-1\x00"), TEXT, "payment.reference"),
    "NUL in the dossier number": (changed("payment.dossier_no", NO + "\x00"), TEXT, "payment.dossier_no"),
    "escape sequence in source": (changed("source", "\x1b[31mmotcua"), TEXT, "source"),
    "bell in source": (changed("source", "mot\x07cua"), TEXT, "source"),
    "backspace in source": (changed("source", "motcua\x08\x08"), TEXT, "source"),
    "vertical tab in source": (changed("source", "mot\x0bcua"), TEXT, "source"),
    "unit separator in source": (changed("source", "mot\x1fcua"), TEXT, "source"),
    "C0 control in the currency": (changed("payment.currency", "VND\x01"), TEXT, "payment.currency"),
    "raw control byte in a string": (spliced(b'"motcua"', b'"mot\x01cua"'), MALFORMED, "(value)"),
    "raw NUL byte in a string": (spliced(b'"motcua"', b'"mot\x00cua"'), MALFORMED, "(value)"),
    "overlong UTF-8": (spliced(b'"motcua"', b'"mot\xc0\xaf"'), MALFORMED, "(value)"),
    "invalid UTF-8": (spliced(b'"motcua"', b'"mot\xff"'), MALFORMED, "(value)"),
    "truncated UTF-8 sequence": (spliced(b'"motcua"', b'"mot\xe1\xba"'), MALFORMED, "(value)"),
    "byte-order mark": (b"\xef\xbb\xbf" + raw(valid()), MALFORMED, "(value)"),
    "UTF-16": (json.dumps(valid()).encode("utf-16"), MALFORMED, "(value)"),
    "UTF-16 without a byte-order mark": (json.dumps(valid()).encode("utf-16-le"), MALFORMED, "(value)"),
    "UTF-32": (json.dumps(valid()).encode("utf-32"), MALFORMED, "(value)"),
    "10 MB value": (b'{"pad": "' + b"x" * 10_000_000 + b'"}', frozenset({"too_large"}), "(value)"),
    "one byte over the limit": (spliced(b'"source": "motcua"', b'"source": "motcua", "pad": "'
                                        + b"x" * (MAX - len(raw(valid())) - 10) + b'"'),
                                frozenset({"too_large"}), "(value)"),
    "depth 10,000": (b"[" * 10_000 + b"]" * 10_000, MALFORMED, "(value)"),
    "depth 10,000 of objects": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, MALFORMED, "(value)"),
    "depth 10,000 inside the payment": (spliced(b'"currency": "VND"', b'"currency": "VND", "x": '
                                                + b"[" * 10_000 + b"]" * 10_000), MALFORMED, "(value)"),
    "amount of 5,000 digits": (spliced(b'"amount": 150000', b'"amount": ' + b"9" * 5000), MALFORMED, "(value)"),
    "amount of 4,000 digits": (spliced(b'"amount": 150000', b'"amount": ' + b"9" * 4000), SCHEMA, "payment.amount"),
    "amount a huge integer": (changed("payment.amount", 2**70), SCHEMA, "payment.amount"),
    "amount one over the maximum": (changed("payment.amount", 10**13 + 1), SCHEMA, "payment.amount"),
    "amount 1e400": (spliced(b'"amount": 150000', b'"amount": 1e400'), SCHEMA, "payment.amount"),
    "amount -1e400": (spliced(b'"amount": 150000', b'"amount": -1e400'), SCHEMA, "payment.amount"),
    "amount NaN": (spliced(b'"amount": 150000', b'"amount": NaN'), SCHEMA, "payment.amount"),
    "amount Infinity": (spliced(b'"amount": 150000', b'"amount": Infinity'), SCHEMA, "payment.amount"),
    "amount -Infinity": (spliced(b'"amount": 150000', b'"amount": -Infinity'), SCHEMA, "payment.amount"),
    "amount -0": (spliced(b'"amount": 150000', b'"amount": -0'), SCHEMA, "payment.amount"),
    "amount -0.0": (spliced(b'"amount": 150000', b'"amount": -0.0'), SCHEMA, "payment.amount"),
    "amount zero": (changed("payment.amount", 0), SCHEMA, "payment.amount"),
    "amount negative": (changed("payment.amount", -150_000), SCHEMA, "payment.amount"),
    "amount with a fraction": (changed("payment.amount", 150_000.5), SCHEMA, "payment.amount"),
    "amount 1e-400": (spliced(b'"amount": 150000', b'"amount": 1e-400'), SCHEMA, "payment.amount"),
    "amount as a string": (changed("payment.amount", "150000"), SCHEMA, "payment.amount"),
    "amount as a string with a currency": (changed("payment.amount", "150.000 đ"), SCHEMA, "payment.amount"),
    "amount true": (changed("payment.amount", True), SCHEMA, "payment.amount"),
    "amount null": (changed("payment.amount", None), SCHEMA, "payment.amount"),
    "amount missing": (without("payment.amount"), SCHEMA, "payment"),
    "schema_version as a string": (changed("schema_version", "1"), frozenset({"unsupported_schema_version"}),
                                   "schema_version"),
    "schema_version 2": (changed("schema_version", 2), frozenset({"unsupported_schema_version"}), "schema_version"),
    "schema_version 1e400": (spliced(b'"schema_version": 1', b'"schema_version": 1e400'),
                             frozenset({"unsupported_schema_version"}), "schema_version"),
    "schema_version NaN": (spliced(b'"schema_version": 1', b'"schema_version": NaN'),
                           frozenset({"unsupported_schema_version"}), "schema_version"),
    "schema_version true": (changed("schema_version", True), SCHEMA, "schema_version"),
    "schema_version missing": (without("schema_version"), SCHEMA, "(event)"),
    "reference as a number": (changed("payment.reference", 20261124001), SCHEMA, "payment.reference"),
    "dossier number as a number": (changed("payment.dossier_no", 261124), SCHEMA, "payment.dossier_no"),
    "event_id as a number": (changed("event_id", 1), SCHEMA, "event_id"),
    "source as a number": (changed("source", 7), SCHEMA, "source"),
    "occurred_at as epoch seconds": (changed("occurred_at", 1_795_500_000), SCHEMA, "occurred_at"),
    "requested_at as epoch milliseconds": (changed("payment.requested_at", 1_795_500_000_000), SCHEMA,
                                           "payment.requested_at"),
    "currency as a number": (changed("payment.currency", 704), SCHEMA, "payment.currency"),
    "currency USD": (changed("payment.currency", "USD"), SCHEMA, "payment.currency"),
    "currency in lower case": (changed("payment.currency", "vnd"), SCHEMA, "payment.currency"),
    "event_type another event's": (changed("event_type", "payment.confirmed"), SCHEMA, "event_type"),
    "event_id not a UUID": (changed("event_id", "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6"), SCHEMA, "event_id"),
    "event_id with a newline": (changed("event_id", "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b\n"), SCHEMA, "event_id"),
    "reference ending in a newline": (changed("payment.reference", "PAY-1\n"), SCHEMA, "payment.reference"),
    "reference with a pipe": (changed("payment.reference", "PAY|1"), SCHEMA, "payment.reference"),
    "reference with Vietnamese letters": (changed("payment.reference", "PHÍ-1"), SCHEMA, "payment.reference"),
    "reference empty": (changed("payment.reference", ""), SCHEMA, "payment.reference"),
    "reference of 101 characters": (changed("payment.reference", "R" * 101), SCHEMA, "payment.reference"),
    "dossier number with a space": (changed("payment.dossier_no", "000 001"), SCHEMA, "payment.dossier_no"),
    "source with a space": (changed("source", "mot cua"), SCHEMA, "source"),
    "source with a line separator": (changed("source", "mot\u2028cua"), SCHEMA, "source"),
    "source empty": (changed("source", ""), SCHEMA, "source"),
    "payment as a list": (changed("payment", []), SCHEMA, "payment"),
    "payment as a string": (changed("payment", "150000"), SCHEMA, "payment"),
    "payment null": (changed("payment", None), SCHEMA, "payment"),
    "reference missing": (without("payment.reference"), SCHEMA, "payment"),
    "offset +25:00": (changed("payment.requested_at", "2026-11-24T09:00:00+25:00"), SCHEMA, "payment.requested_at"),
    "offset +24:00": (changed("occurred_at", "2026-11-24T09:00:00+24:00"), SCHEMA, "occurred_at"),
    "offset +07:60": (changed("payment.requested_at", "2026-11-24T09:00:00+07:60"), SCHEMA, "payment.requested_at"),
    "offset -07:99": (changed("payment.expires_at", "2026-11-25T09:00:00-07:99"), SCHEMA, "payment.expires_at"),
    "no offset": (changed("payment.requested_at", "2026-11-24T09:00:00"), SCHEMA, "payment.requested_at"),
    "no offset on expires_at": (changed("payment.expires_at", "2026-11-25T09:00:00"), SCHEMA, "payment.expires_at"),
    "offset without a colon": (changed("occurred_at", "2026-11-24T09:00:00+0700"), SCHEMA, "occurred_at"),
    "offset in hours only": (changed("occurred_at", "2026-11-24T09:00:00+07"), SCHEMA, "occurred_at"),
    "date only": (changed("payment.requested_at", "2026-11-24"), SCHEMA, "payment.requested_at"),
    "leap second in requested_at": (changed("payment.requested_at", "2026-12-31T23:59:60+07:00"), SCHEMA,
                                    "payment.requested_at"),
    "leap second in expires_at": (changed("payment.expires_at", "2026-12-31T23:59:60+07:00"), SCHEMA,
                                  "payment.expires_at"),
    "leap second in occurred_at": (changed("occurred_at", "2016-12-31T23:59:60Z"), SCHEMA, "occurred_at"),
    "February 30th": (changed("payment.expires_at", "2027-02-30T09:00:00+07:00"), SCHEMA, "payment.expires_at"),
    "month 13": (changed("payment.requested_at", "2026-13-01T09:00:00+07:00"), SCHEMA, "payment.requested_at"),
    "hour 24": (changed("occurred_at", "2026-11-24T24:00:00+07:00"), SCHEMA, "occurred_at"),
    "minute 60": (changed("payment.requested_at", "2026-11-24T09:60:00+07:00"), SCHEMA, "payment.requested_at"),
    "year 2100": (changed("payment.expires_at", "2100-01-01T00:00:00+07:00"), SCHEMA, "payment.expires_at"),
    "year 1899": (changed("occurred_at", "1899-12-31T23:59:59Z"), SCHEMA, "occurred_at"),
    "ten fraction digits": (changed("payment.requested_at", "2026-11-24T09:00:00.0123456789+07:00"), SCHEMA,
                            "payment.requested_at"),
    "Arabic-Indic digits": (changed("payment.requested_at", "٢٠٢٦-11-24T09:00:00+07:00"), SCHEMA,
                            "payment.requested_at"),
    "expires before it was requested": (changed("payment.expires_at", "2026-11-24T08:59:59+07:00"), SCHEMA,
                                        "payment.expires_at"),
    "expires when it was requested": (changed("payment.expires_at", "2026-11-24T02:00:00Z"), SCHEMA,
                                      "payment.expires_at"),
    "expires_at empty": (changed("payment.expires_at", ""), SCHEMA, "payment.expires_at"),
    "a JSON string, not an object": (b'"payment.requested"', SCHEMA, "(event)"),
    "a JSON array": (b"[" + raw(valid()) + b"]", SCHEMA, "(event)"),
    "JSON null": (b"null", SCHEMA, "(event)"),
    "empty value": (b"", MALFORMED, "(value)"),
    "whitespace only": (b" \r\n\t", MALFORMED, "(value)"),
    "two JSON values": (raw(valid()) + b" {}", MALFORMED, "(value)"),
    "truncated": (raw(valid())[:-1], MALFORMED, "(value)"),
    "single-quoted JSON": (raw(valid()).replace(b'"', b"'"), MALFORMED, "(value)"),
    "a trailing comma": (raw(valid())[:-1] + b", }", MALFORMED, "(value)"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_payment_request_is_refused_naming_the_field_and_the_rule(name: str) -> None:
    value, reasons, field = HOSTILE[name]
    with pytest.raises(InvalidPaymentRequest) as caught:
        decode_payment_request(KEY, value, max_bytes=MAX)
    error = caught.value
    assert error.reason in reasons and error.field == field, (error.reason, error.field, error.message)
    assert error.kind == "invalid_input"
    # The field named, and the rule: never the value (a reference or a source may carry anything).
    assert str(error).startswith(f"{field}: ") and error.message
    for never in ("PAY\ud800", "\udfff", "motcua\x00", "150.000", "٢٠٢٦", "mot cua", "\x1b"):
        assert never not in error.message


HOSTILE_KEYS: dict[str, bytes | None] = {
    "no key": None,
    "an empty key": b"",
    "another dossier's key": b"000.00.01.H22-261124-0002",
    "the reference as the key": b"PAY-2611-0001",
    "key not UTF-8": b"\xff\xfe",
    "key of the dossier number in UTF-16": NO.encode("utf-16"),
    "key with a NUL": KEY + b"\x00",
    "key with CRLF": KEY + b"\r\n",
    "key with a trailing space": KEY + b" ",
    "key with a surrogate encoded as bytes": KEY + b"\xed\xa0\x80",
    "key in lower case": NO.lower().encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_KEYS))
def test_a_key_that_is_not_the_dossier_number_is_refused_naming_the_key(name: str) -> None:
    with pytest.raises(InvalidPaymentRequest) as caught:
        decode_payment_request(HOSTILE_KEYS[name], raw(valid()), max_bytes=MAX)
    assert (caught.value.reason, caught.value.field) == ("key_mismatch", "(key)")


def test_a_tombstone_is_refused_as_an_empty_value() -> None:
    with pytest.raises(InvalidPaymentRequest) as caught:
        decode_payment_request(KEY, None, max_bytes=MAX)
    assert (caught.value.reason, caught.value.field) == ("empty_value", "(value)")


def test_the_valid_request_decodes_into_its_values_in_utc() -> None:
    request = decode_payment_request(KEY, raw(valid()), max_bytes=MAX)
    assert (request.dossier_no, request.reference, request.amount, request.currency) == (
        NO, "PAY-2611-0001", 150_000, "VND")
    assert request.requested_at == datetime(2026, 11, 24, 2, tzinfo=UTC)
    assert request.expires_at == datetime(2026, 11, 25, 2, tzinfo=UTC)


@pytest.mark.parametrize(("path", "value"), [
    ("extra", "079301234567"), ("payment.colour", {"nested": [1, 2, 3]}), ("payment.payer_phone", IDENTITY[1]),
    ("trace", None), ("payment.amount_text", "một trăm năm mươi nghìn đồng")])
def test_an_unknown_field_is_passed_over(path: str, value: Any) -> None:
    request = decode_payment_request(KEY, changed(path, value), max_bytes=MAX)
    assert (request.reference, request.amount) == ("PAY-2611-0001", 150_000)
    assert not any(text in repr(request) for text in (*IDENTITY, "079301234567"))


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("payment.amount", 150_000.0, 150_000), ("payment.amount", 1, 1), ("payment.amount", 10**13, 10**13),
    ("payment.expires_at", None, None), ("payment.requested_at", "2026-11-24t02:00:00z", datetime(2026, 11, 24, 2)),
    ("payment.requested_at", "2026-11-24 09:00:00.123456789+07:00", datetime(2026, 11, 24, 2, 0, 0, 123456)),
    ("payment.requested_at", "2026-11-24T02:00:00-00:00", datetime(2026, 11, 24, 2))])
def test_values_at_the_edge_of_the_contract_are_taken(path: str, value: Any, expected: Any) -> None:
    request = decode_payment_request(KEY, changed(path, value), max_bytes=MAX)
    got = {"payment.amount": request.amount, "payment.expires_at": request.expires_at,
           "payment.requested_at": request.requested_at}[path]
    if isinstance(expected, datetime):
        expected = expected.replace(tzinfo=UTC)
    assert got == expected and type(got) is type(expected)


def test_duplicate_keys_are_read_last_one_wins() -> None:
    body = spliced(b'"amount": 150000', b'"amount": 1, "amount": 150000')
    assert decode_payment_request(KEY, body, max_bytes=MAX).amount == 150_000


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _leaves(child, (*path, key))
    return found


WRONG_TYPES = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, 2**64]


@pytest.mark.parametrize("wrong", WRONG_TYPES, ids=repr)
def test_a_wrong_type_at_any_field_is_refused_naming_that_field(wrong: Any) -> None:
    for path in _leaves(valid()):
        if (path, wrong) in ((("payment", "expires_at"), None), (("source",), "x"), (("payment", "reference"), "x")):
            continue  # null: no expiry given (the deployment's own applies); "x" is a source and a reference
        document = copy.deepcopy(valid())
        node = document
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = wrong
        with pytest.raises(InvalidPaymentRequest) as caught:
            decode_payment_request(KEY, raw(document), max_bytes=MAX)
        assert caught.value.field == ".".join(path), (path, caught.value.field)
        assert caught.value.reason in {"schema", "unsupported_schema_version"}, path


def _decodes_or_is_refused(key: bytes | None, value: bytes) -> None:
    """A request every field of which keeps the contract, or ``InvalidPaymentRequest`` naming a field; any other
    exception fails the test."""
    refusal: InvalidPaymentRequest | None = None
    try:
        request = decode_payment_request(key, value, max_bytes=MAX)
    except InvalidPaymentRequest as error:
        refusal = error
    if refusal is not None:
        assert refusal.field and refusal.reason and refusal.message
        return
    _keeps_the_contract(request, key)


def _keeps_the_contract(request: PaymentRequest, key: bytes | None) -> None:
    assert isinstance(request, PaymentRequest)
    assert REFERENCE.fullmatch(request.reference) and DOSSIER_NO.fullmatch(request.dossier_no)
    assert key == request.dossier_no.encode()
    assert type(request.amount) is int and 1 <= request.amount <= 10**13
    assert request.currency == "VND"
    assert request.requested_at.utcoffset() == timedelta(0) and request.occurred_at.tzinfo is not None
    assert request.expires_at is None or request.expires_at > request.requested_at
    assert uuid.UUID(request.event_id) and request.event_id == request.event_id.lower()


SPLICES = [b"\\ud800", b"\\u0000", b"\xed\xa0\x80", b"\xc0\xaf", b"1e400", b"NaN", b"[", b"{", b'"', b"\xef\xbb\xbf"]


def _mutated(data: st.DataObject) -> bytes:
    body = bytearray(raw(valid(), ascii_only=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(st.binary(min_size=1, max_size=4) | st.sampled_from(SPLICES))
        if action == "insert":
            body[at:at] = chunk
        elif action == "delete":
            del body[at:at + len(chunk)]
        else:
            body[at:at + len(chunk)] = chunk
    return bytes(body)


@given(st.binary(max_size=400) | st.builds(lambda prefix, body: prefix + body,
                                           st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00\x00\xfe\xff"]),
                                           st.binary(max_size=200)))
@settings(max_examples=400, deadline=None)
def test_any_bytes_decode_into_a_valid_request_or_raise_invalid_payment_request(value: bytes) -> None:
    _decodes_or_is_refused(KEY, value)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_mangling_of_a_valid_request_decodes_into_a_valid_request_or_raises_invalid_payment_request(
        data: st.DataObject) -> None:
    value = _mutated(data)
    key = data.draw(st.sampled_from([KEY, None, b"\xff", NO.upper().encode()]))
    _decodes_or_is_refused(key, value)


TEXTS = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0xFFFF), max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats() | TEXTS
           | st.sampled_from(["2026-11-24T09:00:00+07:00", "2026-12-31T23:59:60+07:00", "2026-11-24T09:00:00+25:00",
                              "VND", NO, "PAY-1", "00000000-0000-0000-0000-000000000000", "payment.requested"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(TEXTS, inner, max_size=3), max_leaves=6)
FIELD_PATHS = [*_leaves(valid()), ("payment", "unknown"), ("unknown",)]


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_any_json_value_at_any_field_decodes_into_a_valid_request_or_raises_invalid_payment_request(
        data: st.DataObject) -> None:
    document: Any = valid()
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(FIELD_PATHS))
        node = document
        for step in path[:-1]:
            node = node.get(step) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if data.draw(st.integers(0, 9)) == 0:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = data.draw(JSON_VALUES)
    value = json.dumps(document, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    _decodes_or_is_refused(KEY, value)


# ---- 2. the Payment Platform's result notification on the public listener ----------------------------------

PARTNER = "PORTALSYNC"
SECRET = "pp-s3cret-9f8e7d6c"  # the shared secret of these tests
PATH = "/pp/notify"
REF = "PAY-H-0001"
NUMERIC_REF = "2026112400017"
AMOUNT = 1_500_000
STEP = 10.0  # one bounded wait on the listener (a connect, a write, a read)
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
FREE_TEXT = f"Lệ phí hồ sơ, CCCD {IDENTITY[0]}, ĐT {IDENTITY[1]}, {IDENTITY[2]}"
REPLY_KEYS = {"MaLoi", "MoTaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD", "MaXacThuc"}


def unsigned(reference: str = REF, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": "NOTIFY", "MaLoi": "00", "MaDoiTac": PARTNER, "MaThamChieu": reference, "SoTien": str(AMOUNT),
        "MaTienTe": "VND", "MaGiaoDich": "GD-778899", "MaNganHang": "VCB",
        "ThoiGianGD": portal_time(datetime.now(UTC)), "ThongTinGiaoDich": FREE_TEXT}
    return {**message, **fields}


def genuine(reference: str = REF, **fields: Any) -> dict[str, Any]:
    return signed(unsigned(reference, **fields), NOTIFICATION_FIELDS, SECRET)


def body_of(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")


def raw_checksum(message: dict[str, Any], secret: str) -> str:
    """The checksum as a careless signer computes it: every field joined by '|' as it is, no refusal."""
    joined = "|".join([*(str(message.get(name) or "") for name in NOTIFICATION_FIELDS), secret])
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


def resigned(message: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    return {**message, "MaXacThuc": raw_checksum(message, secret)}


def replace_in(message: dict[str, Any], old: bytes, new: bytes) -> bytes:
    body = body_of(message)
    assert old in body
    return body.replace(old, new, 1)


@dataclass
class Listener:
    url: str
    port: int
    inbound: InboundStore
    http: aiohttp.ClientSession

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        async def send() -> tuple[int, bytes]:
            async with self.http.post(self.url + PATH, data=body,
                                      headers={"Content-Type": "application/json", **(headers or {})}) as reply:
                return reply.status, await reply.read()

        status, text = await asyncio.wait_for(send(), 30)
        return status, _platform_reply(text)

    async def pending(self, reference: str = REF) -> bool:
        row = await asyncio.wait_for(self.inbound.payment(reference), STEP)
        return row is not None and row.state == "pending"

    async def owed(self) -> list[str]:
        return [m.message_id for m in await asyncio.wait_for(self.inbound.unpublished(), STEP)]

    async def settles_nothing_then_takes_the_genuine_one(self, reference: str = REF) -> None:
        assert await self.pending(reference) and await self.owed() == []
        status, reply = await self.post(body_of(genuine(reference)))
        assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "00", reference), reply
        assert not await self.pending(reference)
        assert await self.owed() == [f"payment:{reference}"]


def _platform_reply(text: bytes) -> dict[str, Any]:
    """The reply must be one JSON object in the platform's format, signed with our secret."""
    assert b"Traceback" not in text
    reply = json.loads(text)
    assert isinstance(reply, dict) and set(reply) == REPLY_KEYS, reply
    verify(reply, REPLY_FIELDS, SECRET)
    assert reply["MaDoiTac"] == PARTNER and reply["MaLoi"] in ("00", "99")
    return reply


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    config = load_settings(None, **{
        "state": {"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
        "payments": {"enabled": True, "platform_url": "http://127.0.0.1:9", "partner_code": PARTNER,
                     "secret": SECRET, "query_initial_seconds": 600, "expiry_seconds": 3600}})
    store = await asyncio.wait_for(StateStore.open(config.state.url), 30)
    inbound = InboundStore(store)
    metrics = Metrics()
    relay = OutboxRelay(inbound, None, config.kafka, metrics)  # never run: the outbox is only looked at
    client = PaymentPlatformClient(config.payments)
    desk = PaymentTracker(config, inbound, relay, client, metrics)
    now = datetime.now(UTC)
    for offset, reference in enumerate((REF, NUMERIC_REF)):
        document = valid()
        document["event_id"] = str(uuid.uuid4())
        document["payment"].update(reference=reference, amount=AMOUNT, requested_at=now.isoformat(),
                                   expires_at=(now + timedelta(hours=1)).isoformat())
        record = ConsumedRecord(config.kafka.topics.payment_requests, 0, offset, KEY, raw(document))
        assert await asyncio.wait_for(desk.register(record), STEP) == "registered"
    app = create_public_app(metrics=metrics, submissions_path="/dvcqg/hoso", payments_path=PATH, intake=None,
                            payments=desk, max_submission_bytes=1 << 20)
    runner, url = await asyncio.wait_for(start_public(app, "127.0.0.1", 0), STEP)
    try:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            yield Listener(url, int(url.rsplit(":", 1)[1]), inbound, http)
    finally:
        await asyncio.wait_for(runner.cleanup(), STEP)
        await asyncio.wait_for(client.close(), STEP)
        await asyncio.wait_for(store.close(), STEP)


def _hostile_notifications() -> dict[str, bytes]:
    real = genuine()
    shifted = unsigned(MaThamChieu=f"{REF}|{AMOUNT}", SoTien="")
    return {
        "forged checksum": body_of({**unsigned(), "MaXacThuc": "0" * 64}),
        "checksum of another message": body_of({**genuine(), "SoTien": "1"}),
        "genuine checksum, failure turned into success": body_of({**genuine(MaLoi="51"), "MaLoi": "00"}),
        "checksum over an empty secret": body_of(resigned(unsigned(), "")),
        "checksum over the secret with a trailing newline": body_of(resigned(unsigned(), SECRET + "\n")),
        "checksum over the fields without the secret": body_of(
            {**unsigned(), "MaXacThuc": hashlib.sha256("|".join(
                str(unsigned()[name]) for name in NOTIFICATION_FIELDS).encode()).hexdigest()}),
        "checksum of the secret alone": body_of({**unsigned(),
                                                  "MaXacThuc": hashlib.sha256(SECRET.encode()).hexdigest()}),
        "checksum as a number": body_of({**unsigned(), "MaXacThuc": int(real["MaXacThuc"][:15], 16)}),
        "checksum as a list": body_of({**unsigned(), "MaXacThuc": [real["MaXacThuc"]]}),
        "checksum null": body_of({**unsigned(), "MaXacThuc": None}),
        "checksum empty": body_of({**unsigned(), "MaXacThuc": ""}),
        "checksum with a newline after it": body_of({**real, "MaXacThuc": real["MaXacThuc"] + "\n"}),
        "checksum with a space before it": body_of({**real, "MaXacThuc": " " + real["MaXacThuc"]}),
        "checksum of 63 digits": body_of({**real, "MaXacThuc": real["MaXacThuc"][:63]}),
        "checksum of 10,000 digits": body_of({**real, "MaXacThuc": real["MaXacThuc"] * 157}),
        "checksum with full-width digits": body_of({**real, "MaXacThuc": real["MaXacThuc"].translate(
            str.maketrans("0123456789", "０１２３４５６７８９"))}),
        "missing MaXacThuc": body_of(unsigned()),
        "MaXacThuc under an upper-case name": body_of({**unsigned(), "MAXACTHUC": real["MaXacThuc"]}),
        "MaXacThuc under a lower-case name": body_of({**unsigned(), "maxacthuc": real["MaXacThuc"]}),
        "'|' inside a field, checksum over the join": body_of(resigned(shifted)),
        "'|' inside the free text, checksum over the join": body_of(resigned(unsigned(ThongTinGiaoDich="a|b"))),
        "'|' inside the partner code": body_of(resigned(unsigned(MaDoiTac=f"{PARTNER}|X"))),
        "duplicate key, the second amount another": replace_in(
            real, b'"SoTien": "1500000"', b'"SoTien": "1500000", "SoTien": "1"'),
        "duplicate key, the same value twice": replace_in(
            real, b'"SoTien": "1500000"', b'"SoTien": "1500000", "SoTien": "1500000"'),
        "duplicate MaXacThuc": replace_in(
            real, b'"MaXacThuc": ', b'"MaXacThuc": "' + b"0" * 64 + b'", "MaXacThuc": '),
        "lone surrogate in the free text": body_of(resigned(unsigned(ThongTinGiaoDich="Lệ phí \ud800"))),
        "lone surrogate in the reference": body_of(resigned(unsigned(MaThamChieu=REF + "\ud800"))),
        "lone surrogate in a key": replace_in(real, b'"MaNganHang"', b'"MaNgan\\ud800Hang"'),
        "surrogate encoded as bytes": replace_in(real, b'"VCB"', b'"VC\xed\xa0\x80"'),
        "NUL in the free text": body_of(resigned(unsigned(ThongTinGiaoDich="Lệ phí\x00"))),
        "NUL in the reference": body_of(resigned(unsigned(MaThamChieu=REF + "\x00"))),
        "escape sequence in the bank code": body_of(resigned(unsigned(MaNganHang="\x1b[2JVCB"))),
        "raw NUL byte in a string": replace_in(real, b'"VCB"', b'"VC\x00B"'),
        "overlong UTF-8": replace_in(real, b'"VCB"', b'"VC\xc0\xaf"'),
        "invalid UTF-8": replace_in(real, b'"VCB"', b'"VC\xff"'),
        "byte-order mark before a genuine body": b"\xef\xbb\xbf" + body_of(genuine()),
        "UTF-16 of a genuine body": json.dumps(genuine()).encode("utf-16"),
        "depth 10,000": b"[" * 10_000 + b"]" * 10_000,
        "depth 10,000 of objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        "depth 10,000 inside a genuine body": replace_in(
            genuine(), b'"LoaiBanTin"', b'"x": ' + b"[" * 10_000 + b"]" * 10_000 + b', "LoaiBanTin"'),
        "depth 100 inside a genuine body": replace_in(
            genuine(), b'"LoaiBanTin"', b'"x": ' + b"[" * 100 + b"]" * 100 + b', "LoaiBanTin"'),
        "reference as a float": body_of(resigned(unsigned(MaThamChieu=2026112400017.0))),
        "reference 1e400": replace_in(resigned(unsigned(MaThamChieu=7)), b'"MaThamChieu": 7', b'"MaThamChieu": 1e400'),
        "reference of 5,000 digits": replace_in(resigned(unsigned(MaThamChieu=7)), b'"MaThamChieu": 7',
                                                b'"MaThamChieu": ' + b"9" * 5000),
        "reference true": body_of(resigned(unsigned(MaThamChieu=True))),
        "reference as a list": body_of(resigned(unsigned(MaThamChieu=[REF]))),
        "reference missing": body_of({k: v for k, v in genuine().items() if k != "MaThamChieu"}),
        "reference NaN": replace_in(real, f'"MaThamChieu": "{REF}"'.encode(), b'"MaThamChieu": NaN'),
        "unknown reference, genuine checksum": body_of(genuine("PAY-NOT-OURS")),
        "reference in another case, genuine checksum": body_of(genuine(REF.lower())),
        "another partner, genuine checksum": body_of(genuine(MaDoiTac="SOMEONE")),
        "another amount, genuine checksum": body_of(genuine(SoTien=str(AMOUNT - 1))),
        "another currency, genuine checksum": body_of(genuine(MaTienTe="USD")),
        "amount negative": body_of(resigned(unsigned(SoTien=-AMOUNT))),
        "amount with a fraction": body_of(resigned(unsigned(SoTien=f"{AMOUNT}.0"))),
        "amount 1e400": replace_in(real, b'"SoTien": "1500000"', b'"SoTien": 1e400'),
        "amount Infinity": replace_in(real, b'"SoTien": "1500000"', b'"SoTien": Infinity'),
        "amount of 5,000 digits": replace_in(real, b'"SoTien": "1500000"', b'"SoTien": ' + b"9" * 5000),
        "amount of 20 digits": body_of(resigned(unsigned(SoTien=10**19 + AMOUNT))),
        "amount with Arabic-Indic digits": body_of(resigned(unsigned(SoTien="١٥٠٠٠٠٠"))),
        "time on a 12-hour clock": body_of(resigned(unsigned(ThoiGianGD="20261124031500PM"))),
        "time with a leap second": body_of(resigned(unsigned(ThoiGianGD="20261231235960"))),
        "time with hour 24": body_of(resigned(unsigned(ThoiGianGD="20261124240000"))),
        "free text of 2,001 characters": body_of(resigned(unsigned(ThongTinGiaoDich="x" * 2001))),
        "a field as an object": body_of(resigned(unsigned(MaGiaoDich={"id": "GD-1"}))),
        "message type missing": body_of(resigned({k: v for k, v in unsigned().items() if k != "LoaiBanTin"})),
        "a JSON array": body_of([genuine()]),
        "a JSON string": b'"NOTIFY"',
        "JSON null": b"null",
        "empty body": b"",
        "two JSON values": body_of(genuine()) + b" {}",
        "truncated": body_of(genuine())[:-1],
        "1e400 at the top": b"1e400",
        "form-encoded, not JSON": b"MaLoi=00&MaThamChieu=" + REF.encode(),
    }


HOSTILE_NOTIFICATIONS = _hostile_notifications()


def _logged_nothing_secret(logs: list[dict[str, Any]], *also: str) -> None:
    text = json.dumps(logs, default=str, ensure_ascii=False) + repr(logs)
    for never in (SECRET, *IDENTITY, FREE_TEXT, *also):
        assert never not in text, never


def _checksums(body: bytes) -> list[str]:
    """Every 64-hex-digit string of a body (its checksums), which must not reach a log line."""
    text = body.decode("utf-8", "replace")
    return [word for word in text.replace('"', " ").split() if len(word) == 64 and word.isalnum()]


@pytest.mark.parametrize("name", sorted(HOSTILE_NOTIFICATIONS))
async def test_a_hostile_notification_settles_nothing_and_the_next_genuine_one_is_taken(
        listener: Listener, name: str) -> None:
    body = HOSTILE_NOTIFICATIONS[name]
    with structlog.testing.capture_logs() as logs:
        status, reply = await listener.post(body)
        assert (status, reply["MaLoi"]) == (200, "99"), reply
        # A reference is echoed only when it is a clean one.
        assert reply["MaThamChieu"] == "" or REFERENCE.fullmatch(reply["MaThamChieu"]), reply
        await listener.settles_nothing_then_takes_the_genuine_one()
    _logged_nothing_secret(logs, *_checksums(body))


async def test_a_genuine_notification_is_taken_once_and_a_replay_is_refused(listener: Listener) -> None:
    body = body_of(genuine())
    with structlog.testing.capture_logs() as logs:
        status, reply = await listener.post(body)
        assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "00", REF)
        again = await listener.post(body)
        assert (again[0], again[1]["MaLoi"]) == (200, "99")
    assert await listener.owed() == [f"payment:{REF}"]
    assert any(entry.get("result") == "accepted" for entry in logs)
    _logged_nothing_secret(logs, *_checksums(body), str(AMOUNT), reply["MaXacThuc"])


async def test_a_checksum_in_upper_case_hex_is_the_same_checksum_and_is_taken(listener: Listener) -> None:
    message = genuine()
    status, reply = await listener.post(body_of({**message, "MaXacThuc": message["MaXacThuc"].upper()}))
    assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "00", REF)


async def test_a_numeric_reference_is_read_as_its_digits_and_taken(listener: Listener) -> None:
    message = signed(unsigned(int(NUMERIC_REF)), NOTIFICATION_FIELDS, SECRET)
    assert message["MaXacThuc"] == checksum(unsigned(NUMERIC_REF), NOTIFICATION_FIELDS, SECRET)
    forged = {**message, "MaLoi": "51"}
    status, reply = await listener.post(body_of(forged))
    assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "99", NUMERIC_REF)
    assert await listener.pending(NUMERIC_REF)
    status, reply = await listener.post(body_of(message))
    assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "00", NUMERIC_REF)
    assert await listener.owed() == [f"payment:{NUMERIC_REF}"]


async def test_an_amount_sent_as_a_number_is_read_as_its_digits_and_taken(listener: Listener) -> None:
    status, reply = await listener.post(body_of(genuine(SoTien=AMOUNT)))
    assert (status, reply["MaLoi"]) == (200, "00")


async def test_a_ten_megabyte_notification_is_refused_and_the_next_genuine_one_is_taken(listener: Listener) -> None:
    body = b'{"ThongTinGiaoDich": "' + b"x" * 10_000_000 + b'"}'
    status, reply = await listener.post(body)
    assert (status, reply["MaLoi"]) == (200, "99") and "over 65536 bytes" in reply["MoTaLoi"]
    await listener.settles_nothing_then_takes_the_genuine_one()


# ---- raw HTTP: chunks and headers no client library sends ---------------------------------------------------

def _head(*headers: bytes, chunked: bool = False, length: int | None = None) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Content-Type: application/json", *headers]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunks(body: bytes, size: int) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)] + [
        b"0\r\n\r\n"]


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_post(port: int, parts: list[bytes]) -> RawReply:
    """Write ``parts`` one after another to the listener (the reply is read while they are written: the
    listener may answer before it has all of them) and read the whole reply."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for part in parts:
                writer.write(part)
                await asyncio.wait_for(writer.drain(), STEP)

    sending = asyncio.create_task(send())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), STEP)
        else:
            body = await asyncio.wait_for(reader.read(), STEP)
        return RawReply(int(status_line.split(" ", 2)[1]), headers, body)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(sending, STEP)
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), STEP)


async def test_a_genuine_notification_in_one_byte_chunks_is_read_whole_and_taken(listener: Listener) -> None:
    reply = await raw_post(listener.port, [_head(chunked=True), *_chunks(body_of(genuine()), 1)])
    answer = _platform_reply(reply.body)
    assert (reply.status, answer["MaLoi"], answer["MaThamChieu"]) == (200, "00", REF)
    assert await listener.owed() == [f"payment:{REF}"]


@pytest.mark.parametrize("name", ["forged checksum", "duplicate key, the second amount another",
                                  "lone surrogate in the free text", "byte-order mark before a genuine body",
                                  "depth 10,000"])
async def test_a_hostile_notification_in_one_byte_chunks_settles_nothing_and_the_next_genuine_one_is_taken(
        listener: Listener, name: str) -> None:
    body = HOSTILE_NOTIFICATIONS[name]
    reply = await raw_post(listener.port, [_head(chunked=True), *_chunks(body, 1)])
    assert (reply.status, _platform_reply(reply.body)["MaLoi"]) == (200, "99")
    await listener.settles_nothing_then_takes_the_genuine_one()


async def test_a_ten_megabyte_chunked_notification_is_refused_and_the_next_genuine_one_is_taken(
        listener: Listener) -> None:
    body = b'{"ThongTinGiaoDich": "' + b"x" * 10_000_000 + b'"}'
    reply = await raw_post(listener.port, [_head(chunked=True), *_chunks(body, 65_536)])
    assert (reply.status, _platform_reply(reply.body)["MaLoi"]) == (200, "99")
    await listener.settles_nothing_then_takes_the_genuine_one()


# A header value that carries its own line break, or bytes that are not text. The notification's checksum,
# not a header, says whether it is genuine: none of these may make a forged body count, or a genuine one fail.
ODD_HEADERS: dict[str, bytes] = {
    "non-UTF-8 bytes in a header value": b"X-Request-Id: \xff\xfe\xc0\xaf",
    "Latin-1 in a header value": b"X-Caller: Nguy\xean",
    "non-UTF-8 bytes in the content type": b"X-Content-Note: application/json; charset=\xff",
    "a NUL in a header value": b"X-Request-Id: a\x00b",
    "a very long header value": b"X-Pad: " + b"a" * 7000,
    "an injected header after CRLF": b"X-Trace: t1\r\nX-Injected: MaLoi=00",
}


@pytest.mark.parametrize("name", sorted(ODD_HEADERS))
async def test_an_odd_header_makes_no_forged_notification_count_and_no_genuine_one_fail(
        listener: Listener, name: str) -> None:
    forged = HOSTILE_NOTIFICATIONS["forged checksum"]
    with structlog.testing.capture_logs() as logs:
        refused = await raw_post(listener.port, [_head(ODD_HEADERS[name], length=len(forged)) + forged])
        assert b"Traceback" not in refused.body and "x-injected" not in refused.headers
        assert refused.status in (200, 400, 431), refused
        if refused.status == 200:
            assert _platform_reply(refused.body)["MaLoi"] == "99"
        assert await listener.pending() and await listener.owed() == []
        body = body_of(genuine())
        taken = await raw_post(listener.port, [_head(ODD_HEADERS[name], length=len(body)) + body])
    _logged_nothing_secret(logs, *_checksums(body))
    if taken.status == 200:
        assert _platform_reply(taken.body)["MaLoi"] == "00"
        assert await listener.owed() == [f"payment:{REF}"]
    else:
        # A header the HTTP layer refuses: so is the request, whatever its body.
        assert taken.status in (400, 431), taken
        await listener.settles_nothing_then_takes_the_genuine_one()


# What the HTTP layer refuses before the listener's handler runs: a header line broken by a bare CR or LF
# (an attempt to inject a header), a body framed two ways (request smuggling), a header name that is not a
# token. Refused (4xx), never a 500 or a traceback, nothing injected into the reply; then a genuine call is taken.
BROKEN_FRAMING: dict[str, bytes] = {
    "a bare CR in a header value": _head(b"X-Trace: t1\rX-Injected: 1") + body_of(genuine()),
    "a bare LF in a header value": _head(b"X-Trace: t1\nX-Injected: 1") + body_of(genuine()),
    "CRLF then an injected Content-Length": _head(b"X-Trace: t1\r\nContent-Length: 2",
                                                  length=len(body_of(genuine()))) + body_of(genuine()),
    "Content-Length and chunked both": _head(chunked=True, length=5) + b"".join(_chunks(body_of(genuine()), 64)),
    "a negative Content-Length": _head(length=-1) + body_of(genuine()),
    "a header name with a space": _head(b"X Trace: 1") + body_of(genuine()),
    "a header name that is not UTF-8": _head(b"X-\xff: 1") + body_of(genuine()),
    "obsolete line folding": _head(b"X-Trace: t1\r\n X-Injected: 1") + body_of(genuine()),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FRAMING))
async def test_a_request_broken_at_the_http_layer_is_refused_and_the_next_genuine_one_is_taken(
        listener: Listener, name: str) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await raw_post(listener.port, [BROKEN_FRAMING[name]])
    assert 400 <= reply.status < 500, reply
    assert b"Traceback" not in reply.body and "x-injected" not in reply.headers
    assert SECRET.encode() not in reply.body and FREE_TEXT.encode() not in reply.body
    _logged_nothing_secret(logs)
    await listener.settles_nothing_then_takes_the_genuine_one()
