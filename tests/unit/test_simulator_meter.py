"""What the simulated adapter measures about the load it receives."""

from __future__ import annotations

import pytest

from connector.dev.simulator.meter import RateMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def arrivals(times: list[float]) -> RateMeter:
    clock = FakeClock()
    meter = RateMeter(clock)
    for at in times:
        clock.now = at
        meter.arrive()
        meter.depart()
    return meter


def test_counts_every_arrival() -> None:
    meter = arrivals([0.0, 0.1, 5.0])
    assert meter.snapshot() == {
        "requests": 3,
        "max_per_second": 2,
        "max_concurrent": 1,
        "in_flight": 0,
        "window_seconds": 1.0,
    }


def test_the_window_slides_rather_than_following_the_clock_seconds() -> None:
    # Five calls late in one second and five early in the next: ten within 0.8 s.
    meter = arrivals([0.6, 0.7, 0.8, 0.85, 0.9, 1.1, 1.2, 1.3, 1.35, 1.4])
    assert meter.snapshot()["max_per_second"] == 10


def test_calls_exactly_one_window_apart_are_not_in_the_same_window() -> None:
    assert arrivals([0.0, 1.0, 2.0, 3.0]).snapshot()["max_per_second"] == 1
    assert arrivals([0.0, 0.999, 1.998]).snapshot()["max_per_second"] == 2


def test_the_highest_window_is_kept_after_the_rate_drops() -> None:
    burst = [10 + i / 100 for i in range(50)]  # 50 calls in half a second
    steady = [20 + i for i in range(30)]  # then one a second
    meter = arrivals([i / 10 for i in range(30)] + burst + steady)
    assert meter.snapshot()["max_per_second"] == 50
    assert meter.snapshot()["requests"] == 110


def test_a_steady_rate_is_measured_as_such() -> None:
    meter = arrivals([i / 256 for i in range(2560)])  # 256 per second for 10 s (exact binary fractions)
    assert meter.snapshot()["max_per_second"] == 256


def test_concurrency_is_the_most_calls_in_flight_at_once() -> None:
    meter = RateMeter(FakeClock())
    with meter.track(), meter.track():
        with meter.track():
            assert meter.in_flight == 3
        with meter.track():
            pass
    with pytest.raises(RuntimeError), meter.track():
        raise RuntimeError("a handler failed")
    assert meter.in_flight == 0
    assert meter.snapshot()["max_concurrent"] == 3
    assert meter.snapshot()["requests"] == 5


def test_reset_starts_afresh_but_calls_in_flight_stay_in_flight() -> None:
    clock = FakeClock()
    meter = RateMeter(clock)
    for _ in range(3):
        meter.arrive()
    meter.depart()
    meter.reset()
    assert meter.snapshot() == {
        "requests": 0,
        "max_per_second": 0,
        "max_concurrent": 2,
        "in_flight": 2,
        "window_seconds": 1.0,
    }
    meter.depart()
    meter.depart()
    clock.now = 0.5
    meter.arrive()
    assert meter.snapshot()["max_per_second"] == 1  # the arrivals before the reset are forgotten
