import asyncio

from connector.batching import MicroBatcher


class Recorder:
    def __init__(self, refuse: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.refuse = refuse or set()

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        return [ValueError(f"refused {i}") if i in self.refuse else i * 10 for i in items]


async def run(batcher: MicroBatcher, items: list[int]) -> list:
    batcher.start()
    try:
        return await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True), timeout=10)
    finally:
        await batcher.close()


async def test_each_submitter_gets_its_own_result_and_batches_respect_the_count() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder.send, max_weight=4, max_bytes=10**6, linger_seconds=0.05,
                           max_concurrent_batches=2)
    results = await run(batcher, list(range(10)))
    assert results == [i * 10 for i in range(10)]
    assert all(len(b) <= 4 for b in recorder.batches)
    assert sorted(i for b in recorder.batches for i in b) == list(range(10))
    assert [i for b in recorder.batches for i in b] == list(range(10))  # submission order kept


async def test_an_error_for_one_item_reaches_only_its_submitter() -> None:
    recorder = Recorder(refuse={3})
    batcher = MicroBatcher(recorder.send, max_weight=100, max_bytes=10**6, linger_seconds=0.05,
                           max_concurrent_batches=1)
    results = await run(batcher, [1, 2, 3, 4])
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], ValueError)


async def test_the_byte_limit_splits_batches() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder.send, max_weight=100, max_bytes=25, linger_seconds=0.05,
                           max_concurrent_batches=1, size_of=lambda _i: 10)
    await run(batcher, list(range(6)))
    assert [len(b) for b in recorder.batches] == [2, 2, 2]


async def test_weights_count_towards_the_limit() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder.send, max_weight=5, max_bytes=10**6, linger_seconds=0.05,
                           max_concurrent_batches=1, weight_of=lambda i: i)
    await run(batcher, [3, 2, 4, 1])
    assert recorder.batches == [[3, 2], [4, 1]]


async def test_a_failing_send_fails_every_item_of_that_batch() -> None:
    async def broken(items: list[int]) -> list[int]:
        raise RuntimeError("down")

    batcher = MicroBatcher(broken, max_weight=10, max_bytes=10**6, linger_seconds=0.01, max_concurrent_batches=1)
    results = await run(batcher, [1, 2])
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_close_cancels_waiting_submitters() -> None:
    never = asyncio.Event()

    async def stuck(items: list[int]) -> list[int]:
        await never.wait()
        return items

    batcher = MicroBatcher(stuck, max_weight=10, max_bytes=10**6, linger_seconds=0.0, max_concurrent_batches=1)
    batcher.start()
    waiter = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # let it be collected
    await asyncio.wait_for(batcher.close(), timeout=5)
    done, _ = await asyncio.wait({waiter}, timeout=5)
    assert waiter in done and waiter.cancelled()


async def test_a_settling_send_answers_items_before_the_batch_is_done() -> None:
    release = asyncio.Event()
    early: list[int] = []

    async def send(items: list[int], settle) -> list[int]:
        settle(0, items[0] * 10)  # the first is known at once; the rest waits
        await release.wait()
        return [i * 10 for i in items]

    batcher = MicroBatcher.settling(send, max_weight=10, max_bytes=10**6, linger_seconds=0.01,
                                    max_concurrent_batches=1)
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.submit(1))
        rest = asyncio.ensure_future(batcher.submit(2))
        early.append(await asyncio.wait_for(first, timeout=5))
        assert not rest.done()
        release.set()
        assert await asyncio.wait_for(rest, timeout=5) == 20
    finally:
        await batcher.close()
    assert early == [10]
