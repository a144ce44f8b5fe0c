from connector.config import CircuitBreakerSettings
from connector.portal.breaker import CircuitBreaker

SETTINGS = CircuitBreakerSettings(failure_ratio=0.5, window=10, min_calls=4, open_seconds=5)


def test_it_stays_closed_below_the_minimum_number_of_calls() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(3):
        breaker.record_failure(0)
    assert breaker.state(0) == "closed" and breaker.allow(0)


def test_it_opens_at_the_failure_ratio_and_refuses_calls() -> None:
    breaker = CircuitBreaker(SETTINGS)
    breaker.record_success(0)
    breaker.record_success(0)
    breaker.record_failure(0)
    assert breaker.state(0) == "closed"
    breaker.record_failure(1)  # 2 of 4 failed
    assert breaker.state(1) == "open"
    assert not breaker.allow(2)
    assert breaker.seconds_until_probe(2) == 4


def test_after_the_open_period_one_probe_goes_through() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(4):
        breaker.record_failure(0)
    assert breaker.state(5) == "half_open"
    assert breaker.allow(5)
    assert not breaker.allow(5)  # only one probe at a time


def test_a_successful_probe_closes_it() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(4):
        breaker.record_failure(0)
    assert breaker.allow(6)
    breaker.record_success(6)
    assert breaker.state(6) == "closed"
    breaker.record_failure(6)  # old failures were forgotten: one failure does not reopen it
    assert breaker.state(6) == "closed"


def test_a_failed_probe_opens_it_again_for_a_full_period() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(4):
        breaker.record_failure(0)
    assert breaker.allow(6)
    breaker.record_failure(6)
    assert breaker.state(10) == "open"
    assert breaker.state(11) == "half_open"


def test_only_the_last_window_of_calls_counts() -> None:
    breaker = CircuitBreaker(CircuitBreakerSettings(failure_ratio=0.5, window=4, min_calls=4, open_seconds=5))
    breaker.record_failure(0)
    for _ in range(4):
        breaker.record_success(0)  # the early failure leaves the window
    breaker.record_failure(0)  # [S, S, S, F]: 1 of 4
    assert breaker.state(0) == "closed"
    breaker.record_failure(0)  # [S, S, F, F]: 2 of 4
    assert breaker.state(0) == "open"


def test_healthy_time_stops_while_open_and_goes_on_once_closed_again() -> None:
    breaker = CircuitBreaker(SETTINGS, now=100)
    assert breaker.healthy_seconds(110) == 10
    for _ in range(4):
        breaker.record_failure(110)  # opens at 110
    assert breaker.healthy_seconds(150) == 10  # an outage does not count
    assert breaker.allow(150)
    breaker.record_failure(150)  # the probe fails: open again
    assert breaker.healthy_seconds(160) == 10
    assert breaker.allow(170)
    breaker.record_success(170)
    assert breaker.healthy_seconds(175) == 15
