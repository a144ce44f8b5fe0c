"""The simulated Payment Platform (PP, PORTAL.md §4 and §6): payments, QUERY replies, result notifications.

No HTTP here. A test registers payments (``PaymentSpec``) with the outcome the PP will report; the
agency's ``QUERY`` is checked (fields, partner code, ``MaXacThuc``) and answered with the notification's
fields plus ``TrangThaiGD`` (``"1"`` paid, ``"3"`` pending, ``"4"`` failed), signed over
``QUERY_REPLY_FIELDS``. A payment can answer "pending" to its first ``pending_queries`` queries before its
outcome shows; the outcome ``pending`` stays pending for ever. ``notification`` builds the result message the
PP posts to the agency's callback URL, with a valid or a deliberately wrong checksum.

Every refused QUERY is answered, not raised: ``MaLoi`` ``"99"`` with ``MoTaLoi`` naming the problem, signed
over ``REPLY_FIELDS``. Times are ``portal_time`` (24-hour, Asia/Ho_Chi_Minh) of the injectable wall clock.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connector.national_time import PORTAL_TZ, parse_portal_time, portal_time
from connector.payments.checksum import (
    NOTIFICATION_FIELDS,
    QUERY_FIELDS,
    QUERY_REPLY_FIELDS,
    REPLY_FIELDS,
    ChecksumRefused,
    checksum,
    signed,
    verify,
)

OK_CODE = "00"
OTHER_ERROR = "99"
DEFAULT_FAILURE_CODE = "12"
NOT_FOUND = "Không tìm thấy giao dịch"
QUERY = "QUERY"
CURRENCY = "VND"
# TrangThaiGD of a QUERY reply
PAID, PENDING, FAILED = "1", "3", "4"

Outcome = Literal["paid", "failed", "pending"]


class PaymentSpec(BaseModel):
    """A payment the PP knows, as ``POST /_sim/payments`` gives it. Its text fields go into checksums, so
    none may hold ``|`` (see ``connector.payments.checksum``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    MaThamChieu: str = Field(min_length=1, max_length=200, pattern=r"^[^|]+$")
    SoTien: int = Field(ge=0, strict=True)
    outcome: Outcome
    pending_queries: int = Field(0, ge=0)
    MaGiaoDich: str | None = Field(None, pattern=r"^[^|]*$")
    MaNganHang: str = Field("VCB", pattern=r"^[^|]*$")
    MaLoi: str = Field(DEFAULT_FAILURE_CODE, pattern=r"^[^|]+$")  # the failure code of a failed payment
    ThongTinGiaoDich: str = Field("Thanh toán phí, lệ phí hồ sơ trực tuyến", pattern=r"^[^|]*$")


class CallbackSpec(BaseModel):
    """The body of ``POST /_sim/payments/{ref}/callback``: where to post the notification, and how to spoil it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://\S+$")
    checksum: Literal["valid", "wrong"] = "valid"
    MaLoi: str | None = None  # default: "00" for a paid payment, else its failure code
    SoTien: int | str | None = None  # a different amount than the payment's
    MaDoiTac: str | None = None  # another partner code
    LoaiBanTin: str = "NOTIFY"


@dataclass
class Payment:
    spec: PaymentSpec
    transaction_no: str
    pending_left: int
    queries: int = 0
    callbacks: int = 0

    def view(self) -> dict[str, Any]:
        return {"outcome": self.spec.outcome, "SoTien": self.spec.SoTien, "queries": self.queries,
                "callbacks": self.callbacks, "MaGiaoDich": self.transaction_no}


class PaymentPlatform:
    def __init__(self, partner_code: str, secret: str, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.partner_code = partner_code
        self._secret = secret
        self._wall_clock = wall_clock
        self.payments: dict[str, Payment] = {}
        self._issued = 0

    def register(self, specs: list[PaymentSpec]) -> int:
        """Add or replace payments. A replaced one keeps its counts; its ``pending_queries`` start over."""
        for spec in specs:
            known = self.payments.get(spec.MaThamChieu)
            if known is None:
                self._issued += 1
                transaction_no = spec.MaGiaoDich or f"PP{self._issued:010d}"
                self.payments[spec.MaThamChieu] = Payment(spec, transaction_no, spec.pending_queries)
            else:
                known.spec = spec
                known.transaction_no = spec.MaGiaoDich or known.transaction_no
                known.pending_left = spec.pending_queries
        return len(specs)

    def query(self, message: Any) -> dict[str, Any]:
        """The PP's answer to a ``QUERY`` message (any decoded JSON value)."""
        if not isinstance(message, dict):
            return self._refusal({}, "the message must be a JSON object")
        for name in (*QUERY_FIELDS, "MaXacThuc"):
            value = message.get(name)
            if not isinstance(value, str) or not value:
                return self._refusal(message, f"{name}: required")
        if message["LoaiBanTin"] != QUERY:
            return self._refusal(message, f"LoaiBanTin: must be {QUERY}")
        try:
            parse_portal_time(message["ThoiGianGD"])
        except ValueError:
            return self._refusal(message, "ThoiGianGD: must be yyyyMMddHHmmss")
        if not hmac.compare_digest(message["MaDoiTac"].encode("utf-8"), self.partner_code.encode("utf-8")):
            return self._refusal(message, "MaDoiTac: unknown partner")
        try:
            verify(message, QUERY_FIELDS, self._secret)
        except ChecksumRefused as exc:
            return self._refusal(message, str(exc))
        payment = self.payments.get(message["MaThamChieu"])
        if payment is None:
            return self._refusal(message, NOT_FOUND)
        payment.queries += 1
        if payment.pending_left > 0:
            payment.pending_left -= 1
            state = PENDING
        else:
            state = {"paid": PAID, "pending": PENDING, "failed": FAILED}[payment.spec.outcome]
        code = payment.spec.MaLoi if state == FAILED else OK_CODE
        reply = {**self._result(payment, loai=QUERY, code=code), "TrangThaiGD": state}
        return signed(reply, QUERY_REPLY_FIELDS, self._secret)

    def notification(self, reference: str, spec: CallbackSpec) -> dict[str, Any] | None:
        """The result notification the PP posts for ``reference`` (None when unknown); counted as sent.

        Raises ``ChecksumRefused`` when an override cannot go into a checksum (it holds ``|``).
        """
        payment = self.payments.get(reference)
        if payment is None:
            return None
        default_code = OK_CODE if payment.spec.outcome == "paid" else payment.spec.MaLoi
        message = self._result(payment, loai=spec.LoaiBanTin, code=spec.MaLoi or default_code)
        if spec.SoTien is not None:
            message["SoTien"] = str(spec.SoTien)
        if spec.MaDoiTac is not None:
            message["MaDoiTac"] = spec.MaDoiTac
        secret = self._secret if spec.checksum == "valid" else self._secret + "-but-not-quite"
        notification = {**message, "MaXacThuc": checksum(message, NOTIFICATION_FIELDS, secret)}
        payment.callbacks += 1
        return notification

    def views(self) -> dict[str, dict[str, Any]]:
        return {reference: payment.view() for reference, payment in self.payments.items()}

    def reset(self) -> None:
        self.payments.clear()
        self._issued = 0

    def now(self) -> str:
        return portal_time(datetime.fromtimestamp(self._wall_clock(), PORTAL_TZ))

    def _result(self, payment: Payment, *, loai: str, code: str) -> dict[str, Any]:
        spec = payment.spec
        return {
            "LoaiBanTin": loai,
            "MaLoi": code,
            "MaDoiTac": self.partner_code,
            "MaThamChieu": spec.MaThamChieu,
            "SoTien": str(spec.SoTien),
            "MaTienTe": CURRENCY,
            "MaGiaoDich": payment.transaction_no,
            "MaNganHang": spec.MaNganHang,
            "ThoiGianGD": self.now(),
            "ThongTinGiaoDich": spec.ThongTinGiaoDich,
        }

    def _refusal(self, message: dict[str, Any], reason: str) -> dict[str, Any]:
        """``MaLoi`` 99: the reply fields, echoing what can be echoed, signed over ``REPLY_FIELDS``."""
        reply: dict[str, Any] = {
            "LoaiBanTin": QUERY,
            "MaLoi": OTHER_ERROR,
            "MoTaLoi": reason,
            "MaDoiTac": _echo(message.get("MaDoiTac")),
            "MaThamChieu": _echo(message.get("MaThamChieu")),
            "ThoiGianGD": self.now(),
        }
        return signed(reply, REPLY_FIELDS, self._secret)


def _echo(value: Any) -> str:
    """A field of a refused message, fit to go back into a checksum ("" when it is not)."""
    return value if isinstance(value, str) and "|" not in value and len(value) <= 200 else ""


__all__ = [
    "DEFAULT_FAILURE_CODE",
    "FAILED",
    "NOT_FOUND",
    "PAID",
    "PENDING",
    "CallbackSpec",
    "Outcome",
    "Payment",
    "PaymentPlatform",
    "PaymentSpec",
]
