"""What an adapter answer means: success, or one of the error kinds of ``connector.errors``.

``classify_reply`` is pure (status, headers, body in; parsed reply out or an exception) so every rule
below is testable without a network. The rules, in order:

1. a body over ``MAX_REPLY_BYTES`` is refused unread (hostile or broken upstream);
2. HTTP 401 means the session is gone; 408/425/429/5xx mean "try later", honouring ``Retry-After``;
3. a JSON object with ``error_code`` decides by that code (success, expired session, "already exists",
   anything else refused);
4. without one: a non-2xx status is refused, plain text saying "thành công" is success (some
   provincial proxies answer that way), anything else is a malformed reply and worth retrying.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from connector.errors import PermanentError, RetryableError

MAX_REPLY_BYTES = 8 * 1024 * 1024
MAX_MESSAGE_CHARS = 500

SUCCESS_CODES = frozenset({"0", "00"})
ALREADY_EXISTS_CODES = frozenset({"3", "-3"})
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_ALREADY_EXISTS_TEXT = unicodedata.normalize("NFC", "đã tồn tại")
_SUCCESS_TEXT = unicodedata.normalize("NFC", "thành công")
# "không thành công" / "chưa thành công" mean "not successful": they contain the success phrase.
_NEGATED_SUCCESS_TEXTS = tuple(
    unicodedata.normalize("NFC", text) for text in ("không thành công", "chưa thành công")
)


class PortalUnavailable(RetryableError):
    """No usable answer: network trouble, timeout, throttling, 5xx, a malformed or oversized reply."""


class SessionExpired(RetryableError):
    """The adapter no longer accepts our session token; logging in again may help."""

    def __init__(
        self, message: str = "session expired or invalid", *, reason: str = "session_expired"
    ) -> None:
        super().__init__(message, reason=reason)


class PortalRejected(PermanentError):
    """The adapter understood the call and refused it; ``error_code`` is its code when it sent one.

    Without a code (a bare HTTP 403/404/405…) the refusal is about our endpoint or rights, not the record:
    every record would meet it, so it must not dead-letter the backlog."""

    quotes_remote_text = True

    def __init__(
        self, message: str, *, reason: str = "portal_rejected", error_code: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.error_code = error_code
        self.affects_every_record = error_code is None


class AlreadyExists(PermanentError):
    """A create hit a dossier the portal already has: the caller should re-send it as an update."""

    quotes_remote_text = True

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message, reason="already_exists")
        self.error_code = error_code


class LoginFailed(PermanentError):
    """The adapter refused our credentials (or they cannot be read): nothing can be pushed until fixed."""

    affects_every_record = True

    def __init__(self, message: str, *, reason: str = "login_failed") -> None:
        super().__init__(message, reason=reason)


def classify_reply(
    status: int, headers: Mapping[str, str], body: bytes, *, expired_codes: Collection[str],
    max_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """Return the parsed reply when it means success; raise the matching error otherwise."""
    if len(body) > max_bytes:
        raise PortalUnavailable(f"reply larger than {max_bytes} bytes", reason="reply_too_large")
    if status == 401:
        raise SessionExpired()
    if status in RETRYABLE_STATUSES or status >= 500:
        raise PortalUnavailable(
            f"HTTP {status}",
            reason=f"http_{status}",
            retry_after=parse_retry_after(_header(headers, "Retry-After")),
        )

    reply = _json_or_none(body)
    if not isinstance(reply, dict) or "error_code" not in reply:
        return _classify_without_code(status, body, reply)

    code = normalise_code(reply["error_code"])
    message = _message(reply.get("message"))
    if code in SUCCESS_CODES:
        return reply
    if code in expired_codes:
        raise SessionExpired(f"session rejected (error_code {code})")
    if code in ALREADY_EXISTS_CODES and _ALREADY_EXISTS_TEXT in _folded(message):
        raise AlreadyExists(message, error_code=code)
    raise PortalRejected(message or f"error_code {code}", error_code=code)


def _classify_without_code(status: int, body: bytes, parsed: Any) -> dict[str, Any]:
    if not 200 <= status < 300:
        raise PortalRejected(f"HTTP {status}", reason=f"http_{status}")
    # Plain text (or a bare JSON string) is how some provincial proxies say "done".
    if parsed is None or isinstance(parsed, str):
        text = body.decode("utf-8", errors="replace")
        if is_success_text(text):
            return {"error_code": "0", "message": _message(text)}
    raise PortalUnavailable("reply is not a JSON object with error_code", reason="malformed_reply")


def is_success_text(text: str) -> bool:
    folded = _folded(text)
    return _SUCCESS_TEXT in folded and not any(neg in folded for neg in _NEGATED_SUCCESS_TEXTS)


def normalise_code(value: Any) -> str:
    """The adapters send codes as int or string ("0", 0, "00", " -3"); compare them as trimmed text."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None when absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    # JSONDecodeError and UnicodeDecodeError are both ValueErrors; absurd nesting is a RecursionError.
    except (ValueError, RecursionError):
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp passes a case-insensitive multidict; plain dicts (tests, other callers) are not.
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _message(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text[:MAX_MESSAGE_CHARS]


def _folded(text: str) -> str:
    # NFC both before and after: casefold can decompose a few letters again.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


__all__ = [
    "MAX_REPLY_BYTES",
    "AlreadyExists",
    "LoginFailed",
    "PortalRejected",
    "PortalUnavailable",
    "SessionExpired",
    "classify_reply",
    "is_success_text",
    "normalise_code",
    "parse_retry_after",
]
