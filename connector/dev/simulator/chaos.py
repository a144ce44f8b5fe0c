"""Standing misbehaviour of the simulated adapter: a profile (data) and a pure decision per call.

A ``ChaosProfile`` is what ``PUT /_sim/chaos`` takes and ``portal-sync simulate-portal`` builds from its
flags. ``Chaos`` turns it into a ``Verdict`` for each arriving call, given the time since the profile
was installed; it keeps its own seeded RNG and throttle window, and does no I/O and no sleeping.

The order in which one call meets the knobs (fixed, so a seed reproduces a run):

1. an outage window: every call, login included, answers 503 (``mode: "reset"``: the connection is
   closed without an answer, and nothing else below happens);
2. latency: one delay drawn per answered call, waited before answering (before the call takes effect);
3. a burst window: 429 with ``Retry-After``;
4. the throttle: the calls of one 1-second window (counted from when the profile was installed) beyond
   ``requests_per_second`` answer 429 with ``Retry-After``; the login counts;
5. the error rate: 5xx with the service's probability, the status drawn from ``error_statuses``;
6. a push naming one of ``crashing_dossiers`` answers ``crash_status`` and takes no effect, every time:
   the adapter failing on one record's data, a poison pill no retry cures (checked once the session is);
7. the call is served; a push that took effect (``DongBoHoSoMC``, ``CapNhatTienDoHoSoMC``) then has its
   reply withheld for ``hang_seconds`` with probability ``apply_then_timeout_rate``.

The login is a call like any other for outages, latency and the throttle; the error rate reaches it only
when named (``{"login": 0.2}``), the way the one-shot faults treat it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LOGIN = "login"
ANY_SERVICE = "*"
PUSH_SERVICES = frozenset({"DongBoHoSoMC", "CapNhatTienDoHoSoMC"})
DEFAULT_ERROR_STATUSES = (500, 502, 503)

_N = TypeVar("_N", int, float)
_Z99 = NormalDist().inv_cdf(0.99)  # a lognormal's 99th percentile is exp(mu + _Z99 * sigma)

Probability = Annotated[float, Field(ge=0, le=1)]
Millis = Annotated[float, Field(ge=0, le=3_600_000)]
PositiveMillis = Annotated[float, Field(gt=0, le=3_600_000)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]
RetryAfter = Annotated[int, Field(ge=0, le=3600)]  # HTTP delay-seconds: a whole number


class _Knob(BaseModel):
    # Strict: a JSON true is not a probability, "0.3" is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FixedLatency(_Knob):
    """Every answer waits ``ms``."""

    distribution: Literal["fixed"]
    ms: Millis

    def sample_ms(self, rng: random.Random) -> float:
        return self.ms


class UniformLatency(_Knob):
    """Each answer waits a delay drawn uniformly from ``[min_ms, max_ms]``."""

    distribution: Literal["uniform"]
    min_ms: Millis
    max_ms: Millis

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.min_ms > self.max_ms:
            raise ValueError("min_ms must not exceed max_ms")
        return self

    def sample_ms(self, rng: random.Random) -> float:
        return rng.uniform(self.min_ms, self.max_ms)


class LognormalLatency(_Knob):
    """A long-tailed delay given by its median ``p50_ms`` and 99th percentile ``p99_ms``.

    That is a lognormal with ``mu = ln(p50_ms)`` and ``sigma = ln(p99_ms / p50_ms) / 2.326``; ``max_ms``
    (optional) cuts the tail off.
    """

    distribution: Literal["lognormal"]
    p50_ms: PositiveMillis
    p99_ms: PositiveMillis
    max_ms: Millis | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLatency:
        if self.p99_ms < self.p50_ms:
            raise ValueError("p99_ms must not be below p50_ms")
        return self

    def sample_ms(self, rng: random.Random) -> float:
        sigma = math.log(self.p99_ms / self.p50_ms) / _Z99
        value = rng.lognormvariate(math.log(self.p50_ms), sigma)
        return value if self.max_ms is None else min(value, self.max_ms)


Latency = Annotated[FixedLatency | UniformLatency | LognormalLatency, Field(discriminator="distribution")]


class Throttle(_Knob):
    requests_per_second: int = Field(ge=0)
    retry_after_seconds: RetryAfter = 1


class Burst(_Knob):
    """Forced 429s for ``for_seconds`` at the start of every period of ``every_seconds``, the first
    period beginning ``every_seconds`` after the profile was installed."""

    every_seconds: Seconds
    for_seconds: Seconds
    retry_after_seconds: RetryAfter = 1

    @model_validator(mode="after")
    def _shorter_than_the_period(self) -> Burst:
        if self.for_seconds >= self.every_seconds:
            raise ValueError("for_seconds must be shorter than every_seconds")
        return self

    def active(self, elapsed: float) -> bool:
        return elapsed >= self.every_seconds and elapsed % self.every_seconds < self.for_seconds


class Outage(_Knob):
    """From ``start_in_seconds`` after the profile was installed, for ``duration_seconds``; with ``after_calls``,
    the clock starts at the first call after that many (an outage in the middle of a stream, however fast the
    stream goes)."""

    start_in_seconds: Annotated[float, Field(ge=0, le=86_400)]
    duration_seconds: Seconds
    mode: Literal["unavailable", "reset"] = "unavailable"
    # Left out of the profile read back when unset, as before it existed.
    after_calls: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(None, exclude_if=lambda v: v is None)

    def active(self, elapsed: float) -> bool:
        return self.start_in_seconds <= elapsed < self.start_in_seconds + self.duration_seconds


class ChaosProfile(_Knob):
    """Every knob, all optional; the defaults are a well-behaved adapter.

    ``error_rate`` is one probability for every service call (stored as ``{"*": p}``), or per service
    name with ``"*"`` for the rest, e.g. ``{"DongBoHoSoMC": 0.3, "*": 0.1}``. ``session_ttl_seconds``
    replaces the configured session lifetime, for sessions already issued too. ``seed`` None draws
    from the OS.
    """

    seed: int | None = None
    error_rate: dict[str, Probability] = Field(default_factory=dict)
    error_statuses: list[Annotated[int, Field(ge=500, le=599)]] = Field(
        default_factory=lambda: list(DEFAULT_ERROR_STATUSES), min_length=1
    )
    latency: Latency | None = None
    throttle: Throttle | None = None
    burst: Burst | None = None
    outages: list[Outage] = Field(default_factory=list)
    session_ttl_seconds: Seconds | None = None
    apply_then_timeout_rate: Probability = 0.0
    hang_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    crashing_dossiers: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=10_000)
    crash_status: Annotated[int, Field(ge=500, le=599)] = 500

    @field_validator("error_rate", mode="before")
    @classmethod
    def _one_rate_for_every_service(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {ANY_SERVICE: value}
        if not isinstance(value, dict):
            raise ValueError("must be a probability, or an object of probabilities by service name")
        return value

    def error_rate_of(self, service: str) -> float:
        if service in self.error_rate:
            return self.error_rate[service]
        return 0.0 if service == LOGIN else self.error_rate.get(ANY_SERVICE, 0.0)


@dataclass(frozen=True)
class Verdict:
    """What the adapter does with one call before serving it.

    ``status`` set: answer it (after ``delay_seconds``) instead of serving the call; ``close``: drop the
    connection without an answer; neither: wait ``delay_seconds``, then serve. ``outcome`` names what
    happened, for the stats.
    """

    delay_seconds: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    close: bool = False
    outcome: str = "served"


class Chaos:
    """A profile in force since ``installed_at`` (seconds on the state's monotonic clock)."""

    def __init__(self, profile: ChaosProfile, *, installed_at: float) -> None:
        self.profile = profile
        self.installed_at = installed_at
        self._rng = random.Random(profile.seed)  # noqa: S311 - simulated faults, not secrets
        self._window = -1
        self._window_calls = 0
        self._calls = 0
        self._outage_clocks: dict[int, float] = {}  # outage (by index) with after_calls -> when its clock started

    def verdict(self, service: str, now: float) -> Verdict:
        profile = self.profile
        self._calls += 1
        elapsed = now - self.installed_at
        outage = next((o for i, o in enumerate(profile.outages) if o.active(self._outage_elapsed(i, o, now))), None)
        if outage is not None and outage.mode == "reset":
            return Verdict(close=True, outcome="outage_reset")
        delay = profile.latency.sample_ms(self._rng) / 1000 if profile.latency is not None else 0.0
        if outage is not None:
            return Verdict(delay, status=503, outcome="outage")
        if profile.burst is not None and profile.burst.active(elapsed):
            return Verdict(delay, status=429, retry_after=profile.burst.retry_after_seconds, outcome="throttled")
        if profile.throttle is not None and self._over_the_limit(elapsed, profile.throttle):
            return Verdict(delay, status=429, retry_after=profile.throttle.retry_after_seconds, outcome="throttled")
        rate = profile.error_rate_of(service)
        if rate > 0 and self._rng.random() < rate:
            status = self._rng.choice(profile.error_statuses)
            return Verdict(delay, status=status, outcome=f"chaos_{status}")
        return Verdict(delay)

    def crash_status(self, service: str, data: Any) -> int | None:
        """For a push about to be served: the 5xx it crashes with, when it names a crashing dossier."""
        crashing = self.profile.crashing_dossiers
        if not crashing or service not in PUSH_SERVICES or not isinstance(data, list):
            return None
        named = {item.get("MaHoSo") for item in data if isinstance(item, dict)}
        return self.profile.crash_status if not named.isdisjoint(crashing) else None

    def withhold_seconds(self, service: str) -> float | None:
        """For a push that took effect: how long to withhold its reply, or None to answer now."""
        rate = self.profile.apply_then_timeout_rate
        if service in PUSH_SERVICES and rate > 0 and self._rng.random() < rate:
            return self.profile.hang_seconds
        return None

    def _outage_elapsed(self, index: int, outage: Outage, now: float) -> float:
        """Seconds on the outage's clock: since the install, or since the call after its ``after_calls``."""
        if outage.after_calls is None:
            return now - self.installed_at
        if self._calls <= outage.after_calls:
            return -1.0  # not started
        return now - self._outage_clocks.setdefault(index, now)

    def _over_the_limit(self, elapsed: float, throttle: Throttle) -> bool:
        window = math.floor(elapsed)
        if window != self._window:
            self._window, self._window_calls = window, 0
        self._window_calls += 1
        return self._window_calls > throttle.requests_per_second


class ChaosInvalid(ValueError):
    """A chaos profile or flag that cannot be used; the message names every problem."""


def parse_profile(value: Any) -> ChaosProfile:
    """A ``ChaosProfile`` from decoded JSON, or ``ChaosInvalid`` naming each problem."""
    try:
        return ChaosProfile.model_validate(value)
    except ValidationError as exc:
        raise ChaosInvalid(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """``"latency.uniform.max_ms: Field required; error_rate: ..."``, one clause per problem."""
    clauses = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        clauses.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(clauses)


# --- command-line flags ---------------------------------------------------------------------------


def profile_from_flags(
    *,
    seed: int | None = None,
    error_rates: Iterable[str] = (),
    error_statuses: str | None = None,
    latency_ms: str | None = None,
    throttle_rps: int | None = None,
    retry_after: int = 1,
    burst: str | None = None,
    outages: Iterable[str] = (),
    apply_then_timeout_rate: float | None = None,
    hang_seconds: float | None = None,
    crashing_dossiers: Iterable[str] = (),
) -> ChaosProfile:
    """The profile that ``simulate-portal``'s flags describe (their syntax is in the command's help)."""
    profile: dict[str, Any] = {"seed": seed}
    rates = dict(_error_rate(flag) for flag in error_rates)
    if rates:
        profile["error_rate"] = rates
    if error_statuses is not None:
        profile["error_statuses"] = _numbers("--error-statuses", error_statuses, ",", int)
    if latency_ms is not None:
        profile["latency"] = _latency(latency_ms)
    if throttle_rps is not None:
        profile["throttle"] = {"requests_per_second": throttle_rps, "retry_after_seconds": retry_after}
    if burst is not None:
        every, duration = _numbers("--burst", burst, ":", float, count=2)
        profile["burst"] = {"every_seconds": every, "for_seconds": duration, "retry_after_seconds": retry_after}
    profile["outages"] = [_outage(flag) for flag in outages]
    if apply_then_timeout_rate is not None:
        profile["apply_then_timeout_rate"] = apply_then_timeout_rate
    if hang_seconds is not None:
        profile["hang_seconds"] = hang_seconds
    if crashing_dossiers:
        profile["crashing_dossiers"] = list(crashing_dossiers)
    return parse_profile(profile)


def _error_rate(flag: str) -> tuple[str, float]:
    service, _, rate = flag.rpartition("=")
    (value,) = _numbers("--error-rate", rate, ",", float, count=1)
    return service or ANY_SERVICE, value


def _latency(flag: str) -> dict[str, Any]:
    kind, _, rest = flag.partition(":")
    if kind == "uniform":
        low, high = _numbers("--latency-ms", rest, ":", float, count=2)
        return {"distribution": "uniform", "min_ms": low, "max_ms": high}
    if kind == "lognormal":
        p50, p99 = _numbers("--latency-ms", rest, ":", float, count=2)
        return {"distribution": "lognormal", "p50_ms": p50, "p99_ms": p99}
    (ms,) = _numbers("--latency-ms", flag, ",", float, count=1)
    return {"distribution": "fixed", "ms": ms}


def _outage(flag: str) -> dict[str, Any]:
    times, _, mode = flag.rpartition(":") if flag.count(":") == 2 else (flag, "", "unavailable")
    start, duration = _numbers("--outage", times, ":", float, count=2)
    if mode not in ("reset", "unavailable"):
        raise ChaosInvalid(f"--outage: the mode after START:DURATION: must be 'reset' or 'unavailable', not {mode!r}")
    return {"start_in_seconds": start, "duration_seconds": duration, "mode": mode}


def _numbers(flag: str, text: str, sep: str, kind: type[_N], *, count: int | None = None) -> list[_N]:
    parts = text.split(sep)
    try:
        values = [kind(part.strip()) for part in parts]
    except ValueError:
        raise ChaosInvalid(f"{flag}: {text!r} is not {_shape(kind, sep, count)}") from None
    if count is not None and len(values) != count:
        raise ChaosInvalid(f"{flag}: {text!r} is not {_shape(kind, sep, count)}")
    return values


def _shape(kind: type[Any], sep: str, count: int | None) -> str:
    name = "whole number" if kind is int else "number"
    if count == 1:
        return f"a {name}"
    if count is None:
        return f"a {sep!r}-separated list of {name}s"
    return f"{count} {name}s separated by {sep!r}"


__all__ = [
    "ANY_SERVICE",
    "LOGIN",
    "PUSH_SERVICES",
    "Burst",
    "Chaos",
    "ChaosInvalid",
    "ChaosProfile",
    "FixedLatency",
    "LognormalLatency",
    "Outage",
    "Throttle",
    "UniformLatency",
    "Verdict",
    "describe",
    "parse_profile",
    "profile_from_flags",
]
