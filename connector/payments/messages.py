"""Payments as data: the local ``payment.requested`` event, the Payment Platform's result notification and
QUERY reply, and the outcome document published to ``portal.payments``. Pure: values in, values out.

The JSON Schemas in ``connector/schemas/events/`` are the contracts of the two Kafka documents; the platform's
messages have no published schema, so their rules are here, as data (``FIELD_LIMITS``). Every input is
hostile: errors name the field and the rule, and never quote the value (a reference or free text may carry
what should not reach a log line).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema

from connector.config import SCHEMAS_DIR
from connector.contracts import Contract, first_error, read_document
from connector.errors import InvalidInput
from connector.national_time import PORTAL_TZ, parse_portal_time, parse_rfc3339, rfc3339
from connector.payments.checksum import NOTIFICATION_FIELDS, ChecksumRefused, signed_text

PAYMENT_REQUESTED_SCHEMA = SCHEMAS_DIR / "events" / "payment-requested.v1.schema.json"
PAYMENT_OUTCOME_SCHEMA = SCHEMAS_DIR / "events" / "payment-outcome.v1.schema.json"

REQUESTED_EVENT_TYPE = "payment.requested"
OUTCOME_SOURCE = "payment-platform"
# The namespace of outcome event ids (uuid5 of it and "payment:<reference>"); fixed for ever: consumers may
# de-duplicate on the event id. It is uuid5(NAMESPACE_URL, "urn:portal-sync:events:payment-outcome").
OUTCOME_NAMESPACE = uuid.UUID("215c2982-7da8-5959-b7fc-f2a090b7c5b3")
# A payment.requested event is a few hundred bytes; anything much larger is not one (whatever room
# kafka.max_event_bytes leaves dossier events).
MAX_REQUEST_BYTES = 64 * 1024

Outcome = Literal["confirmed", "failed", "expired"]
LearntVia = Literal["callback", "query", "expiry"]

# What a clean reference (MaThamChieu) and dossier number look like: the schema's patterns, anchored the
# Python way (its "$" also matches before a final newline).
REFERENCE = re.compile(r"[0-9A-Za-z._-]{1,100}")

# The Payment Platform's fields: the longest value accepted (in characters; a whole number in its decimal
# digits). No public specification bounds them; these are generous for what each field holds.
FIELD_LIMITS: dict[str, int] = {
    "LoaiBanTin": 64, "PhienBan": 32, "MaLoi": 16, "MaDoiTac": 64, "MaThamChieu": 100, "SoTien": 19,
    "MaTienTe": 8, "MaGiaoDich": 100, "MaNganHang": 64, "ThoiGianGD": 14, "ThongTinGiaoDich": 2000,
    "TrangThaiGD": 4,
}
# A result notification without one of these cannot be acted on.
NOTIFICATION_REQUIRED = ("LoaiBanTin", "MaLoi", "MaDoiTac", "MaThamChieu", "SoTien", "ThoiGianGD")
MAX_CHECKSUM_CHARS = 128  # MaXacThuc: its form (64 hex digits) is the checksum check's to judge
SUCCESS_CODE = "00"  # MaLoi of a successful payment
# TrangThaiGD of a QUERY reply.
QUERY_PAID, QUERY_PENDING, QUERY_FAILED = "1", "3", "4"
_DIGITS = re.compile(r"[0-9]{1,19}")
_UNPRINTABLE = frozenset({"Cc", "Cs"})  # control characters; lone surrogates (JSON can spell them)


# --- errors ----------------------------------------------------------------------------------------------

class InvalidPaymentRequest(InvalidInput):
    """A payment.requested record that cannot be used: bad bytes, schema violation, broken contract."""


class InvalidPaymentMessage(InvalidInput):
    """A Payment Platform message (result notification or QUERY reply) that breaks a field rule."""


# --- payment.requested ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaymentRequest:
    event_id: str
    occurred_at: datetime
    source: str
    dossier_no: str
    reference: str
    amount: int
    currency: str
    requested_at: datetime
    expires_at: datetime | None


REQUESTED = Contract(PAYMENT_REQUESTED_SCHEMA)
OUTCOME = Contract(PAYMENT_OUTCOME_SCHEMA)


def request_errors(document: Any) -> list[jsonschema.ValidationError]:
    """Every way ``document`` breaks payment-requested.v1, shallowest first; empty when it is valid."""
    return REQUESTED.errors(document)


def outcome_errors(document: Any) -> list[jsonschema.ValidationError]:
    """Every way ``document`` breaks payment-outcome.v1, shallowest first; empty when it is valid."""
    return OUTCOME.errors(document)


def _time(text: str, field: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise InvalidPaymentRequest("is not a real date and time", reason="schema", field=field) from None


def decode_payment_request(key: bytes | None, value: bytes | None, *,
                           max_bytes: int = MAX_REQUEST_BYTES) -> PaymentRequest:
    """One Kafka record of ``payment.requests`` as a validated request, or ``InvalidPaymentRequest`` naming
    the field and the rule."""
    document = read_document(value, max_bytes=max_bytes, refusal=InvalidPaymentRequest)
    errors = request_errors(document)
    if errors:
        field, broken = first_error(errors, whole="(event)")
        raise InvalidPaymentRequest(broken, reason="schema", field=field)
    payment = document["payment"]
    requested_at = _time(payment["requested_at"], "payment.requested_at")
    expires_at = _time(payment["expires_at"], "payment.expires_at") if payment.get("expires_at") else None
    if expires_at is not None and expires_at <= requested_at:
        raise InvalidPaymentRequest("must be later than payment.requested_at", reason="schema",
                                    field="payment.expires_at")
    request = PaymentRequest(
        event_id=document["event_id"].lower(), occurred_at=_time(document["occurred_at"], "occurred_at"),
        source=document["source"], dossier_no=payment["dossier_no"], reference=payment["reference"],
        # The schema's "integer" admits 5.0 (a number with no fraction); it is kept as the whole number.
        amount=int(payment["amount"]), currency=payment.get("currency", "VND"),
        requested_at=requested_at.astimezone(UTC),
        expires_at=None if expires_at is None else expires_at.astimezone(UTC))
    if key != request.dossier_no.encode("utf-8"):
        raise InvalidPaymentRequest("the Kafka message key must equal payment.dossier_no", reason="key_mismatch",
                                    field="(key)")
    return request


# --- the Payment Platform's messages --------------------------------------------------------------------

@dataclass(frozen=True)
class PlatformResult:
    """A result notification, or a QUERY reply (``status`` is its TrangThaiGD). Absent text is ""."""

    message_type: str
    error_code: str
    partner_code: str
    reference: str
    amount: int | None
    currency: str
    transaction_id: str
    bank_code: str
    transaction_time: datetime | None
    details: str
    status: str | None = None


def field_text(message: Mapping[str, Any], name: str, *, limit: int | None = None,
               error: Callable[[str, str], InvalidInput] | None = None) -> str:
    """A platform field as text (as its checksum reads it): text as sent, a whole number in decimal, absent or
    null as "". Raise (``error(field, rule)``) for any other type, a value over its length, a control
    character or lone surrogate, or the checksum's separator."""
    make = error or _message_error
    value = message.get(name)
    bound = limit if limit is not None else FIELD_LIMITS.get(name, 100)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise make(name, "must be text or a whole number")
        if value >= 10 ** bound:  # before turning it into text: a huge number costs time to write out
            raise make(name, f"must be at most {bound} characters")
    try:
        text = signed_text(message, name)
    except ChecksumRefused as refused:
        raise make(name, refused.rule) from None
    if len(text) > bound:
        raise make(name, f"must be at most {bound} characters")
    if any(unicodedata.category(ch) in _UNPRINTABLE for ch in text):
        raise make(name, "must not contain control characters")
    return text


