"""Waiting: the retry policy, and how the long-running loops pause between rounds.

The retry policy for calls that meet a service-wide error (adapter down, throttled, session lost,
state store unreachable): wait and try again — never give the event up for it, since every event would
meet the same cause. The wait is the server's ``Retry-After`` when it gave one (capped), otherwise
exponential backoff with full jitter. Errors that belong to the one item are raised at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from connector.config import RetrySettings
from connector.errors import RetryableError, SyncError

T = TypeVar("T")
log = structlog.get_logger(__name__)


def exponential_backoff(failures: int, *, initial: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failures in a row (from 0): ``initial`` doubled each time, capped at
    ``cap``; with ``rng``, full jitter under that ceiling (callers that failed together do not come back
    together). The one backoff rule of the project."""
    ceiling = min(cap, initial * 2.0 ** min(failures, 60))
    return rng.uniform(0, ceiling) if rng is not None else ceiling


class _WaitRetryAfterOrJitter:
    """Honour the server's Retry-After when it gave one; otherwise full-jitter exponential, capped."""

    def __init__(self, policy: RetrySettings) -> None:
        self._retry_after_cap = policy.max_retry_after_seconds
        self._initial = policy.initial_backoff_seconds
        self._cap = policy.max_backoff_seconds
        self._random = random.Random()  # noqa: S311 - jitter, not secrecy

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            asked = min(max(error.retry_after, 0.0), self._retry_after_cap)
            # At least what was asked, plus a little jitter: callers told the same Retry-After must not
            # come back in lockstep (and land in the same throttled window again).
            return asked + random.uniform(0, min(1.0, 0.1 * asked))  # noqa: S311
        return exponential_backoff(state.attempt_number - 1, initial=self._initial, cap=self._cap, rng=self._random)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    service: str,
    policy: RetrySettings,
    on_retry: Callable[[str, str, int], None] | None = None,
    give_up: Callable[[SyncError, int], bool] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``call`` until it succeeds or fails for a reason of its own (raised, with ``attempts`` set).
    Service-wide errors are waited out for as long as they last, unless ``give_up(error, attempt)`` says
    the caller has waited enough (then the error is raised); cancel the caller to stop waiting."""
    attempt = 1

    def should_retry(error: BaseException) -> bool:
        if not isinstance(error, SyncError) or not error.affects_every_record:
            return False
        return give_up is None or not give_up(error, attempt)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = error.reason if isinstance(error, SyncError) else type(error).__name__
        if on_retry is not None:
            on_retry(service, reason, state.attempt_number)
        if state.attempt_number == 1 or state.attempt_number % 10 == 0:  # a long outage: not a line per try
            log.warning("call will be retried: the cause affects every event", service=service, reason=reason,
                        attempt=state.attempt_number, wait_seconds=round(state.upcoming_sleep, 3))

    try:
        # The first try runs outside tenacity: nearly every call succeeds at once, and tenacity's state
        # for a call is a reference cycle that would keep the call, and the batch it carries, alive until
        # a full garbage collection.
        return await call()
    except SyncError as error:
        if not error.affects_every_record:
            error.attempts = 1
            raise
        first_failure: SyncError | None = error

    async def again() -> T:
        nonlocal first_failure
        if first_failure is not None:  # tenacity's first attempt is the one that already failed
            error, first_failure = first_failure, None
            raise error
        return await call()

    try:
        async for attempt_state in AsyncRetrying(
            stop=stop_never,
            wait=_WaitRetryAfterOrJitter(policy),
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        ):
            with attempt_state:
                attempt = attempt_state.retry_state.attempt_number
                return await again()
    except SyncError as error:
        error.attempts = attempt
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return once any of ``events`` is set, or after ``seconds``, whichever comes first."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
