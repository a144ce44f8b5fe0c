"""A circuit breaker for the adapter: pure state, time passed in.

Closed: calls go through; the outcomes of the last ``window`` calls are kept. When at least
``min_calls`` are known and the share of service-wide failures reaches ``failure_ratio``, it opens.
Open: no calls for ``open_seconds``. Then half-open: one probe goes through; success closes it,
failure opens it again.

It also keeps the adapter's **healthy time**: seconds spent closed. A record's own deadline runs on it,
so that an outage (breaker open) never counts against the records waiting for it.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from connector.config import CircuitBreakerSettings

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, settings: CircuitBreakerSettings, now: float = 0.0) -> None:
        self._settings = settings
        self._outcomes: deque[bool] = deque(maxlen=settings.window)  # True = failed
        self._opened_at: float | None = None
        self._probing = False
        self._closed_since: float | None = now
        self._healthy_before = 0.0  # closed time before the current closed period

    def healthy_seconds(self, now: float) -> float:
        """Seconds spent closed so far: a clock that stops while the adapter is failing."""
        current = now - self._closed_since if self._closed_since is not None else 0.0
        return self._healthy_before + max(current, 0.0)

    def state(self, now: float) -> State:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at < self._settings.open_seconds:
            return "open"
        return "half_open"

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open state only one probe at a time."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def seconds_until_probe(self, now: float) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._settings.open_seconds - now)

    def record_success(self, now: float) -> None:
        if self._opened_at is not None:
            self._opened_at = None
            self._closed_since = now
            self._outcomes.clear()
        self._probing = False
        self._outcomes.append(False)

    def record_failure(self, now: float) -> None:
        """A service-wide failure (record-level refusals say nothing about the adapter's health)."""
        self._probing = False
        if self._opened_at is not None:
            self._opened_at = now  # the probe failed: open again
            return
        self._outcomes.append(True)
        failed = sum(self._outcomes)
        if len(self._outcomes) >= self._settings.min_calls and failed / len(self._outcomes) >= (
            self._settings.failure_ratio
        ):
            self._opened_at = now
            if self._closed_since is not None:
                self._healthy_before += max(now - self._closed_since, 0.0)
                self._closed_since = None
