"""What an adapter answer means: success, or one of the error kinds of ``connector.errors``.

``classify_reply`` is pure (status, headers, body in; parsed reply out or an exception) so every rule
below is testable without a network. The rules, in order:

1. a body over ``MAX_REPLY_BYTES`` is refused unread (hostile or broken upstream): ``PortalUnavailable``
   (``reply_too_large``);
2. HTTP 401 means the session is gone; 408/425/429/5xx mean "try later", honouring ``Retry-After``;
3. a strict JSON object (``connector.untrusted.parse_json``: no duplicate key, NaN, lone surrogate, NUL, deep
   nesting) with ``error_code`` decides by that code. A code is an integer or a short text, compared as
   text with ASCII spaces, tabs and line ends trimmed (adapters send ``" -3"``); success is the integer 0
   (``-0`` is that integer too) or the text "0" / "00", under a 2xx status, nothing else. A float (``0.0``,
   ``-0.0``, ``1e-400`` which reads as 0), a boolean, null, a list or an object is no code: ``PortalRejected``
   (``bad_error_code``) for every record; then expired session, "already exists", and any other code is
   the refusal of the record (``PortalRejected`` with its ``error_code``);
4. without one: a non-2xx status is refused (``PortalRejected``, ``http_<status>``, for every record: our
   endpoint or rights); under a 2xx, a ``Content-Type: text/plain`` body that is, whole and trimmed, the
   phrase "thành công" is success (some provincial proxies answer that way; case and Unicode form aside);
   anything else (an HTML error page under a 200, the phrase inside longer text, JSON that is not an object
   or not strict) is ``PortalUnavailable`` (``malformed_reply``).

Which refusals are retried: ``PortalUnavailable`` (a malformed reply under a 2xx is most likely a broken proxy,
and the next try may pass it) and ``SessionExpired`` are retryable; a refusal without a record's code
(``bad_error_code``, ``http_<status>``) affects every record, so the pipeline waits it out and dead-letters
nothing; only a refusal carrying the adapter's own code fails that one record. A refusal that quotes the
body keeps its first ``QUOTED_CHARS`` characters and is marked ``quotes_remote_text``: the body may quote a
citizen's data, so it goes to the failure table and the DLQ headers, not to log lines.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from connector.errors import PermanentError, RetryableError, SyncError
from connector.untrusted import UnreadableJson, UnsafeText, parse_json

MAX_REPLY_BYTES = 8 * 1024 * 1024
MAX_MESSAGE_CHARS = 500
QUOTED_CHARS = 200  # of a reply's body, in a refusal that quotes it
MAX_CODE_CHARS = 32

SUCCESS_CODES = frozenset({"0", "00"})
ALREADY_EXISTS_CODES = frozenset({"3", "-3"})
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_ALREADY_EXISTS_TEXT = unicodedata.normalize("NFC", "đã tồn tại")
_SUCCESS_TEXT = unicodedata.normalize("NFC", "thành công")


class PortalUnavailable(RetryableError):
    """No usable answer: network trouble, timeout, throttling, 5xx, a malformed or oversized reply."""


class BreakerOpen(RetryableError):
    """The circuit breaker holds calls back while the adapter is failing."""


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


# Refusals whose text is a SOAP fault's own text, never the start of the reply's body.
_FAULT_REASONS = frozenset({"soap_fault_client", "soap_fault_server", "soap_fault_unknown"})


def login_session(classify: Callable[[], Mapping[str, Any]]) -> str:
    """The session token of a login reply, read by ``classify`` (the transport's reading of a reply, without
    expired-session codes). A refusal is ``LoginFailed`` (logging in again would not help) that never quotes the
    reply's body, which may hold a token: the far side's own message when it gave one, else only the kind of
    refusal; raised outside the handler, so no chained error quotes it either."""
    try:
        reply = classify()
    except (SessionExpired, PermanentError) as error:
        refused: LoginFailed | None = _login_refused(error)
    else:
        refused = None
    if refused is not None:
        raise refused
    token = reply.get("session")
    if not isinstance(token, str) or not token:
        raise PortalUnavailable("login reply carries no session", reason="malformed_reply")
    return token


def _login_refused(error: SyncError) -> LoginFailed:
    own = error.reason in _FAULT_REASONS or (isinstance(error, PortalRejected) and error.error_code is not None)
    refused = LoginFailed(f"login refused: {error.message}" if own else f"login refused: {error.reason}")
    refused.quotes_remote_text = own
    return refused


def classify_reply(
    status: int, headers: Mapping[str, str], body: bytes, *, expired_codes: Collection[str],
    max_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """Return the parsed reply when it means success; raise the matching error otherwise."""
    if len(body) > max_bytes:
        raise PortalUnavailable(f"reply larger than {max_bytes} bytes", reason="reply_too_large")
    error = status_error(status, headers)
    if error is not None:
        raise error

    reply = _json_or_none(body)
    if not isinstance(reply, dict) or "error_code" not in reply:
        return _classify_without_code(status, headers, body, reply)

    return classify_coded(status, reply, expired_codes=expired_codes, quoted=quoted_body(body))


def status_error(status: int, headers: Mapping[str, str]) -> SyncError | None:
    """Rule 2: what the HTTP status alone says (401: the session is gone; 408/425/429/5xx: try later, after
    ``Retry-After`` when given); None when the body must be read."""
    if status == 401:
        return SessionExpired()
    if status in RETRYABLE_STATUSES or status >= 500:
        return PortalUnavailable(f"HTTP {status}", reason=f"http_{status}",
                                 retry_after=parse_retry_after(header_value(headers, "Retry-After")))
    return None


def classify_coded(
    status: int, reply: dict[str, Any], *, expired_codes: Collection[str], quoted: str,
) -> dict[str, Any]:
    """Rule 3, for a reply of either transport that carries ``error_code`` (``quoted``: the start of the body,
    for a refusal that cannot say more)."""
    code = normalise_code(reply["error_code"])
    if code is None:
        raise quoting(PortalRejected(f"error_code is not a code (an integer or a short text): {quoted}",
                                      reason="bad_error_code"))
    message = message_text(reply.get("message"))
    if code in SUCCESS_CODES:
        if not 200 <= status < 300:
            raise quoting(PortalRejected(f"HTTP {status} with error_code {code}: {quoted}",
                                          reason=f"http_{status}"))
        return reply
    raise refusal(code, message, expired_codes=expired_codes)


def refusal(code: str, message: str, *, expired_codes: Collection[str]) -> SyncError:
    """What a non-success code means: an expired session, "already exists", or the record's own refusal."""
    if code in expired_codes:
        return SessionExpired(f"session rejected (error_code {code})")
    if code in ALREADY_EXISTS_CODES and _ALREADY_EXISTS_TEXT in _folded(message):
        return AlreadyExists(message, error_code=code)
    return PortalRejected(message or f"error_code {code}", error_code=code)


