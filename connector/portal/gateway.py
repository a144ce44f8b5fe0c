"""The gateway every adapter call goes through, the daemon's and the operators' commands' alike: concurrency
limit (the rate limit is the client's, per HTTP request), circuit breaker, the wait-out of service-wide errors
(which never fail a record), and the bisection of a batch the adapter refuses until the refused records are
found.

``open_gateway`` builds the adapter client, its audit trail and the gateway in one place, for the daemon and
for an operator's command that runs beside it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import structlog

from connector.batching import Settle
from connector.config import PortalSettings, Settings
from connector.errors import DeadlineExceeded, SyncError
from connector.observability import Metrics
from connector.portal.audit import AuditTrail
from connector.portal.breaker import CircuitBreaker
from connector.portal.client import PUSH_STATISTIC, PUSH_STATUS, PortalClient
from connector.portal.errors import BreakerOpen
from connector.retry import call_with_retries
from connector.store import StateStore

log = structlog.get_logger(__name__)
T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R")



class Portal(Protocol):
    """What the push side needs of the adapter client."""

    async def push_dossiers(self, records: Sequence[Mapping[str, Any]], *, updating: bool) -> bool: ...

    async def push_progress(self, steps: Sequence[Mapping[str, Any]]) -> None: ...

    async def push_status(self, data: Mapping[str, Any]) -> None: ...

    async def push_statistic(self, record: Mapping[str, Any]) -> None: ...

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None: ...



# ---------------------------------------------------------------------------------------------------------
# The adapter, protected: concurrency, circuit breaker, waiting out outages


@dataclass(eq=False)  # compared and hashed by identity: one per call
class RetryHistory:
    """One batch's (or record's) history of retryable failures, handed down when a batch is split: the
    record's deadline runs from its first failure in any batch."""

    healthy_at_first_failure: float | None = None
    answers_at_first_failure: int = 0
    attempts: int = 0
    failures_while_closed: int = 0  # of this batch itself, not handed down
    service: str = ""
    single: bool = True

    def for_half(self) -> RetryHistory:
        return RetryHistory(self.healthy_at_first_failure, self.answers_at_first_failure, self.attempts,
                         service=self.service)


class RecordPush(NamedTuple):
    record: dict[str, Any]
    updating: bool
    size: int