def _message_error(field: str, rule: str) -> InvalidInput:
    return InvalidPaymentMessage(rule, reason="malformed", field=field)


def _reply_error(field: str, rule: str) -> InvalidInput:
    return InvalidPaymentMessage(rule, reason="malformed_reply", field=field)


def _read_fields(message: Mapping[str, Any], make: Callable[[str, str], InvalidInput]) -> dict[str, str]:
    return {name: field_text(message, name, error=make) for name in NOTIFICATION_FIELDS}


def _amount(text: str, make: Callable[[str, str], InvalidInput]) -> int | None:
    if not text:
        return None
    if _DIGITS.fullmatch(text) is None:
        raise make("SoTien", "must be a whole number of dong")
    return int(text)


def _moment(text: str, make: Callable[[str, str], InvalidInput]) -> datetime | None:
    if not text:
        return None
    try:
        return parse_portal_time(text)
    except ValueError:
        raise make("ThoiGianGD", "must be yyyyMMddHHmmss, a real time") from None


def _result(fields: dict[str, str], make: Callable[[str, str], InvalidInput], status: str | None) -> PlatformResult:
    return PlatformResult(
        message_type=fields["LoaiBanTin"], error_code=fields["MaLoi"], partner_code=fields["MaDoiTac"],
        reference=fields["MaThamChieu"], amount=_amount(fields["SoTien"], make), currency=fields["MaTienTe"],
        transaction_id=fields["MaGiaoDich"], bank_code=fields["MaNganHang"],
        transaction_time=_moment(fields["ThoiGianGD"], make), details=fields["ThongTinGiaoDich"], status=status)


