"""The Payment Platform's messages: checksums (``MaXacThuc``). Pure: values in, values out (its times are
``connector.national_time``).

``MaXacThuc`` is the lower-case hex SHA-256 of the message's fields joined by ``|``, followed by ``|`` and
the shared secret (PORTAL.md §4). Verification compares in constant time. No field may itself contain
``|``: otherwise one message's characters could be split into fields another way under the same
checksum (a reference and an amount shifted into each other), so such a message is refused outright.
Times are ``yyyyMMddHHmmss`` on the 24-hour clock in Asia/Ho_Chi_Minh (one implementation used a 12-hour
clock, and every afternoon checksum failed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

from connector.errors import InvalidInput

# The fields each checksum covers, in order.
NOTIFICATION_FIELDS = ("LoaiBanTin", "MaLoi", "MaDoiTac", "MaThamChieu", "SoTien", "MaTienTe", "MaGiaoDich",
                       "MaNganHang", "ThoiGianGD", "ThongTinGiaoDich")
QUERY_FIELDS = ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD")
REPLY_FIELDS = ("MaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD")
# A QUERY reply carries the notification's fields plus TrangThaiGD, and its checksum covers them all, the
# status last: a status the checksum does not cover could be changed on the way and would still be trusted.
QUERY_REPLY_FIELDS = (*NOTIFICATION_FIELDS, "TrangThaiGD")

_SEPARATOR = "|"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class ChecksumRefused(InvalidInput):
    """A message whose checksum cannot be computed or does not match; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, reason="bad_checksum", field=field)
        self.rule = message


def signed_text(message: Mapping[str, Any], name: str) -> str:
    """A field as the checksum reads it: text as sent, a whole number in decimal, absent or null as "". The one
    reading of a platform field (``messages.field_text`` adds the length and character rules to it)."""
    value = message.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ChecksumRefused("must be text or a whole number", field=name)
    text = str(value)
    if _SEPARATOR in text:
        raise ChecksumRefused("must not contain '|', the checksum's separator", field=name)
    return text


def checksum(message: Mapping[str, Any], fields: Sequence[str], secret: str) -> str:
    """``MaXacThuc`` of ``message`` over ``fields``."""
    joined = _SEPARATOR.join([*(signed_text(message, name) for name in fields), secret])
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def verify(message: Mapping[str, Any], fields: Sequence[str], secret: str) -> None:
    """Raise ``ChecksumRefused`` unless ``message["MaXacThuc"]`` is its checksum (compared in constant time;
    hex in either case)."""
    given = message.get("MaXacThuc")
    if not isinstance(given, str) or _HEX64.fullmatch(given) is None:
        raise ChecksumRefused("must be 64 hexadecimal digits (SHA-256)", field="MaXacThuc")
    expected = checksum(message, fields, secret)
    if not hmac.compare_digest(given.lower().encode("ascii"), expected.encode("ascii")):
        raise ChecksumRefused("does not match the message and the shared secret", field="MaXacThuc")


def signed(message: Mapping[str, Any], fields: Sequence[str], secret: str) -> dict[str, Any]:
    """``message`` with its ``MaXacThuc``."""
    return {**message, "MaXacThuc": checksum(message, fields, secret)}