class PortalGateway:
    def __init__(self, portal: Portal, settings: PortalSettings, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._portal = portal
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        # The rate is kept by the client, per HTTP request (PortalClient); here, how many calls are in flight.
        self._concurrency = asyncio.Semaphore(settings.rate_limit.max_concurrent_requests)
        self._breaker = CircuitBreaker(settings.circuit_breaker, now=clock())
        self._waiting: set[RetryHistory] = set()  # calls retrying a service-wide error
        # Per service, calls the adapter answered (success or a record's own refusal): one service may be
        # down while the other answers.
        self._answers: collections.Counter[str] = collections.Counter()

    @property
    def unavailable(self) -> bool:
        """True while the breaker is open, or a batch waits out an error that nothing of its service has
        got past since it began (the adapter down): consumption should pause. A single record failing
        does not pause anything: new events must keep coming, or nothing could tell a record failing
        alone (its deadline deals with it) from an outage."""
        if self._breaker.state(self._clock()) == "open":
            return True
        return any(not p.single and p.answers_at_first_failure == self._answers[p.service] for p in self._waiting)

    async def push_records(self, pushes: list[RecordPush], settle: Settle[bool]) -> list[bool | BaseException]:
        """DongBoHoSoMC for a batch: creates and updates in separate calls. Per push: whether it was an
        update, or the error that belongs to that record; each settled as soon as it is known."""
        results: list[bool | BaseException] = [False] * len(pushes)

        async def one_kind(updating: bool) -> None:
            indexes = [i for i, p in enumerate(pushes) if p.updating is updating]
            if not indexes:
                return

            def settle_push(i: int, answer: bool | BaseException) -> None:
                results[indexes[i]] = answer
                settle(indexes[i], answer)

            send = functools.partial(self._portal.push_dossiers, updating=updating)
            await self._bisect("DongBoHoSoMC", [pushes[i].record for i in indexes], send, settle_push)

        await asyncio.gather(one_kind(False), one_kind(True))
        return results

    async def request(self, service: str, send: Callable[[], Awaitable[T]]) -> T:
        """Any other adapter call (the pull services), protected like a push: rate limit, breaker, and the
        wait-out of service-wide errors; a record-level error is raised."""
        return await self.call(service, send, RetryHistory(service=service))

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None:
        """TraCuuHoSo: what the portal holds of one dossier (None: nothing), protected like a push."""
        return await self.request("TraCuuHoSo", lambda: self._portal.lookup(dossier_no))

    async def push_status(self, data: Mapping[str, Any]) -> None:
        """DongBoTrangThaiHoSo for one dossier that started on the national portal (its data is one object:
        one dossier per call), protected like a record push: service-wide errors are waited out until the
        record's deadline. Raises the record's own error, or DeadlineExceeded."""
        patience = RetryHistory(service=PUSH_STATUS)
        try:
            await self.call(PUSH_STATUS, lambda: self._portal.push_status(data), patience)
        except SyncError as error:
            if error.affects_every_record:  # as for a record alone in _bisect: past its deadline
                raise self._gave_up(error, patience) from None
            raise

    async def push_statistic(self, record: Mapping[str, Any]) -> None:
        """UpdateStatistic for one agency × month, protected like a record push: service-wide errors are waited
        out until the record's deadline. Raises the record's own error, or DeadlineExceeded."""
        patience = RetryHistory(service=PUSH_STATISTIC)
        try:
            await self.call(PUSH_STATISTIC, lambda: self._portal.push_statistic(record), patience)
        except SyncError as error:
            if error.affects_every_record:
                raise self._gave_up(error, patience) from None
            raise

    async def push_steps(self, groups: list[list[dict[str, Any]]],
                         settle: Settle[None]) -> list[BaseException | None]:
        """CapNhatTienDoHoSoMC for a batch of step groups (each one dossier's steps, in order)."""
        results: list[BaseException | None] = [None] * len(groups)

        async def send(chunk: list[list[dict[str, Any]]]) -> None:
            await self._portal.push_progress([step for group in chunk for step in group])

        def settle_group(i: int, answer: BaseException | None) -> None:
            results[i] = answer
            settle(i, answer)

        await self._bisect("CapNhatTienDoHoSoMC", groups, send, settle_group)
        return results

    async def _bisect(
        self, service: str, items: list[X], send: Callable[[list[X]], Awaitable[R]],
        settle: Callable[[int, R | BaseException], None], start: int = 0, patience: RetryHistory | None = None,
    ) -> None:
        """One bad record must not fail the others: split a refused batch until the refused ones remain.
        A batch that keeps failing retryably while the adapter is otherwise healthy is split too, and a
        record that still fails alone past its deadline becomes its own failure. Each item is settled
        (``settle(start + i, answer)``) as soon as its answer is known."""
        patience = patience or RetryHistory()
        patience.service, patience.single = service, len(items) == 1
        try:
            answer = await self.call(service, lambda: send(items), patience)
        except SyncError as error:
            if len(items) == 1:
                settle(start, self._gave_up(error, patience) if error.affects_every_record else error)
                return
        else:
            for i in range(len(items)):
                settle(start + i, answer)
            return
        middle = len(items) // 2
        # Side by side: the half without the bad record must not wait for the other half's deadline.
        await asyncio.gather(
            self._bisect(service, items[:middle], send, settle, start, patience.for_half()),
            self._bisect(service, items[middle:], send, settle, start + middle, patience.for_half()))

    def _counts_against_the_adapter(self, service: str, patience: RetryHistory) -> bool:
        """A first failure, a failed probe, or a batch that nothing of its service has got past since it
        began count in the breaker. The retries of a single record do not: one record failing alone must
        not open the breaker for everyone else."""
        if patience.attempts == 0 or self._breaker.state(self._clock()) != "closed":
            return True
        return not patience.single and self._answers[service] == patience.answers_at_first_failure

    def _gave_up(self, last: SyncError, patience: RetryHistory) -> DeadlineExceeded:
        healthy = self._breaker.healthy_seconds(self._clock()) - (patience.healthy_at_first_failure or 0.0)
        return DeadlineExceeded(last, attempts=patience.attempts, seconds=healthy)

    def _give_up(self, patience: RetryHistory) -> bool:
        """Has this batch (or record) failed retryably long enough, while the adapter was otherwise
        healthy, to be the trouble itself?"""
        now = self._clock()
        patience.attempts += 1
        if patience.healthy_at_first_failure is None:
            patience.healthy_at_first_failure = self._breaker.healthy_seconds(now)
            patience.answers_at_first_failure = self._answers[patience.service]
        if not patience.single:
            # Splitting costs only calls; but not while the breaker is open (an outage): batches that
            # would go out as single records afterwards would drain the backlog slowly.
            if self._breaker.state(now) == "closed":
                patience.failures_while_closed += 1
            return patience.failures_while_closed >= self._settings.retry.split_batch_after_attempts
        if self._answers[patience.service] == patience.answers_at_first_failure:
            return False  # nothing got through since: the adapter is down, not this record
        waited = self._breaker.healthy_seconds(now) - patience.healthy_at_first_failure
        return waited >= self._settings.retry.record_deadline_seconds

    async def call(self, service: str, send: Callable[[], Awaitable[T]], patience: RetryHistory) -> T:
        """One adapter call, retried while the cause is service-wide; record-level errors are raised, and
        so is the service-wide one once ``patience`` says the call itself is the trouble."""

        def on_retry(svc: str, reason: str, attempt: int) -> None:
            self._metrics.retries.labels(svc, reason).inc()
            if patience not in self._waiting:
                self._waiting.add(patience)
                self._metrics.service_waits.labels(reason).inc()
            self._metrics.waiting.set(1 if self.unavailable else 0)

        try:
            return await call_with_retries(
                lambda: self._attempt(service, send, patience), service=service, policy=self._settings.retry,
                on_retry=on_retry, give_up=lambda _error, _attempt: self._give_up(patience))
        finally:
            if patience in self._waiting:
                self._waiting.discard(patience)
                self._metrics.waiting.set(1 if self.unavailable else 0)

    async def _attempt(self, service: str, send: Callable[[], Awaitable[T]], patience: RetryHistory) -> T:
        now = self._clock()
        if not self._breaker.allow(now):
            raise BreakerOpen("the adapter is failing; calls are held back", reason="circuit_open",
                              retry_after=max(self._breaker.seconds_until_probe(now), 0.1))
        async with self._concurrency:
            try:
                result = await send()
            except SyncError as error:
                if not error.affects_every_record:
                    self._answers[service] += 1
                    self._breaker.record_success(self._clock())  # it answered: it is up
                elif self._counts_against_the_adapter(service, patience):
                    self._breaker.record_failure(self._clock())
                raise
        self._answers[service] += 1
        self._breaker.record_success(self._clock())
        return result


@dataclass(frozen=True)
class Adapter:
    """The national portal's adapter as the daemon uses it: the client, the audit trail of its calls, and the
    gateway every call goes through."""

    client: PortalClient
    audit: AuditTrail
    gateway: PortalGateway


def open_gateway(settings: Settings, store: StateStore, metrics: Metrics, stack: contextlib.AsyncExitStack) -> Adapter:
    """The adapter client behind a gateway of its own, its calls in the audit trail; closed by ``stack`` (the
    audit trail after the client, so that its last calls are flushed too)."""
    audit = AuditTrail(store, metrics, retention_days=settings.state.audit_retention_days)
    stack.push_async_callback(audit.close)
    client = PortalClient(settings.portal, observer=metrics.observe_portal_call, auditor=audit.record)
    stack.push_async_callback(client.close)
    return Adapter(client, audit, PortalGateway(client, settings.portal, metrics))
