"""The retry policy for adapter calls: exponential backoff with full jitter, a cap, and Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from connector.config import RetrySettings
from connector.errors import RetryableError, SyncError

T = TypeVar("T")
log = structlog.get_logger(__name__)


def _retry_after(state: RetryCallState) -> float | None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    return error.retry_after if isinstance(error, RetryableError) else None


class _AskedToWaitLonger(stop_base):
    """Stop retrying here when the server asks for a longer pause than our cap: the pipeline then
    waits the whole time asked, between polls, instead of calling again too early."""

    def __init__(self, cap: float) -> None:
        self._cap = cap

    def __call__(self, state: RetryCallState) -> bool:
        asked = _retry_after(state)
        return asked is not None and asked > self._cap


class _WaitRetryAfterOrJitter:
    """Honour the server's Retry-After when it gave one; otherwise full-jitter exponential, capped."""

    def __init__(self, policy: RetrySettings) -> None:
        self._cap = policy.max_backoff_seconds
        self._jitter = wait_random_exponential(multiplier=policy.initial_backoff_seconds, max=self._cap)

    def __call__(self, state: RetryCallState) -> float:
        asked = _retry_after(state)
        if asked is not None:
            return min(max(asked, 0.0), self._cap)
        return float(self._jitter(state))


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    service: str,
    policy: RetrySettings,
    on_retry: Callable[[str, str], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``call``; retry retryable errors up to the policy's attempts. The error that ends it carries
    ``attempts``; permanent and invalid-input errors are raised at once."""
    attempt = 0

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = error.reason if isinstance(error, SyncError) else type(error).__name__
        if on_retry is not None:
            on_retry(service, reason)
        log.info("portal call will be retried", service=service, reason=reason, attempt=state.attempt_number,
                 wait_seconds=round(state.upcoming_sleep, 3))

    try:
        async for attempt_state in AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts) | _AskedToWaitLonger(policy.max_backoff_seconds),
            wait=_WaitRetryAfterOrJitter(policy),
            retry=retry_if_exception_type(RetryableError),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        ):
            with attempt_state:
                attempt = attempt_state.retry_state.attempt_number
                return await call()
    except SyncError as error:
        error.attempts = attempt
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
