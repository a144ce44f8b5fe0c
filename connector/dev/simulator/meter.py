"""What the simulated adapter measures about the load it receives, for ``GET /_sim/rate``.

A client's rate limit is checked against ``max_per_second``: the most calls that arrived within any
sliding window of ``window_seconds`` (a half-open interval ``(t - window, t]``), and its concurrency
limit against ``max_concurrent``. Memory is the arrivals of the last window only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class RateMeter:
    def __init__(self, clock: Callable[[], float], *, window_seconds: float = 1.0) -> None:
        self._clock = clock
        self.window_seconds = window_seconds
        self._recent: deque[float] = deque()
        self.requests = 0
        self.max_per_window = 0
        self.in_flight = 0
        self.max_concurrent = 0

    def arrive(self) -> None:
        """One call arrived (counted whatever is answered to it) and is now in flight."""
        now = self._clock()
        recent = self._recent
        recent.append(now)
        horizon = now - self.window_seconds
        while recent[0] <= horizon:
            recent.popleft()
        self.requests += 1
        self.max_per_window = max(self.max_per_window, len(recent))
        self.in_flight += 1
        self.max_concurrent = max(self.max_concurrent, self.in_flight)

    def depart(self) -> None:
        """A call that arrived was answered, dropped, or abandoned by its client."""
        self.in_flight -= 1

    @contextmanager
    def track(self) -> Iterator[None]:
        self.arrive()
        try:
            yield
        finally:
            self.depart()

    def reset(self) -> None:
        """Start measuring afresh; calls in flight now stay in flight (and count as concurrent)."""
        self._recent.clear()
        self.requests = 0
        self.max_per_window = 0
        self.max_concurrent = self.in_flight

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "max_per_second": self.max_per_window,
            "max_concurrent": self.max_concurrent,
            "in_flight": self.in_flight,
            "window_seconds": self.window_seconds,
        }


__all__ = ["RateMeter"]
