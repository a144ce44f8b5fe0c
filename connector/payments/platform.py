"""The national Payment Platform client: ``QUERY`` a transaction's state (JSON over HTTP POST).

The request is signed and the reply's checksum verified (``payments``); anything else the reply holds is
validated by the caller. Errors are values of ``connector.portal.errors``: the network and HTTP failures
are retryable, a reply that fails its checksum or is malformed is ``PlatformRefused``.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from connector.config import PaymentSettings
from connector.errors import ConfigError, PermanentError
from connector.national_time import portal_time
from connector.payments.checksum import QUERY_FIELDS, QUERY_REPLY_FIELDS, REPLY_FIELDS, ChecksumRefused, signed, verify
from connector.payments.messages import clean_reference
from connector.portal.client import post_bounded
from connector.portal.errors import PortalUnavailable
from connector.untrusted import BodyTooLarge, UnreadableJson, UnsafeText, parse_json

MAX_PLATFORM_REPLY_BYTES = 64 * 1024
QUERY = "QUERY"


class PlatformRefused(PermanentError):
    """The Payment Platform's reply cannot be trusted or used (bad checksum, wrong shape, an error code)."""


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}

class PaymentPlatformClient:
    def __init__(self, settings: PaymentSettings, *, http: aiohttp.ClientSession | None = None) -> None:
        self._settings = settings
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)

    async def __aenter__(self) -> PaymentPlatformClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def query(self, reference: str, now: datetime) -> dict[str, Any]:
        """The platform's verified answer about ``reference`` (it holds ``TrangThaiGD``)."""
        try:
            secret = self._settings.secret_value()
        except ConfigError as exc:
            raise PlatformRefused(str(exc), reason="secret_unreadable") from exc
        request = signed({"LoaiBanTin": QUERY, "PhienBan": self._settings.message_version,
                          "MaDoiTac": self._settings.partner_code, "MaThamChieu": reference,
                          "ThoiGianGD": portal_time(now)}, QUERY_FIELDS, secret)
        reply = await self._post(request)
        # An answer about the transaction carries its state and is signed over the notification's fields and
        # that state; a refusal ("99": unknown reference, our checksum refused) carries none, signed like a reply.
        answered = "TrangThaiGD" in reply
        try:
            verify(reply, QUERY_REPLY_FIELDS if answered else REPLY_FIELDS, secret)
        except ChecksumRefused as exc:
            raise PlatformRefused(f"QUERY reply: {exc}", reason="reply_checksum", field=exc.field) from None
        if not answered:
            code = reply.get("MaLoi")
            shown = code if isinstance(code, str) and code.isalnum() and len(code) <= 8 else "?"
            raise PlatformRefused(f"QUERY refused by the platform (MaLoi {shown})", reason=f"platform_refused_{shown}",
                                  field="MaLoi")
        if clean_reference(reply.get("MaThamChieu")) != reference:
            raise PlatformRefused("QUERY reply names another reference", reason="reply_mismatch",
                                  field="MaThamChieu")
        return reply

    async def _post(self, message: dict[str, Any]) -> dict[str, Any]:
        url = self._settings.platform_url + self._settings.query_path
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            # ASCII-escaped JSON reads the same whatever charset the platform assumes for the body.
            status, _, body = await post_bounded(
                self._http, url, json.dumps(message).encode("ascii"), headers=_JSON, limits=self._timeout,
                max_bytes=MAX_PLATFORM_REPLY_BYTES, far_side="Payment Platform: ")
        except BodyTooLarge:
            raise PlatformRefused("reply too large", reason="reply_too_large") from None
        if status >= 500 or status == 429:
            raise PortalUnavailable(f"Payment Platform: HTTP {status}", reason=f"http_{status}")
        if status != 200:
            raise PlatformRefused(f"HTTP {status}", reason=f"http_{status}")
        try:
            reply = parse_json(body)
        except (UnreadableJson, UnsafeText) as exc:
            raise PlatformRefused(f"reply is not strict JSON ({exc})", reason="malformed_reply") from None
        if not isinstance(reply, dict):
            raise PlatformRefused("reply is not a JSON object", reason="malformed_reply")
        return reply


__all__ = ["MAX_PLATFORM_REPLY_BYTES", "PaymentPlatformClient", "PlatformRefused"]
