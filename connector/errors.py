"""Errors as values with a class.

Every failure the service meets is one of three kinds, and the kind decides what happens next:

- ``invalid_input``: the input itself is wrong (bad JSON, schema violation, unmapped code). Retrying
  cannot help; the event is dead-lettered with the field and the rule named.
- ``permanent``: the far side refused for a reason that will not change by waiting.
- ``retryable``: network trouble, timeouts, throttling, 5xx, an expired session.

``reason`` is a short stable token (metrics label, DLQ header); the message is for humans and must
never carry personal data or secrets.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorKind = Literal["invalid_input", "permanent", "retryable"]


class SyncError(Exception):
    kind: ClassVar[ErrorKind] = "permanent"

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field
        # How many times the failing call was tried; the retry loop sets it.
        self.attempts = 1

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(SyncError):
    kind: ClassVar[ErrorKind] = "invalid_input"


class PermanentError(SyncError):
    kind: ClassVar[ErrorKind] = "permanent"


class RetryableError(SyncError):
    kind: ClassVar[ErrorKind] = "retryable"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, field=field)
        self.retry_after = retry_after
