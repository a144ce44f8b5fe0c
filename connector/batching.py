"""Micro-batching: many coroutines each submit one item and await its own result; the items travel to
the far side together, in batches bounded by count and bytes, after at most ``linger`` seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# ``send`` answers each item: a result, or the exception that belongs to that item alone. An exception
# raised by ``send`` itself fails the whole batch.
SendBatch = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]
# ``settle(index, result)`` hands one item its answer before the whole batch is done.
Settle = Callable[[int, "R | BaseException"], None]


class _Waiting(Generic[T, R]):
    __slots__ = ("item", "result", "size", "weight")

    def __init__(self, item: T, weight: int, size: int, result: asyncio.Future[R]) -> None:
        self.item = item
        self.weight = weight
        self.size = size
        self.result = result


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_weight: int,
        max_bytes: int,
        linger_seconds: float,
        max_concurrent_batches: int,
        weight_of: Callable[[T], int] = lambda _item: 1,
        size_of: Callable[[T], int] = lambda _item: 0,
    ) -> None:
        self._send: Callable[[list[T], Settle[R]], Awaitable[Sequence[R | BaseException]]] = (
            lambda items, _settle: send(items))
        self._max_weight = max_weight
        self._max_bytes = max_bytes
        self._linger = linger_seconds
        self._weight_of = weight_of
        self._size_of = size_of
        self._waiting: deque[_Waiting[T, R]] = deque()
        self._waiting_weight = 0
        self._waiting_bytes = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrent_batches)
        self._sending: set[asyncio.Task[None]] = set()
        self._taken: dict[asyncio.Task[None], list[_Waiting[T, R]]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    @classmethod
    def settling(
        cls,
        send: Callable[[list[T], Settle[R]], Awaitable[Sequence[R | BaseException]]],
        **options: Any,
    ) -> MicroBatcher[T, R]:
        """A batcher whose ``send`` may settle items early (``settle(index, result)``): a batch that is
        split must not hold the answered half hostage to the half still being retried."""
        batcher: MicroBatcher[T, R] = cls(_unused, **options)
        batcher._send = send
        return batcher

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._collect())

    async def close(self) -> None:
        """Stop collecting; batches on the wire and items still waiting are cancelled."""
        tasks = [t for t in (self._loop_task, *self._sending) if t is not None]
        taken = [entry for batch in self._taken.values() for entry in batch]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A batch whose task was cancelled before it ever ran still has submitters waiting.
        for entry in taken:
            entry.result.cancel()
        while self._waiting:
            self._waiting.popleft().result.cancel()
        self._waiting_weight = self._waiting_bytes = 0

    async def submit(self, item: T) -> R:
        waiting: _Waiting[T, R] = _Waiting(item, self._weight_of(item), self._size_of(item),
                                           asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._waiting_weight += waiting.weight
        self._waiting_bytes += waiting.size
        self._arrived.set()
        if self._waiting_weight >= self._max_weight or self._waiting_bytes >= self._max_bytes:
            self._full.set()
        return await waiting.result

    async def _collect(self) -> None:
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            # Linger only while the batch is not full: a backlog goes out at once. One timer per batch, not
            # one wake-up per arriving item.
            if self._waiting_weight < self._max_weight and self._waiting_bytes < self._max_bytes:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._full.wait()
            # The slot first: a close() while waiting for one then finds the items still waiting.
            await self._slots.acquire()
            batch = self._take_batch()
            task = asyncio.create_task(self._deliver(batch))
            self._sending.add(task)
            self._taken[task] = batch
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._taken.pop(task, None)

    def _take_batch(self) -> list[_Waiting[T, R]]:
        batch = [self._waiting.popleft()]  # always at least one, even if it alone is over a limit
        weight, size = batch[0].weight, batch[0].size
        while self._waiting:
            nxt = self._waiting[0]
            if weight + nxt.weight > self._max_weight or size + nxt.size > self._max_bytes:
                break
            batch.append(self._waiting.popleft())
            weight += nxt.weight
            size += nxt.size
        self._waiting_weight -= weight
        self._waiting_bytes -= size
        return batch

    async def _deliver(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            live = [entry for entry in batch if not entry.result.done()]  # submitters may have gone
            if not live:
                return
            def settle(index: int, result: R | BaseException) -> None:
                _set(live[index].result, result)

            try:
                results = await self._send([entry.item for entry in live], settle)
            except asyncio.CancelledError:
                for entry in live:
                    entry.result.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - handed to every submitter, who decides
                for entry in live:
                    if not entry.result.done():
                        entry.result.set_exception(error)
                return
            for entry, result in zip(live, results, strict=True):
                _set(entry.result, result)
        finally:
            self._slots.release()


def _set(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


async def _unused(_items: list[Any]) -> list[Any]:
    raise AssertionError("a settling batcher sends through its own function")  # pragma: no cover