def _classify_without_code(status: int, headers: Mapping[str, str], body: bytes, parsed: Any) -> dict[str, Any]:
    if not 200 <= status < 300:
        raise quoting(PortalRejected(f"HTTP {status}: {quoted_body(body)}", reason=f"http_{status}"))
    content_type = (header_value(headers, "Content-Type") or "").split(";")[0].strip().lower()
    # Plain text that says "done", and nothing else, is how some provincial proxies answer.
    if content_type == "text/plain" and parsed is None:
        text = body.decode("utf-8", errors="replace")
        if is_success_text(text):
            return {"error_code": "0", "message": message_text(text.strip())}
    raise quoting(PortalUnavailable(f"reply is not a JSON object with error_code: {quoted_body(body)}",
                                     reason="malformed_reply"))


def is_success_text(text: str) -> bool:
    """The whole text, trimmed, is the success phrase (case and Unicode form aside)."""
    return _folded(text.strip()) == _SUCCESS_TEXT


def normalise_code(value: Any) -> str | None:
    """An ``error_code`` as the text it is compared as: an integer, or a text trimmed of ASCII spaces, tabs and
    line ends ("0", 0, "00", " -3"); None for anything else. A float is no code (``1e-400`` and ``-0.0`` would
    read as 0), nor a boolean (``False == 0``), null, a list, an object, or a text that is empty or long."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = value.strip(" \t\r\n") if isinstance(value, str) else str(value)
    return text if 0 < len(text) <= MAX_CODE_CHARS else None


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
        return parse_json(body)
    except (UnreadableJson, UnsafeText):
        return None


def quoted_body(body: bytes) -> str:
    """The start of a body, for a refusal: at most ``QUOTED_CHARS`` characters, escaped (``repr``)."""
    return repr(body[:QUOTED_CHARS * 4].decode("utf-8", errors="replace")[:QUOTED_CHARS])


ErrorT = TypeVar("ErrorT", bound=SyncError)


def quoting(error: ErrorT) -> ErrorT:
    error.quotes_remote_text = True  # the body may quote a citizen's data: failure table and DLQ, not logs
    return error


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp passes a case-insensitive multidict; plain dicts (tests, other callers) are not.
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def message_text(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text[:MAX_MESSAGE_CHARS]


def _folded(text: str) -> str:
    # NFC both before and after: casefold can decompose a few letters again.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


__all__ = [
    "MAX_REPLY_BYTES",
    "QUOTED_CHARS",
    "AlreadyExists",
    "BreakerOpen",
    "LoginFailed",
    "PortalRejected",
    "PortalUnavailable",
    "SessionExpired",
    "classify_coded",
    "classify_reply",
    "header_value",
    "is_success_text",
    "login_session",
    "message_text",
    "normalise_code",
    "parse_retry_after",
    "quoted_body",
    "quoting",
    "refusal",
    "status_error",
]
