"""The audit trail of adapter calls: in the state store, one row per call (service, the dossiers it named, a
digest of the request, the result, how long it took, the transport and the SOAP MessageID), pruned after
``state.audit_retention_days``.

Best effort on purpose: the trail must never slow or stop syncing. Rows wait in a bounded buffer and are
written in batches; if the store cannot keep up or is down, the oldest waiting rows are dropped and
counted (``portal_sync_audit_rows_dropped_total``). No personal data: the request is kept as a digest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connector.observability import Metrics
from connector.portal.client import CallRecord
from connector.store import StateStore

log = structlog.get_logger(__name__)

FLUSH_SECONDS = 1.0
MAX_WAITING = 20_000
PRUNE_SECONDS = 3600.0
CLOSE_SECONDS = 5.0  # the last flush's limit: a hung store must not hold the daemon's exit


class AuditTrail:
    def __init__(self, store: StateStore, metrics: Metrics, *, retention_days: int,
                 max_waiting: int = MAX_WAITING) -> None:
        self._store = store
        self._metrics = metrics
        self._retention = timedelta(days=retention_days)
        self._waiting: collections.deque[dict[str, Any]] = collections.deque()
        self._max_waiting = max_waiting
        self._writing = 0  # rows taken from the buffer, on their way to the store
        self._task: asyncio.Task[None] | None = None
        # One flush at a time: a flush that finds the buffer empty while another is writing its batch waits
        # for that batch, so "flushed" means in the store.
        self._flushing = asyncio.Lock()

    def record(self, call: CallRecord) -> None:
        """Called by the adapter client after every call; never blocks."""
        if len(self._waiting) >= self._max_waiting:
            self._waiting.popleft()
            self._metrics.audit_rows_dropped.inc()
        self._waiting.append({
            "at": call.at, "service": call.service, "dossiers": list(call.dossiers),
            "dossier_no": call.dossiers[0] if len(call.dossiers) == 1 else None, "records": call.records,
            "request_sha256": call.request_sha256, "result": call.result, "seconds": call.seconds,
            "transport": call.transport, "message_id": call.message_id})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            if self._writing:  # a batch cut off on its way to the store: not known to be written
                self._metrics.audit_rows_dropped.inc(self._writing)
                self._writing = 0
        try:  # a last flush; the store may be the reason we stop
            await asyncio.wait_for(self.flush(), timeout=CLOSE_SECONDS)
        except TimeoutError:
            lost = len(self._waiting) + self._writing
            self._waiting.clear()
            self._metrics.audit_rows_dropped.inc(lost)
            log.warning("audit rows dropped: the state store did not take the last ones in time", rows=lost)

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush_waiting()

    async def _flush_waiting(self) -> None:
        while self._waiting:
            batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), 1000))]
            self._writing = len(batch)  # stays set if we are cancelled on the way: close() counts them
            try:
                await self._store.record_portal_calls(batch)
            except Exception as error:  # noqa: BLE001 - best effort: count, tell, go on
                self._writing = 0
                self._metrics.audit_rows_dropped.inc(len(batch))
                log.warning("audit rows dropped: the state store refused them", rows=len(batch),
                            error=type(error).__name__)
                return
            self._writing = 0

    async def prune(self, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - self._retention
        return await self._store.prune_portal_calls(before=cutoff)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_SECONDS
                try:
                    pruned = await self.prune()
                except Exception as error:  # noqa: BLE001 - tried again at the next prune
                    log.warning("audit rows could not be pruned", error=type(error).__name__)
                else:
                    if pruned:
                        log.info("audit rows pruned", rows=pruned, retention_days=self._retention.days)
