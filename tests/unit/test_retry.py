import pytest

from connector.config import RetrySettings
from connector.errors import InvalidInput, PermanentError, RetryableError
from connector.pipeline.retry import call_with_retries

POLICY = RetrySettings(max_attempts=4, initial_backoff_seconds=0.5, max_backoff_seconds=8)


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


async def test_retryable_errors_are_retried_until_success() -> None:
    script = Script(busy(), busy())
    retried: list[tuple[str, str]] = []
    result = await call_with_retries(script.call, service="DongBoHoSoMC", policy=POLICY,
                                     on_retry=lambda *a: retried.append(a), sleep=script.sleep)
    assert result == "ok"
    assert script.calls == 3
    assert retried == [("DongBoHoSoMC", "http_503")] * 2


async def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    script = Script(busy(), busy(), busy())
    await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    caps = [0.5 * 2**n for n in range(3)]  # tenacity's exponent starts at the first retry
    assert len(script.sleeps) == 3
    assert all(0 <= slept <= min(8, 2 * cap) for slept, cap in zip(script.sleeps, caps, strict=True))


async def test_retry_after_is_honoured() -> None:
    script = Script(busy(retry_after=3.0))
    await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.sleeps == [3.0]


async def test_a_retry_after_beyond_the_cap_ends_the_retries_for_the_pipeline_to_wait() -> None:
    script = Script(busy(retry_after=120.0))
    with pytest.raises(RetryableError) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.calls == 1 and script.sleeps == []
    assert caught.value.retry_after == 120.0


async def test_attempts_are_bounded_and_recorded_on_the_error() -> None:
    script = Script(*(busy() for _ in range(10)))
    with pytest.raises(RetryableError) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.calls == 4
    assert caught.value.attempts == 4


@pytest.mark.parametrize("error", [PermanentError("no", reason="portal_rejected"),
                                   InvalidInput("bad", reason="schema")])
async def test_permanent_and_invalid_errors_are_not_retried(error) -> None:
    script = Script(error)
    with pytest.raises(type(error)) as caught:
        await call_with_retries(script.call, service="s", policy=POLICY, sleep=script.sleep)
    assert script.calls == 1 and script.sleeps == []
    assert caught.value.attempts == 1
