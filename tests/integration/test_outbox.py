"""The way back's store and the outbox relay: each decision written once, each message published once, on
SQLite and PostgreSQL, against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from connector.config import KafkaSettings, Topics
from connector.kafka import build_producer, read_topic
from connector.observability import Metrics
from connector.outbox.lease import Lease
from connector.outbox.relay import MESSAGE_ID_HEADER, OutboxRelay, outbox_message
from connector.store import StateStore
from connector.store.way_back import InboundStore, PaymentRow, SubmissionKey
from tests.conftest import TopicFactory
from tests.databases import state_database

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def inbound(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[InboundStore]:
    async with state_database(request.param, tmp_path) as url:
        store = await StateStore.open(url)
        try:
            yield InboundStore(store)
        finally:
            await store.close()


def _message(no: str, revision: int, topic: str = "portal.submissions") -> object:
    return outbox_message(f"submission:{no}:{revision}", topic, no, {"no": no, "revision": revision},
                          event_type="submission.received", now=NOW)


async def test_a_revision_is_accepted_once_whoever_offers_it(inbound: InboundStore) -> None:
    key = SubmissionKey("000.00.01.H22-260101-0001", 1)
    first = await inbound.accept_submission(key, received_via="poll", agency_code="000.00.01.H22",
                                            submitted_at=NOW, message=_message(key.dossier_no, 1), now=NOW)
    again = await inbound.accept_submission(key, received_via="push", agency_code="000.00.01.H22",
                                            submitted_at=NOW, message=_message(key.dossier_no, 1), now=NOW)
    assert (first, again) == (True, False)
    assert [m.message_id for m in await inbound.unpublished()] == [f"submission:{key.dossier_no}:1"]


async def test_a_rejected_revision_can_be_accepted_later_and_a_rejection_never_undoes_an_acceptance(
        inbound: InboundStore) -> None:
    key = SubmissionKey("000.00.01.H22-260101-0002", 3)
    await inbound.reject_submission(key, received_via="poll", agency_code=None, reason="file_sha256_mismatch",
                                    field="TaiLieuNop[0]", message="sha256 differs", now=NOW)
    await inbound.reject_submission(key, received_via="poll", agency_code=None, reason="file_sha256_mismatch",
                                    field="TaiLieuNop[0]", message="sha256 differs", now=NOW)
    rejected = (await inbound.submission_states([key]))[key]
    assert (rejected.state, rejected.attempts, rejected.field) == ("rejected", 2, "TaiLieuNop[0]")
    assert await inbound.accept_submission(key, received_via="poll", agency_code=None, submitted_at=None,
                                           message=_message(key.dossier_no, 3), now=NOW)
    await inbound.reject_submission(key, received_via="push", agency_code=None, reason="schema", field="x",
                                    message="m", now=NOW)
    assert (await inbound.submission_states([key]))[key].state == "accepted"


async def test_every_published_revision_polled_or_pushed_waits_for_the_portal_to_be_told(
        inbound: InboundStore) -> None:
    polled, pushed = SubmissionKey("A.B-1", 1), SubmissionKey("A.B-2", 1)
    await inbound.accept_submission(polled, received_via="poll", agency_code=None, submitted_at=None,
                                    message=_message("A.B-1", 1), now=NOW)
    await inbound.accept_submission(pushed, received_via="push", agency_code=None, submitted_at=None,
                                    message=_message("A.B-2", 1), now=NOW)
    assert await inbound.unacknowledged() == []  # not on the topic yet
    from connector.store.way_back import Published
    await inbound.mark_published([Published("submission:A.B-1:1", 0, 7), Published("submission:A.B-2:1", 0, 8)],
                                 NOW)
    assert [(r.dossier_no, r.published) for r in await inbound.unacknowledged()] == [("A.B-1", True),
                                                                                     ("A.B-2", True)]
    await inbound.mark_acknowledged([polled, pushed], NOW)
    assert await inbound.unacknowledged() == []
    states = await inbound.submission_states([polled, pushed])
    assert [states[key].state for key in (polled, pushed)] == ["acknowledged", "acknowledged"]


async def test_a_payment_is_decided_once_whichever_path_comes_first(inbound: InboundStore) -> None:
    row = PaymentRow("REF-1", "A.B-1", 150_000, "VND", NOW, NOW + timedelta(days=1), "e1", "pending",
                     NOW + timedelta(seconds=30), 0, None, None, None)
    assert await inbound.register_payment(row, NOW) is None
    held = await inbound.register_payment(row, NOW)
    assert held is not None and held.amount == 150_000
    message = outbox_message("payment:REF-1", "portal.payments", "A.B-1", {"x": 1}, event_type="payment.confirmed",
                             now=NOW)
    results = await asyncio.gather(
        inbound.decide_payment("REF-1", "confirmed", by="callback", message=message, now=NOW),
        inbound.decide_payment("REF-1", "failed", by="query", message=message, now=NOW))
    assert sorted(results) == [False, True]
    assert len(await inbound.unpublished()) == 1
    assert (await inbound.payment("REF-1")).state in ("confirmed", "failed")
    assert await inbound.due_payments(NOW + timedelta(days=2)) == []


async def test_one_lease_holder_at_a_time_until_it_lapses(inbound: InboundStore) -> None:
    until = NOW + timedelta(seconds=30)
    assert await inbound.take_lease("way-back", "one", now=NOW, until=until)
    assert not await inbound.take_lease("way-back", "two", now=NOW + timedelta(seconds=10), until=until)
    assert await inbound.take_lease("way-back", "one", now=NOW + timedelta(seconds=10), until=until)
    assert await inbound.take_lease("way-back", "two", now=NOW + timedelta(seconds=31),
                                    until=NOW + timedelta(seconds=60))
    await inbound.release_lease("way-back", "two")
    assert await inbound.take_lease("way-back", "three", now=NOW + timedelta(seconds=32),
                                    until=NOW + timedelta(seconds=60))


async def _topic_ids(settings: KafkaSettings, topic: str) -> list[str]:
    ids: list[str] = []
    async for batch in read_topic(settings, topic, wait_seconds=20):
        for record in batch:
            ids.extend(v.decode() for k, v in record.headers if k == MESSAGE_ID_HEADER and v is not None)
    return ids


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = build_producer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await asyncio.wait_for(started.start(), 20)
    yield started
    await asyncio.wait_for(started.stop(), 20)


async def test_the_relay_publishes_in_order_and_a_crash_after_the_send_is_not_a_second_send(
        tmp_path, kafka_bootstrap: str, topics: TopicFactory, producer: AIOKafkaProducer) -> None:
    topic = await topics.create("portal.submissions", partitions=3)
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topics=Topics(submissions=topic))
    store = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    try:
        inbound = InboundStore(store)
        for n in range(1, 6):
            key = SubmissionKey(f"A.B-{n % 2}", n)
            await inbound.accept_submission(key, received_via="poll", agency_code=None, submitted_at=None,
                                            message=_message(key.dossier_no, n, topic), now=datetime.now(UTC))
        # A crash between the broker's acknowledgement and the mark: the first two are on the topic, unmarked.
        for message in (await inbound.unpublished())[:2]:
            await producer.send_and_wait(topic, value=message.value, key=message.key, headers=list(message.headers))

        relay = OutboxRelay(inbound, producer, settings, Metrics())
        assert await relay.publish_owed() == 3  # after recovery found two on the topic
        assert await relay.publish_owed() == 0
        ids = await _topic_ids(settings, topic)
        assert sorted(ids) == sorted(f"submission:A.B-{n % 2}:{n}" for n in range(1, 6))
        for no in ("A.B-0", "A.B-1"):  # one dossier's revisions in the order they were accepted
            revisions = [int(i.rsplit(":", 1)[1]) for i in ids if i.startswith(f"submission:{no}:")]
            assert revisions == sorted(revisions)
        assert await inbound.outbox_backlog() == 0
    finally:
        await store.close()


async def test_the_lease_runs_the_loops_on_one_instance_only(tmp_path) -> None:
    store = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    try:
        inbound = InboundStore(store)
        running: list[str] = []
        started = asyncio.Event()

        def loop_of(name: str):
            async def loop(stepping_down: asyncio.Event) -> None:
                running.append(name)
                started.set()
                await stepping_down.wait()
                running.remove(name)
            return loop

        stop = asyncio.Event()
        first = Lease(inbound, "way-back", ttl_seconds=3)
        second = Lease(inbound, "way-back", ttl_seconds=3)
        tasks = [asyncio.create_task(first.run(stop, [loop_of("first")])),
                 asyncio.create_task(second.run(stop, [loop_of("second")]))]
        await asyncio.wait_for(started.wait(), 10)
        assert len(running) == 1
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert running == []
    finally:
        await store.close()
