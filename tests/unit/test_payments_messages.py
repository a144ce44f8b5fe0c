"""Payments as data: the payment.requested contract, the platform's messages and the outcome document."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.payments.checksum import NOTIFICATION_FIELDS, checksum
from connector.payments.messages import (
    EXPIRED,
    OUTCOME_NAMESPACE,
    InvalidPaymentMessage,
    InvalidPaymentRequest,
    Settlement,
    clean_reference,
    decode_payment_request,
    field_text,
    outcome_document,
    outcome_errors,
    outcome_event_id,
    parse_notification,
    parse_query_reply,
    request_errors,
    settlement_of,
)

NO = "000.00.01.H22-261124-0001"
REQUEST: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "3f9c0a1b-2c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "event_type": "payment.requested",
    "occurred_at": "2026-11-24T10:00:00+07:00",
    "source": "motcua",
    "payment": {"dossier_no": NO, "reference": "BXD.2026-000123_a", "amount": 1_500_000, "currency": "VND",
                "requested_at": "2026-11-24T10:00:00+07:00", "expires_at": "2026-11-25T10:00:00+07:00"},
}
NOTIFICATION: dict[str, Any] = {
    "LoaiBanTin": "THANHTOAN", "MaLoi": "00", "MaDoiTac": "PORTALSYNC", "MaThamChieu": "BXD.2026-000123_a",
    "SoTien": 1_500_000, "MaTienTe": "VND", "MaGiaoDich": "PP-998877", "MaNganHang": "VCB",
    "ThoiGianGD": "20261124143005", "ThongTinGiaoDich": "Lệ phí cấp chứng chỉ hành nghề",
    "MaXacThuc": "ab" * 32,
}


def encoded(document: Any, key: bytes | None = NO.encode()) -> tuple[bytes | None, bytes]:
    return key, json.dumps(document, ensure_ascii=False).encode("utf-8")


def mutated(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(REQUEST)
    change(document)
    return document


# --- payment.requested ---------------------------------------------------------------------------------

def test_a_valid_request_decodes_with_times_in_utc() -> None:
    request = decode_payment_request(*encoded(REQUEST))
    assert (request.dossier_no, request.reference, request.amount, request.currency) == (
        NO, "BXD.2026-000123_a", 1_500_000, "VND")
    assert request.requested_at == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    assert request.requested_at.tzinfo is UTC
    assert request.expires_at == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def test_currency_defaults_to_vnd_expiry_is_optional_and_unknown_fields_are_ignored() -> None:
    def change(d: dict[str, Any]) -> None:
        del d["payment"]["currency"]
        del d["payment"]["expires_at"]
        d["trace"] = {"x": 1}
        d["payment"]["note"] = "later fields"

    request = decode_payment_request(*encoded(mutated(change)))
    assert request.currency == "VND" and request.expires_at is None
    assert decode_payment_request(*encoded(mutated(lambda d: d["payment"].update(expires_at=None)))).expires_at is None


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: d["payment"].pop("reference"), "payment", "schema"),
        (lambda d: d.update(event_type="payment.confirmed"), "event_type", "schema"),
        (lambda d: d["payment"].update(reference="has space"), "payment.reference", "schema"),
        (lambda d: d["payment"].update(reference="R" * 101), "payment.reference", "schema"),
        (lambda d: d["payment"].update(reference=""), "payment.reference", "schema"),
        # Python's "$" would let a final newline through; the schema's pattern means the end of the text.
        (lambda d: d["payment"].update(reference="REF-1\n"), "payment.reference", "schema"),
        (lambda d: d["payment"].update(dossier_no=NO + "\n"), "payment.dossier_no", "schema"),
        (lambda d: d.update(source="motcua\n"), "source", "schema"),
        (lambda d: d["payment"].update(amount=0), "payment.amount", "schema"),
        (lambda d: d["payment"].update(amount=10**13 + 1), "payment.amount", "schema"),
        (lambda d: d["payment"].update(amount=1.5), "payment.amount", "schema"),
        (lambda d: d["payment"].update(amount="1500000"), "payment.amount", "schema"),
        (lambda d: d["payment"].update(amount=True), "payment.amount", "schema"),
        (lambda d: d["payment"].update(currency="USD"), "payment.currency", "schema"),
        (lambda d: d["payment"].update(requested_at="2026-11-24T10:00:00"), "payment.requested_at", "schema"),
        (lambda d: d["payment"].update(requested_at="2026-02-30T10:00:00+07:00"), "payment.requested_at", "schema"),
        (lambda d: d["payment"].update(expires_at="2026-11-24T09:59:59+07:00"), "payment.expires_at", "schema"),
        (lambda d: d["payment"].update(expires_at="2026-11-24T03:00:00Z"), "payment.expires_at", "schema"),
        (lambda d: d.update(event_id="not-a-uuid"), "event_id", "schema"),
        (lambda d: d.update(schema_version=2), "schema_version", "unsupported_schema_version"),
    ],
)
def test_a_broken_request_names_the_field_and_the_rule(change: Any, field: str, reason: str) -> None:
    with pytest.raises(InvalidPaymentRequest) as caught:
        decode_payment_request(*encoded(mutated(change)))
    assert (caught.value.field, caught.value.reason, caught.value.kind) == (field, reason, "invalid_input")


def test_the_key_must_be_the_dossier_number() -> None:
    for key in (None, b"", b"000.00.01.H22-261124-0002", b"\xff"):
        with pytest.raises(InvalidPaymentRequest) as caught:
            decode_payment_request(*encoded(REQUEST, key))
        assert (caught.value.reason, caught.value.field) == ("key_mismatch", "(key)")


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "empty_value"), (b"\xff\xfe", "malformed_json"), (b"{", "malformed_json"),
     (b"[" * 10_000, "malformed_json"), (b"1" * 5000, "malformed_json"), (b"[]", "schema"), (b"null", "schema"),
     (b" " * 70_000, "too_large")],
)
def test_bytes_that_are_not_a_request(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidPaymentRequest) as caught:
        decode_payment_request(NO.encode(), value)
    assert caught.value.reason == reason


def test_errors_never_quote_the_values() -> None:
    secret_looking = "0912345678-LEAK"
    for change in (lambda d: d["payment"].update(reference=secret_looking + " x"),
                   lambda d: d["payment"].update(dossier_no=secret_looking + " x"),
                   lambda d: d.update(source=secret_looking + " x"),
                   lambda d: d["payment"].update(amount=secret_looking)):
        with pytest.raises(InvalidPaymentRequest) as caught:
            decode_payment_request(*encoded(mutated(change)))
        assert secret_looking not in str(caught.value)


# --- the platform's messages ---------------------------------------------------------------------------

def test_a_notification_reads_every_field() -> None:
    note = parse_notification(NOTIFICATION)
    assert (note.message_type, note.error_code, note.partner_code, note.reference, note.amount, note.currency) == (
        "THANHTOAN", "00", "PORTALSYNC", "BXD.2026-000123_a", 1_500_000, "VND")
    assert note.transaction_time == datetime(2026, 11, 24, 7, 30, 5, tzinfo=UTC)
    assert (note.transaction_id, note.bank_code, note.details) == ("PP-998877", "VCB", NOTIFICATION["ThongTinGiaoDich"])


def test_whole_numbers_may_come_as_text_and_optional_fields_may_be_missing_or_null() -> None:
    note = parse_notification({**NOTIFICATION, "SoTien": "1500000", "ThoiGianGD": 20261124143005,
                               "MaGiaoDich": None, "MaNganHang": ""} | {"ThongTinGiaoDich": None})
    assert note.amount == 1_500_000 and note.transaction_id == "" and note.bank_code == ""
    reduced = {k: v for k, v in NOTIFICATION.items() if k not in ("MaTienTe", "MaGiaoDich", "MaNganHang",
                                                                 "ThongTinGiaoDich")}
    assert parse_notification(reduced).currency == ""


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"SoTien": 1500000.0}, "SoTien"),
        ({"SoTien": "1.500.000"}, "SoTien"),
        ({"SoTien": "-5"}, "SoTien"),
        ({"SoTien": -5}, "SoTien"),
        ({"SoTien": True}, "SoTien"),
        ({"SoTien": None}, "SoTien"),
        ({"SoTien": 10**19}, "SoTien"),
        ({"MaLoi": ["00"]}, "MaLoi"),
        ({"MaLoi": ""}, "MaLoi"),
        ({"LoaiBanTin": ""}, "LoaiBanTin"),
        ({"MaDoiTac": {"x": 1}}, "MaDoiTac"),
        ({"MaThamChieu": None}, "MaThamChieu"),
        ({"MaThamChieu": "R" * 101}, "MaThamChieu"),
        ({"ThoiGianGD": "2026-11-24 14:30"}, "ThoiGianGD"),
        ({"ThoiGianGD": "20260230143005"}, "ThoiGianGD"),  # February 30th
        ({"ThoiGianGD": "20261124243005"}, "ThoiGianGD"),  # hour 24
        ({"ThoiGianGD": "20261124143005\n"}, "ThoiGianGD"),
        ({"ThongTinGiaoDich": "x" * 2001}, "ThongTinGiaoDich"),
        ({"ThongTinGiaoDich": "a\x00b"}, "ThongTinGiaoDich"),
        ({"ThongTinGiaoDich": "lone \ud800 surrogate"}, "ThongTinGiaoDich"),
        ({"MaNganHang": "VCB|1"}, "MaNganHang"),
        ({"MaXacThuc": None}, "MaXacThuc"),
        ({"MaXacThuc": 12}, "MaXacThuc"),
        ({"MaXacThuc": "a" * 129}, "MaXacThuc"),
    ],
)
def test_a_notification_breaking_a_field_rule_is_malformed_and_says_which(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPaymentMessage) as caught:
        parse_notification({**NOTIFICATION, **change})
    assert (caught.value.reason, caught.value.field) == ("malformed", field)


def test_a_body_that_is_not_an_object_is_malformed() -> None:
    for body in (None, [], "text", 12, [NOTIFICATION]):
        with pytest.raises(InvalidPaymentMessage) as caught:
            parse_notification(body)
        assert caught.value.field == "(body)"


def test_field_text_is_what_the_checksum_reads() -> None:
    message = {"a": "x", "b": 12, "c": None}
    assert [field_text(message, k, limit=10) for k in ("a", "b", "c", "missing")] == ["x", "12", "", ""]


def test_a_query_reply_says_paid_pending_or_failed() -> None:
    paid = parse_query_reply({**NOTIFICATION, "TrangThaiGD": "1"})
    assert paid.status == "1" and paid.amount == 1_500_000
    assert parse_query_reply({"MaThamChieu": "R", "TrangThaiGD": 3}).status == "3"
    assert parse_query_reply({"MaThamChieu": "R", "TrangThaiGD": "4", "MaLoi": "51"}).error_code == "51"
    for bad in ({"TrangThaiGD": "2"}, {"TrangThaiGD": None}, {"TrangThaiGD": "01"}, {"TrangThaiGD": ["1"]},
                {"TrangThaiGD": "1"}, {"TrangThaiGD": "1", "SoTien": 5},
                {"TrangThaiGD": "1", "SoTien": "x", "ThoiGianGD": "20261124143005"}):
        with pytest.raises(InvalidPaymentMessage) as caught:
            parse_query_reply({"MaThamChieu": "R", **bad})
        assert caught.value.reason == "malformed_reply"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=4), max_leaves=8),
       st.dictionaries(st.sampled_from([*NOTIFICATION_FIELDS, "MaXacThuc", "TrangThaiGD"]),
                       st.none() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False), max_size=12))
def test_any_json_is_a_notification_or_an_invalid_message_that_quotes_nothing(junk: Any,
                                                                              fields: dict[str, Any]) -> None:
    for body in (junk, fields, {**NOTIFICATION, **fields}):
        error: InvalidPaymentMessage | None = None
        try:
            note = parse_notification(body)
        except InvalidPaymentMessage as caught:
            error = caught
        if error is not None:
            assert error.field is not None
            for value in (body.values() if isinstance(body, dict) else ()):
                if isinstance(value, str) and len(value) >= 4:
                    assert value not in error.message
        else:
            # What passed can be checksummed and encoded: nothing downstream can trip on it.
            checksum(body, NOTIFICATION_FIELDS, "secret")
            json.dumps(note.details, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(InvalidPaymentMessage):
            parse_query_reply(body if isinstance(body, dict) else {})


def test_clean_reference() -> None:
    assert clean_reference("BXD.2026-000123_a") == "BXD.2026-000123_a"
    # A numeric reference (some platforms send one as a JSON number) reads as its digits.
    assert clean_reference(2026000123) == "2026000123" and clean_reference(True) is None
    for bad in (None, 1.5, "", "R" * 101, "a b", "REF\n", "ref|x", "ﬁ"):
        assert clean_reference(bad) is None


# --- outcomes ------------------------------------------------------------------------------------------

REQUESTED_AT = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DECIDED_AT = datetime(2026, 11, 24, 7, 31, tzinfo=UTC)


def document_of(settlement: Settlement, reference: str = "BXD.2026-000123_a") -> dict[str, Any]:
    return outcome_document(reference=reference, dossier_no=NO, amount=1_500_000, currency="VND",
                            requested_at=REQUESTED_AT, settlement=settlement, occurred_at=DECIDED_AT)


def test_a_confirmed_callback_becomes_a_valid_outcome_with_the_platform_time_in_plus_seven() -> None:
    settlement = settlement_of(parse_notification(NOTIFICATION), "callback")
    assert settlement is not None
    document = document_of(settlement)
    assert outcome_errors(document) == []
    assert document["event_type"] == "payment.confirmed" and document["source"] == "payment-platform"
    assert document["occurred_at"] == "2026-11-24T07:31:00Z"
    assert document["payment"] == {
        "reference": "BXD.2026-000123_a", "dossier_no": NO, "amount": 1_500_000, "currency": "VND",
        "requested_at": "2026-11-24T03:00:00Z", "learnt_via": "callback", "transaction_id": "PP-998877",
        "bank_code": "VCB", "paid_at": "2026-11-24T14:30:05+07:00", "error_code": None,
        "details": NOTIFICATION["ThongTinGiaoDich"]}


def test_any_other_error_code_is_a_failure_and_query_states_settle_the_same_way() -> None:
    failed = settlement_of(parse_notification({**NOTIFICATION, "MaLoi": "24", "MaGiaoDich": ""}), "callback")
    assert failed is not None and failed.outcome == "failed" and failed.error_code == "24"
    assert failed.paid_at is None and failed.transaction_id is None
    assert settlement_of(parse_query_reply({**NOTIFICATION, "TrangThaiGD": "1"}), "query").outcome == "confirmed"
    assert settlement_of(parse_query_reply({**NOTIFICATION, "TrangThaiGD": "4", "MaLoi": "51"}),
                         "query").outcome == "failed"
    assert settlement_of(parse_query_reply({"MaThamChieu": "R", "TrangThaiGD": "3"}), "query") is None
    for settlement in (failed, EXPIRED, settlement_of(parse_query_reply({**NOTIFICATION, "TrangThaiGD": "1"}),
                                                      "query")):
        assert settlement is not None
        assert outcome_errors(document_of(settlement)) == [], settlement


def test_the_schema_holds_each_outcome_to_its_shape() -> None:
    expired = document_of(EXPIRED)
    assert outcome_errors({**expired, "payment": {**expired["payment"], "transaction_id": "X"}})
    assert outcome_errors({**expired, "payment": {**expired["payment"], "learnt_via": "callback"}})
    confirmed = document_of(Settlement("confirmed", "query", paid_at=DECIDED_AT))
    assert outcome_errors(confirmed) == []
    assert outcome_errors({**confirmed, "payment": {**confirmed["payment"], "paid_at": None}})
    assert outcome_errors({**confirmed, "payment": {**confirmed["payment"], "extra": 1}})
    assert outcome_errors({**confirmed, "event_type": "payment.requested"})


def test_the_event_id_is_fixed_by_the_reference() -> None:
    assert outcome_event_id("REF-1") == str(uuid.uuid5(OUTCOME_NAMESPACE, "payment:REF-1")) == document_of(
        EXPIRED, "REF-1")["event_id"]
    assert outcome_event_id("REF-1") != outcome_event_id("REF-2")
    assert uuid.uuid5(uuid.NAMESPACE_URL, "urn:portal-sync:events:payment-outcome") == OUTCOME_NAMESPACE


def test_a_request_document_and_its_schema_agree_on_the_sample() -> None:
    assert request_errors(REQUEST) == []
    late = mutated(lambda d: d["payment"].update(requested_at=(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        hours=1)).isoformat()))
    assert request_errors(late) == []