def parse_notification(body: Any) -> PlatformResult:
    """A result notification's fields, checked (not its checksum: ``payments.verify`` does that on the body
    as received); ``InvalidPaymentMessage`` (reason "malformed") names the field and the rule."""
    if not isinstance(body, dict):
        raise InvalidPaymentMessage("must be a JSON object", reason="malformed", field="(body)")
    fields = _read_fields(body, _message_error)
    for name in NOTIFICATION_REQUIRED:
        if not fields[name]:
            raise InvalidPaymentMessage("is required", reason="malformed", field=name)
    mac = body.get("MaXacThuc")
    if not isinstance(mac, str) or not mac:
        raise InvalidPaymentMessage("is required (text)", reason="malformed", field="MaXacThuc")
    if len(mac) > MAX_CHECKSUM_CHARS:
        raise InvalidPaymentMessage(f"must be at most {MAX_CHECKSUM_CHARS} characters", reason="malformed",
                                    field="MaXacThuc")
    return _result(fields, _message_error, None)


def parse_query_reply(reply: Mapping[str, Any]) -> PlatformResult:
    """A QUERY reply whose checksum was verified: ``status`` is "1" paid, "3" pending, "4" failed. A paid
    one must name its amount and time. ``InvalidPaymentMessage`` (reason "malformed_reply") otherwise."""
    status = field_text(reply, "TrangThaiGD", error=_reply_error)
    if status not in (QUERY_PAID, QUERY_PENDING, QUERY_FAILED):
        raise InvalidPaymentMessage("must be 1 (paid), 3 (pending) or 4 (failed)", reason="malformed_reply",
                                    field="TrangThaiGD")
    result = _result(_read_fields(reply, _reply_error), _reply_error, status)
    if status == QUERY_PAID:
        if result.amount is None:
            raise InvalidPaymentMessage("is required when TrangThaiGD is 1", reason="malformed_reply",
                                        field="SoTien")
        if result.transaction_time is None:
            raise InvalidPaymentMessage("is required when TrangThaiGD is 1", reason="malformed_reply",
                                        field="ThoiGianGD")
    return result


