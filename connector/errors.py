"""Errors as values with a class.

Every failure the service meets is one of three kinds, and the kind decides what happens next:

- ``invalid_input``: the input itself is wrong (bad JSON, schema violation, unmapped code). Retrying
  cannot help; the event is dead-lettered with the field and the rule named.
- ``permanent``: the far side refused for a reason that will not change by waiting.
- ``retryable``: network trouble, timeouts, throttling, 5xx, an expired session.

Orthogonal to the kind is the **scope**: does the error belong to this one record (dead-letter it and move
on), or to the service as a whole (the adapter is down, our credentials or endpoint are wrong, the state
store is unreachable)? A service-wide error must never drain the backlog into the DLQ: the record stays
unfinished and uncommitted, and the pipeline waits and tries it again.

``reason`` is a short stable token (metrics label, DLQ header); the message is for humans and must
never carry personal data or secrets. ``quotes_remote_text`` marks messages written by the far side (they
may quote a citizen's data): those go to the DLQ headers, not to log lines.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import ClassVar, Literal

ErrorKind = Literal["invalid_input", "permanent", "retryable"]


class SyncError(Exception):
    kind: ClassVar[ErrorKind] = "permanent"
    quotes_remote_text: bool = False  # class default; a wrapper of another error inherits its value
    # Class default; an instance may say otherwise (an HTTP 404 is about our endpoint, not the record).
    affects_every_record: bool = False

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field
        # How many times the failing call was tried; the retry loop sets it.
        self.attempts = 1

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    @property
    def error_class(self) -> str:
        """The class a failure row and the DLQ headers name."""
        return type(self).__name__


class InvalidInput(SyncError):
    kind: ClassVar[ErrorKind] = "invalid_input"


class PermanentError(SyncError):
    kind: ClassVar[ErrorKind] = "permanent"


class RetryableError(SyncError):
    kind: ClassVar[ErrorKind] = "retryable"
    affects_every_record = True

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


class DeadlineExceeded(SyncError):
    """A record kept meeting a retryable error (a 5xx, a timeout) while the adapter answered other calls,
    until its deadline: the record itself is the trouble. It becomes a recorded failure; the last error
    and the attempts made travel with it."""

    kind: ClassVar[ErrorKind] = "retryable"

    def __init__(self, last: SyncError, *, attempts: int, seconds: float) -> None:
        super().__init__(
            f"gave up after {attempts} attempts over {seconds:.0f} s while the adapter answered other calls; "
            f"last error ({last.reason}): {last}",
            reason="deadline_exceeded",
            field=last.field,
        )
        self.last = last
        self.attempts = attempts
        self.quotes_remote_text = last.quotes_remote_text


class InternalError(SyncError):
    """An unexpected exception while one record was handled: a bug, or content no rule foresaw. The record
    becomes a recorded failure (reason ``internal_error``, the exception's own class as the failure's class);
    the daemon goes on with the next. Replayable once the cause is fixed. The message says where, not what:
    the exception's own text may quote a value of the record."""

    kind: ClassVar[ErrorKind] = "permanent"

    def __init__(self, exc: BaseException, *, stage: str) -> None:
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
        where = f", in {frames[-1].name} ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        super().__init__(f"unexpected {type(exc).__name__} while {stage}{where}; a bug: please report it",
                         reason="internal_error")
        self._cause_class = type(exc).__name__

    @property
    def error_class(self) -> str:
        return self._cause_class


# Not a record's: what stops start-up or an operator's command before any record is handled.
class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and the rule."""
