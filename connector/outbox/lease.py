"""Work only one instance may do at a time, under a lease in the state store.

Publishing the outbox, polling the portal and querying the Payment Platform must each run in one place:
two relays would send the same owed messages. Instances sharing a PostgreSQL store elect one holder; it
renews the lease well before it lapses, and when it stops (or can no longer renew) its loops are told to
stop and another instance takes over once the lease has lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connector.retry import wait_any
from connector.store.way_back import InboundStore

log = structlog.get_logger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def holder_name() -> str:
    """This process, recognisably (host and pid) and uniquely (a restart is another holder)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, inbound: InboundStore, name: str, *, ttl_seconds: float = 30.0,
                 holder: str | None = None, solo: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # solo: the store is this instance's alone (a SQLite file), so the lease is ours at once: a restart
        # after a crash must not wait for the crashed process's lease to lapse.
        self._solo = solo
        self._inbound = inbound
        self._name = name
        self._ttl = ttl_seconds
        self.holder = holder or holder_name()
        self._clock = clock
        self.leading = False

    async def run(self, stop: asyncio.Event, loops: Sequence[Loop], *, grace_seconds: float = 10.0) -> None:
        """Until ``stop``: take the lease when it is free, and run ``loops`` while it is held. Each loop gets an
        event that is set when it must stop (``stop``, the lease lost, or another loop ended: the loops run
        together or not at all, and start again together after a pause)."""
        renew_every = self._ttl / 3
        while not stop.is_set():
            if await self._take():
                stepping_down = asyncio.Event()
                tasks = [asyncio.create_task(loop(stepping_down)) for loop in loops]
                self.leading = True
                log.info("lease.taken", lease=self._name)
                try:
                    while not stop.is_set() and not any(task.done() for task in tasks):
                        await wait_any(stop, seconds=renew_every)
                        if not stop.is_set() and not await self._take():
                            log.warning("lease.lost", lease=self._name)
                            break
                finally:
                    self.leading = False
                    stepping_down.set()
                    await _finish(tasks, grace_seconds)
                    if stop.is_set():
                        with contextlib.suppress(Exception):
                            await self._inbound.release_lease(self._name, self.holder)
                failed = [task.exception() for task in tasks if not task.cancelled() and task.exception() is not None]
                for error in failed:
                    log.error("lease.loop_failed", lease=self._name, error=type(error).__name__)
                if failed:
                    await wait_any(stop, seconds=renew_every)  # not a hot loop on a failure that repeats
            else:
                await wait_any(stop, seconds=renew_every)

    async def _take(self) -> bool:
        if self._solo:
            return True
        now = self._clock()
        try:
            return await self._inbound.take_lease(self._name, self.holder, now=now,
                                                  until=now + timedelta(seconds=self._ttl))
        except Exception as error:  # noqa: BLE001 - a store that cannot be reached: not holding is the safe answer
            log.warning("lease.unavailable", lease=self._name, error=type(error).__name__)
            return False


async def _finish(tasks: Sequence[asyncio.Task[None]], grace_seconds: float) -> None:
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


__all__ = ["Lease", "holder_name"]