def clean_reference(value: Any) -> str | None:
    """``value`` when it is a clean reference (what we register, echo and log), else None. A whole number is
    read as its decimal digits: some platforms send a numeric reference as a JSON number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and REFERENCE.fullmatch(value) else None


# --- outcomes -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settlement:
    """How a payment ended, and what the platform said about it."""

    outcome: Outcome
    learnt_via: LearntVia
    transaction_id: str | None = None
    bank_code: str | None = None
    paid_at: datetime | None = None
    error_code: str | None = None
    details: str | None = None


EXPIRED = Settlement("expired", "expiry")


def settlement_of(result: PlatformResult, via: Literal["callback", "query"]) -> Settlement | None:
    """The settlement a notification (MaLoi "00": confirmed, anything else: failed) or a QUERY reply
    (TrangThaiGD 1 / 4) announces; None for a QUERY reply that says pending."""
    if result.status is not None:
        # "Paid" is trusted only with MaLoi "00": a reply that says paid and carries an error code is not
        # one to settle on; the payment stays pending and is asked again.
        if result.status == QUERY_PENDING or (result.status == QUERY_PAID and result.error_code != SUCCESS_CODE):
            return None
        confirmed = result.status == QUERY_PAID
    else:
        confirmed = result.error_code == SUCCESS_CODE
    return Settlement(
        outcome="confirmed" if confirmed else "failed", learnt_via=via,
        transaction_id=result.transaction_id or None, bank_code=result.bank_code or None,
        paid_at=result.transaction_time if confirmed else None,
        error_code=None if confirmed else (result.error_code or None), details=result.details or None)


def outcome_event_type(outcome: Outcome) -> str:
    return f"payment.{outcome}"


def outcome_message_id(reference: str) -> str:
    """The outbox message id and ``message-id`` header of a reference's outcome: one per reference."""
    return f"payment:{reference}"


def outcome_event_id(reference: str) -> str:
    return str(uuid.uuid5(OUTCOME_NAMESPACE, outcome_message_id(reference)))


def outcome_document(*, reference: str, dossier_no: str, amount: int, currency: str, requested_at: datetime,
                     settlement: Settlement, occurred_at: datetime) -> dict[str, Any]:
    """The payment-outcome.v1 document of a payment settled as ``settlement``."""
    return {
        "schema_version": 1,
        "event_id": outcome_event_id(reference),
        "event_type": outcome_event_type(settlement.outcome),
        "occurred_at": rfc3339(occurred_at),
        "source": OUTCOME_SOURCE,
        "payment": {
            "reference": reference,
            "dossier_no": dossier_no,
            "amount": amount,
            "currency": currency,
            "requested_at": rfc3339(requested_at),
            "learnt_via": settlement.learnt_via,
            "transaction_id": settlement.transaction_id,
            "bank_code": settlement.bank_code,
            # The platform's own clock: Asia/Ho_Chi_Minh, said so (+07:00).
            "paid_at": None if settlement.paid_at is None else settlement.paid_at.astimezone(PORTAL_TZ).isoformat(),
            "error_code": settlement.error_code,
            "details": settlement.details,
        },
    }


__all__ = [
    "EXPIRED",
    "FIELD_LIMITS",
    "MAX_REQUEST_BYTES",
    "NOTIFICATION_REQUIRED",
    "OUTCOME_NAMESPACE",
    "OUTCOME_SOURCE",
    "PAYMENT_OUTCOME_SCHEMA",
    "PAYMENT_REQUESTED_SCHEMA",
    "QUERY_FAILED",
    "QUERY_PAID",
    "QUERY_PENDING",
    "REFERENCE",
    "REQUESTED_EVENT_TYPE",
    "SUCCESS_CODE",
    "InvalidPaymentMessage",
    "InvalidPaymentRequest",
    "LearntVia",
    "Outcome",
    "PaymentRequest",
    "PlatformResult",
    "Settlement",
    "clean_reference",
    "decode_payment_request",
    "field_text",
    "outcome_document",
    "outcome_errors",
    "outcome_event_id",
    "outcome_event_type",
    "outcome_message_id",
    "parse_notification",
    "parse_query_reply",
    "request_errors",
    "settlement_of",
]
