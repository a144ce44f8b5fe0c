import gc
import random
import weakref

import pytest

from connector.config import RetrySettings
from connector.errors import InvalidInput, PermanentError, RetryableError
from connector.retry import call_with_retries, exponential_backoff

POLICY = RetrySettings(initial_backoff_seconds=0.5, max_backoff_seconds=8, max_retry_after_seconds=60)


class Script:
    """A call that raises the scripted errors in turn, then answers "ok"; and a sleep that only records."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.sleeps: list[float] = []

    async def call(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def busy(retry_after: float | None = None) -> RetryableError:
    return RetryableError("HTTP 503", reason="http_503", retry_after=retry_after)


def login_refused() -> PermanentError:
    error = PermanentError("login refused", reason="login_failed")
    error.affects_every_record = True
    return error


async def test_service_wide_errors_are_waited_out_however_long_they_last() -> None:
    script = Script(*(busy() for _ in range(50)), login_refused(), busy())
    retried: list[tuple[str, str, int]] = []
    result = await call_with_retries(script.call, service="DongBoHoSoMC", policy=POLICY,
                                     on_retry=lambda *a: retried.append(a), sleep=script.sleep)
    assert result == "ok"
    assert script.calls == 53
    assert retried[0] == ("DongBoHoSoMC", "http_503", 1)
    assert retried[50][1] == "login_failed"


async def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    script = Script(*(busy() for _ in range(8)))
    await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    caps = [min(8.0, 0.5 * 2**n) for n in range(8)]
    assert all(0 <= slept <= cap for slept, cap in zip(script.sleeps, caps, strict=True))
    assert max(script.sleeps) <= 8


async def test_retry_after_is_honoured_up_to_its_cap() -> None:
    script = Script(busy(retry_after=30.0), busy(retry_after=600.0))
    await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert 30.0 <= script.sleeps[0] <= 31.0  # what was asked, and a little jitter
    assert 60.0 <= script.sleeps[1] <= 61.0  # capped


@pytest.mark.parametrize("error", [PermanentError("no", reason="portal_rejected"),
                                   InvalidInput("bad", reason="schema")])
async def test_errors_of_the_item_itself_are_not_retried(error) -> None:
    script = Script(busy(), error)
    with pytest.raises(type(error)) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.calls == 2
    assert caught.value.attempts == 2


async def test_the_caller_is_asked_once_per_service_wide_failure_whether_to_give_up() -> None:
    script = Script(busy(), busy(), busy())
    asked: list[int] = []

    def give_up(_error, attempt: int) -> bool:
        asked.append(attempt)
        return attempt == 2

    with pytest.raises(RetryableError) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep, give_up=give_up)
    assert asked == [1, 2]
    assert script.calls == 2 and len(script.sleeps) == 1
    assert caught.value.attempts == 2


async def test_a_first_try_that_fails_for_itself_or_with_a_bug_is_not_retried() -> None:
    script = Script(PermanentError("no", reason="portal_rejected"))
    with pytest.raises(PermanentError) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert caught.value.attempts == 1 and script.calls == 1 and script.sleeps == []
    script = Script(ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.calls == 1


async def test_a_call_that_succeeds_at_once_is_freed_as_soon_as_it_returns() -> None:
    # Tenacity's per-call state is a reference cycle; what the call's callbacks hold on to (the gateway's
    # hold the batch's retry history, and through it the batch) would live until a full collection.
    # With the collector off, only reference counting can free it here.
    class Batch:
        pass

    batch = Batch()
    freed = weakref.ref(batch)
    script = Script()
    gc.disable()
    try:
        result = await call_with_retries(script.call, service="s", policy=POLICY,
                                         give_up=lambda _error, _attempt, held=batch: False,
                                         on_retry=lambda *_args, held=batch: None)
        assert result == "ok"
        del batch
        assert freed() is None
    finally:
        gc.enable()


def test_exponential_backoff_doubles_from_its_start_up_to_its_cap() -> None:
    assert [exponential_backoff(n, initial=0.5, cap=8) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert exponential_backoff(10_000, initial=0.5, cap=8) == 8  # no overflow however long the outage


def test_exponential_backoff_with_jitter_stays_under_the_same_ceiling() -> None:
    rng = random.Random(7)
    waits = [exponential_backoff(3, initial=0.5, cap=8, rng=rng) for _ in range(200)]
    assert all(0 <= w <= 4 for w in waits) and len(set(waits)) > 100
