"""Payments end to end: payment.requested on a real broker → the state store (SQLite) → the Payment Platform
simulator's callbacks on our public listener and its QUERY replies → exactly one outcome per reference on
``portal.payments``, whichever path learns it first. Hostile notifications publish nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.config import Settings, load_settings
from connector.failures import FailureRecorder
from connector.kafka import DeadLetterQueue, build_producer, read_topic
from connector.listeners import create_public_app, start_public
from connector.national_time import portal_time
from connector.observability import Metrics
from connector.outbox.relay import EVENT_TYPE_HEADER, MESSAGE_ID_HEADER, OutboxRelay
from connector.payments.checksum import NOTIFICATION_FIELDS, REPLY_FIELDS, checksum, signed, verify
from connector.payments.messages import outcome_errors, outcome_event_id
from connector.payments.platform import PaymentPlatformClient
from connector.payments.requests import PaymentRequestConsumer, build_request_consumer, payment_request_group
from connector.payments.tracker import PaymentTracker
from connector.store import StateStore
from connector.store.way_back import InboundStore
from tests.conftest import TopicFactory
from tests.factories import ConsumedRecord
from tests.integration.pipeline_harness import SIM
from tests.integration.served_in_thread import ServedInThread
from tests.kafkatools import GROUP_TIMING, produce, wait_for_committed

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
STEP = 10.0  # one bounded wait on a component (start, stop, a read)
AGENCY = "000.00.01.H22"


def pp_settings(sim_url: str) -> dict[str, Any]:
    return {"enabled": True, "platform_url": sim_url, "query_path": SIM.pp_query_path,
            "partner_code": SIM.pp_partner_code, "secret": SIM.pp_secret, "timeout_seconds": 5,
            "query_initial_seconds": 0.2, "query_max_seconds": 1.5, "expiry_seconds": 3600,
            "scan_interval_seconds": 0.2, "max_concurrent_queries": 8}


def request_message(reference: str, *, no: str, amount: int, requested_at: datetime,
                    expires_at: datetime | None = None) -> tuple[bytes, bytes]:
    payment: dict[str, Any] = {"dossier_no": no, "reference": reference, "amount": amount, "currency": "VND",
                               "requested_at": requested_at.isoformat()}
    if expires_at is not None:
        payment["expires_at"] = expires_at.isoformat()
    document = {"schema_version": 1, "event_id": str(uuid.uuid4()), "event_type": "payment.requested",
                "occurred_at": requested_at.isoformat(), "source": "motcua", "payment": payment}
    return no.encode(), json.dumps(document).encode()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.05)


@dataclass
class Outcome:
    message_id: str
    event_type: str
    key: str
    document: dict[str, Any]


@dataclass
class Desk:
    """One portal-sync's payment side, running: request consumer, desk (callbacks and QUERYs), relay."""

    settings: Settings
    store: StateStore
    inbound: InboundStore
    desk: PaymentTracker
    metrics: Metrics
    notify_url: str
    sim_url: str
    http: aiohttp.ClientSession

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.sim_url + path, json=body) as response:
            assert response.status in (200, 201), (path, response.status, await response.text())
            return await response.json()

    async def platform_knows(self, payments: list[dict[str, Any]]) -> None:
        await self.sim("POST", "/_sim/payments", {"payments": payments})

    async def callback(self, reference: str, checksum: str = "valid", **overrides: Any) -> dict[str, Any]:
        """The simulator posts a result notification to us; returns our reply (checked to be signed). Like the
        Payment Platform, it sends the notification again while we answer 503 (the state store busy)."""
        for _ in range(20):
            answer = await self.sim("POST", f"/_sim/payments/{reference}/callback",
                                    {"url": self.notify_url, "checksum": checksum, **overrides})
            if answer["status"] != 503:
                break
            assert answer["reply"]["MaLoi"] == "99" and answer["reply"]["MaThamChieu"] == reference, answer
        reply: dict[str, Any] = answer["reply"]
        assert set(reply) == {"MaLoi", "MoTaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD", "MaXacThuc"}, answer
        verify(reply, REPLY_FIELDS, SIM.pp_secret)
        assert reply["MaDoiTac"] == SIM.pp_partner_code
        return reply

    async def request(self, *messages: tuple[bytes, bytes]) -> dict[int, int]:
        return await produce(self.settings.kafka.bootstrap_servers, self.settings.kafka.topics.payment_requests,
                             list(messages))

    async def state(self, reference: str) -> str | None:
        row = await self.inbound.payment(reference)
        return None if row is None else row.state

    async def settled(self, count: int, timeout: float) -> None:
        async def done() -> bool:
            counts = await self.inbound.payment_counts()
            return sum(counts.values()) >= count and counts.get("pending", 0) == 0

        await wait_until(done, timeout, "every payment settled")
        await wait_until(lambda: self._no_backlog(), timeout, "the outbox published")

    async def _no_backlog(self) -> bool:
        return await self.inbound.outbox_backlog() == 0

    async def outcomes(self) -> list[Outcome]:
        found: list[Outcome] = []
        async for batch in read_topic(self.settings.kafka, self.settings.kafka.topics.payments, wait_seconds=20):
            for record in batch:
                headers = {k: (v or b"").decode() for k, v in record.headers}
                found.append(Outcome(headers[MESSAGE_ID_HEADER], headers[EVENT_TYPE_HEADER], record.key.decode(),
                                     json.loads(record.value)))
        return found

    def counted(self, counter: Any, *labels: str) -> float:
        return counted(self.metrics, counter, *labels)


@contextlib.asynccontextmanager
async def running_desk(tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, sim_url: str,
                       **payments: Any) -> AsyncIterator[Desk]:
    requests_topic = await topics.create("payment.requests", partitions=3)
    payments_topic = await topics.create("portal.payments", partitions=3)
    dlq = await topics.create("payment.requests.dlq")
    settings = load_settings(None, **{
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": topics.group_id(), **GROUP_TIMING,
                  "topics": {"payment_requests": requests_topic, "payments": payments_topic, "dead_letter": dlq}},
        "portal": {"retry": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.5}},
        "state": {"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
        "payments": {**pp_settings(sim_url), **payments},
        "public": {"listen": "127.0.0.1:0", "allow_unauthenticated": True},  # the notification is checksummed
    })
    metrics = Metrics()
    store = await StateStore.open(settings.state.url)
    inbound = InboundStore(store)
    producer = build_producer(settings.kafka)
    await asyncio.wait_for(producer.start(), STEP)
    consumer = build_request_consumer(settings)
    await asyncio.wait_for(consumer.start(), STEP)
    client = PaymentPlatformClient(settings.payments)
    relay = OutboxRelay(inbound, producer, settings.kafka, metrics)
    desk = PaymentTracker(settings, inbound, relay, client, metrics)
    failures = FailureRecorder(store, DeadLetterQueue(producer, dlq), settings.portal.retry, origin="payments")
    requests = PaymentRequestConsumer(settings, desk, consumer, failures, metrics)
    app = create_public_app(metrics=metrics, submissions_path=settings.public.submissions_path,
                            payments_path=settings.public.payments_path, intake=None, payments=desk,
                            max_submission_bytes=1 << 20)
    runner, base_url = await start_public(app, "127.0.0.1", 0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(requests.run(stop)), asyncio.create_task(desk.run(stop)),
             asyncio.create_task(relay.run(stop, interval=0.1))]
    try:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            yield Desk(settings, store, inbound, desk, metrics, base_url + settings.public.payments_path, sim_url,
                       http)
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await runner.cleanup()
        await asyncio.wait_for(consumer.stop(), STEP)
        await asyncio.wait_for(producer.stop(), STEP)
        await client.close()
        await store.close()
    for result in results:  # a loop that died is a failure of the test, not a quiet stop
        assert not isinstance(result, BaseException), repr(result)


def counted(metrics: Metrics, counter: Any, *labels: str) -> float:
    """A counter's value, read the way Prometheus scrapes it."""
    name = counter._name + "_total"
    value = metrics.registry.get_sample_value(name, dict(zip(counter._labelnames, labels, strict=True)))
    return value or 0.0


def test_the_query_backoff_doubles_with_full_jitter_up_to_its_cap() -> None:
    settings_ = load_settings(None, payments={**pp_settings("http://127.0.0.1:9"), "query_initial_seconds": 2,
                                              "query_max_seconds": 60})
    desk = PaymentTracker(settings_, None, None, None, Metrics(), rng=random.Random(7))  # type: ignore[arg-type]
    for queries, cap in ((0, 2), (1, 4), (2, 8), (4, 32), (5, 60), (40, 60), (10_000, 60)):
        waits = [desk.backoff(queries) for _ in range(2000)]
        assert all(1.0 <= w <= cap for w in waits), queries  # never sooner than min(initial, 1 s)
        assert max(waits) > cap * 0.9 and min(waits) <= max(1.0, cap * 0.1), queries  # spread over it all


def spec(reference: str, amount: int, outcome: str, pending_queries: int = 0) -> dict[str, Any]:
    return {"MaThamChieu": reference, "SoTien": amount, "outcome": outcome, "pending_queries": pending_queries}


# --- the callback path -----------------------------------------------------------------------------------

@pytest.mark.broker
async def test_a_callback_is_checked_then_settles_once_and_a_second_one_is_refused(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url) as pp:
        no = f"{AGENCY}-261124-0001"
        await pp.platform_knows([spec("PAY-1", 150_000, "paid", pending_queries=10_000)])
        await pp.request(request_message("PAY-1", no=no, amount=150_000, requested_at=datetime.now(UTC)))
        await wait_until(lambda: _is(pp.state("PAY-1"), "pending"), 30, "the request registered")

        forged = await pp.callback("PAY-1", checksum="wrong")
        assert (forged["MaLoi"], forged["MaThamChieu"]) == ("99", "PAY-1")
        assert await pp.state("PAY-1") == "pending" and await pp.inbound.outbox_backlog() == 0

        for overrides, reason in (({"SoTien": 149_999}, "amount_mismatch"), ({"MaDoiTac": "SOMEONE"},
                                                                               "partner_mismatch")):
            reply = await pp.callback("PAY-1", **overrides)
            assert reply["MaLoi"] == "99"
            assert pp.counted(pp.metrics.payment_notifications, reason) == 1
        assert await pp.state("PAY-1") == "pending"

        with structlog.testing.capture_logs() as logged:
            answer = await pp.sim("POST", "/_sim/payments/PAY-1/callback", {"url": pp.notify_url})
        accepted, sent = answer["reply"], answer["sent"]
        assert (accepted["MaLoi"], accepted["MaThamChieu"]) == ("00", "PAY-1")
        # What the log lines hold, before any redaction: no checksum, secret, amount or free text.
        text = json.dumps(logged, default=str, ensure_ascii=False)
        assert any(line.get("result") == "accepted" for line in logged)
        for never in (sent["MaXacThuc"], accepted["MaXacThuc"], SIM.pp_secret, "150000", sent["ThongTinGiaoDich"]):
            assert never not in text
        again = await pp.callback("PAY-1")
        assert again["MaLoi"] == "99"
        assert pp.counted(pp.metrics.payment_notifications, "replayed") == 1
        assert pp.counted(pp.metrics.payment_notifications, "forged") == 1

        await pp.settled(1, 30)
        [outcome] = await pp.outcomes()
        assert (outcome.message_id, outcome.event_type, outcome.key) == ("payment:PAY-1", "payment.confirmed", no)
        assert outcome_errors(outcome.document) == []
        assert outcome.document["event_id"] == outcome_event_id("PAY-1")
        paid = outcome.document["payment"]
        assert (paid["learnt_via"], paid["amount"], paid["dossier_no"]) == ("callback", 150_000, no)
        assert paid["paid_at"].endswith("+07:00") and paid["transaction_id"]
        assert pp.counted(pp.metrics.payment_outcomes, "confirmed", "callback") == 1


@pytest.mark.broker
async def test_a_callback_for_a_payment_we_never_requested_is_refused(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url) as pp:
        await pp.platform_knows([spec("NOT-OURS", 10_000, "paid")])
        reply = await pp.callback("NOT-OURS")
        assert (reply["MaLoi"], reply["MaThamChieu"]) == ("99", "NOT-OURS")
        assert pp.counted(pp.metrics.payment_notifications, "unknown_reference") == 1
        assert await pp.inbound.outbox_backlog() == 0


# --- the QUERY path --------------------------------------------------------------------------------------

@pytest.mark.broker
async def test_pending_payments_are_queried_until_paid_or_failed_and_expire_when_their_time_is_up(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url) as pp:
        now = datetime.now(UTC)
        await pp.platform_knows([spec("Q-PAID", 20_000, "paid", 2), spec("Q-FAILED", 30_000, "failed", 1),
                                 spec("Q-LATE", 40_000, "pending")])
        await pp.request(
            request_message("Q-PAID", no=f"{AGENCY}-1", amount=20_000, requested_at=now),
            request_message("Q-FAILED", no=f"{AGENCY}-2", amount=30_000, requested_at=now),
            request_message("Q-LATE", no=f"{AGENCY}-3", amount=40_000, requested_at=now,
                            expires_at=now + timedelta(seconds=2)))
        await pp.settled(3, 60)
        by_reference = {o.document["payment"]["reference"]: o for o in await pp.outcomes()}
        assert {r: (o.event_type, o.document["payment"]["learnt_via"]) for r, o in by_reference.items()} == {
            "Q-PAID": ("payment.confirmed", "query"), "Q-FAILED": ("payment.failed", "query"),
            "Q-LATE": ("payment.expired", "expiry")}
        for outcome in by_reference.values():
            assert outcome_errors(outcome.document) == []
        assert by_reference["Q-FAILED"].document["payment"]["error_code"]
        views = await pp.sim("GET", "/_sim/payments")
        assert views["Q-PAID"]["queries"] == 3 and views["Q-FAILED"]["queries"] == 2
        assert views["Q-LATE"]["queries"] >= 1  # the last QUERY before expiring it
        assert pp.counted(pp.metrics.payment_queries, "pending") >= 3


@pytest.mark.broker
async def test_a_paid_answer_for_another_amount_leaves_the_payment_pending(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url) as pp:
        await pp.platform_knows([spec("Q-ODD", 99_000, "paid")])
        await pp.request(request_message("Q-ODD", no=f"{AGENCY}-9", amount=100_000, requested_at=datetime.now(UTC),
                                         expires_at=datetime.now(UTC) + timedelta(seconds=1)))

        async def queried_past_expiry() -> bool:
            views = await pp.sim("GET", "/_sim/payments")
            return views.get("Q-ODD", {}).get("queries", 0) >= 3

        await wait_until(queried_past_expiry, 30, "several QUERYs")
        assert await pp.state("Q-ODD") == "pending"  # not confirmed, and not expired while it says paid
        assert pp.counted(pp.metrics.payment_queries, "amount_mismatch") >= 3
        assert await pp.inbound.outbox_backlog() == 0


# --- the requests --------------------------------------------------------------------------------------

@pytest.mark.broker
async def test_requests_are_registered_once_and_invalid_ones_dead_lettered_before_offsets_move(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url, query_initial_seconds=600) as pp:
        now = datetime.now(UTC)
        no = f"{AGENCY}-77"
        valid = request_message("R-1", no=no, amount=5_000, requested_at=now)
        conflict = request_message("R-1", no=no, amount=6_000, requested_at=now)
        wrong_key = (b"another-dossier", request_message("R-2", no=no, amount=5_000, requested_at=now)[1])
        offsets = await pp.request(valid, valid, conflict, wrong_key, (no.encode(), b"{not json"),
                                   (no.encode(), b"\xff" * 100_000))
        await wait_for_committed(kafka_bootstrap, payment_request_group(pp.settings),
                                 pp.settings.kafka.topics.payment_requests, offsets, timeout=60)
        row = await pp.inbound.payment("R-1")
        assert row is not None and (row.amount, row.dossier_no, row.state) == (5_000, no, "pending")
        assert row.next_query_at is not None and row.next_query_at > now + timedelta(seconds=599)
        assert row.requested_at == now and row.expires_at == now + timedelta(seconds=3600)
        assert await pp.inbound.payment("R-2") is None

        failures = await pp.store.failures()
        assert sorted(f["reason"] for f in failures) == sorted(
            ["reference_conflict", "key_mismatch", "malformed_json", "too_large"])
        dead = [r async for batch in read_topic(pp.settings.kafka, pp.settings.kafka.topics.dead_letter,
                                                wait_seconds=20) for r in batch]
        reasons = sorted(dict(r.headers)["__connect.errors.reason"].decode() for r in dead)
        assert reasons == sorted(["reference_conflict", "key_mismatch", "malformed_json", "too_large"])
        assert [pp.counted(pp.metrics.payment_requests, r) for r in ("registered", "duplicate")] == [1, 1]


# --- acceptance --------------------------------------------------------------------------------------------

@pytest.mark.broker
async def test_acceptance_500_payments_each_published_once_whichever_path_learns_first(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    started = time.monotonic()
    rng = random.Random(500)
    now = datetime.now(UTC)
    groups: dict[str, list[str]] = {
        "callback_paid": [f"CB-PAID-{i:03d}" for i in range(150)],  # QUERY says pending: only a callback settles
        "callback_failed": [f"CB-FAIL-{i:03d}" for i in range(50)],
        "query_paid": [f"Q-PAID-{i:03d}" for i in range(150)],
        "query_failed": [f"Q-FAIL-{i:03d}" for i in range(75)],
        "expired": [f"EXP-{i:03d}" for i in range(50)],
        "race": [f"RACE-{i:03d}" for i in range(25)],  # QUERY says paid at once, and a callback comes too
    }
    assert sum(map(len, groups.values())) == 500
    amount = {ref: rng.randrange(1_000, 5_000_000) for refs in groups.values() for ref in refs}
    specs = ([spec(r, amount[r], "paid", 10_000) for r in groups["callback_paid"]]
             + [spec(r, amount[r], "failed", 10_000) for r in groups["callback_failed"]]
             + [spec(r, amount[r], "paid", rng.randrange(0, 4)) for r in groups["query_paid"]]
             + [spec(r, amount[r], "failed", rng.randrange(0, 3)) for r in groups["query_failed"]]
             + [spec(r, amount[r], "pending") for r in groups["expired"]]
             + [spec(r, amount[r], "paid") for r in groups["race"]])
    duplicated = groups["callback_paid"][:50]
    forged_first = groups["callback_paid"][50:100]
    forged_on_expiring = groups["expired"][:25]

    async with running_desk(tmp_path, kafka_bootstrap, topics, portal_url) as pp:
        await pp.platform_knows(specs)
        messages = [request_message(ref, no=f"{AGENCY}-261124-{i % 40:04d}", amount=amount[ref], requested_at=now,
                                    expires_at=now + timedelta(seconds=4) if ref.startswith("EXP") else None)
                    for i, ref in enumerate(sorted(amount))]
        rng.shuffle(messages)
        await pp.request(*messages)

        async def registered() -> bool:
            return sum((await pp.inbound.payment_counts()).values()) == 500

        await wait_until(registered, 60, "500 requests registered")
        registered_at = time.monotonic()

        slots = asyncio.Semaphore(16)
        replies: dict[str, list[str]] = {}

        async def call(ref: str, checksum: str = "valid", **overrides: Any) -> None:
            async with slots:
                reply = await pp.callback(ref, checksum, **overrides)
            assert reply["MaThamChieu"] == ref
            replies.setdefault(ref, []).append(reply["MaLoi"])

        async def forged_then_valid(ref: str) -> None:
            await call(ref, "wrong", MaLoi="00")
            assert await pp.state(ref) == "pending"  # a forged call changed nothing
            await call(ref)

        async def twice(ref: str) -> None:
            await call(ref)
            await call(ref)

        await asyncio.gather(
            *(twice(r) for r in duplicated), *(forged_then_valid(r) for r in forged_first),
            *(call(r) for r in groups["callback_paid"][100:]), *(call(r) for r in groups["callback_failed"]),
            *(call(r) for r in groups["race"]), *(call(r, "wrong", MaLoi="00") for r in forged_on_expiring))

        await pp.settled(500, 120)
        settled_at = time.monotonic()
        outcomes = await pp.outcomes()

        ids = Counter(o.message_id for o in outcomes)
        assert len(outcomes) == 500 and set(ids) == {f"payment:{r}" for r in amount}, ids.most_common(3)
        by_reference = {o.document["payment"]["reference"]: o for o in outcomes}
        expected = {"callback_paid": ("payment.confirmed", {"callback"}),
                    "callback_failed": ("payment.failed", {"callback"}),
                    "query_paid": ("payment.confirmed", {"query"}), "query_failed": ("payment.failed", {"query"}),
                    "expired": ("payment.expired", {"expiry"}), "race": ("payment.confirmed", {"callback", "query"})}
        for group, refs in groups.items():
            event_type, paths = expected[group]
            for ref in refs:
                outcome = by_reference[ref]
                assert outcome.event_type == outcome.document["event_type"] == event_type, (group, ref)
                assert outcome.document["payment"]["learnt_via"] in paths, (group, ref)
                assert outcome.document["payment"]["amount"] == amount[ref]
                assert outcome.key == outcome.document["payment"]["dossier_no"]
                assert outcome_errors(outcome.document) == [], ref

        # Every forged call was refused and published nothing; every duplicate was refused.
        assert all(replies[r] == ["00", "99"] for r in duplicated)
        assert all(replies[r] == ["99", "00"] for r in forged_first)
        assert all(replies[r] == ["99"] for r in forged_on_expiring)
        assert pp.counted(pp.metrics.payment_notifications, "forged") == 75
        assert pp.counted(pp.metrics.payment_notifications, "replayed") >= 50
        race_via = Counter(by_reference[r].document["payment"]["learnt_via"] for r in groups["race"])
        outcomes_total = sum(pp.counted(pp.metrics.payment_outcomes, o, p) for o in ("confirmed", "failed", "expired")
                             for p in ("callback", "query", "expiry"))
        assert outcomes_total == 500
        views = await pp.sim("GET", "/_sim/payments")
        assert all(views[r]["queries"] >= 1 for r in groups["expired"])  # one last QUERY before expiring
    total = time.monotonic() - started
    print(f"\nacceptance: 500 payments settled {settled_at - registered_at:.1f}s after registration; "
          f"{total:.1f}s in all; race won by {dict(race_via)}")


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


# --- hostile bodies at the public endpoint -----------------------------------------------------------------

class PublicEndpoint(ServedInThread):
    """The public app with a desk over a SQLite store, served from a loop of its own (so that hypothesis,
    which is synchronous, can throw bodies at it over real HTTP)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path
        self.genuine: dict[str, Any] = {}

    async def _start(self) -> None:
        self.settings = load_settings(None, **{
            "state": {"url": f"sqlite+aiosqlite:///{self.tmp_path / 'state.db'}"},
            "payments": pp_settings("http://127.0.0.1:9")})
        self.store = await StateStore.open(self.settings.state.url)
        self.inbound = InboundStore(self.store)
        self.metrics = Metrics()
        relay = OutboxRelay(self.inbound, None, self.settings.kafka, self.metrics)  # never runs: nothing to send
        self.client = PaymentPlatformClient(self.settings.payments)
        desk = PaymentTracker(self.settings, self.inbound, relay, self.client, self.metrics)
        for offset, reference in enumerate(("PAY-H", "PAY-C")):
            message = request_message(reference, no=f"{AGENCY}-1", amount=1_500_000, requested_at=datetime.now(UTC))
            record = ConsumedRecord(self.settings.kafka.topics.payment_requests, 0, offset, *message, ())
            assert await desk.register(record) == "registered"
        # Genuine notifications: hypothesis changes PAY-H's, so it is never genuine again; PAY-C's is the
        # control, accepted as it is.
        self.genuine, self.control = (signed(
            {"LoaiBanTin": "NOTIFY", "MaLoi": "00", "MaDoiTac": SIM.pp_partner_code, "MaThamChieu": reference,
             "SoTien": "1500000", "MaTienTe": "VND", "MaGiaoDich": "T1", "MaNganHang": "VCB",
             "ThoiGianGD": portal_time(datetime.now(UTC)), "ThongTinGiaoDich": "Lệ phí"}, NOTIFICATION_FIELDS,
            SIM.pp_secret) for reference in ("PAY-H", "PAY-C"))
        app = create_public_app(metrics=self.metrics, submissions_path=self.settings.public.submissions_path,
                                payments_path=self.settings.public.payments_path, intake=None, payments=desk,
                                max_submission_bytes=1 << 20)
        self.runner, url = await start_public(app, "127.0.0.1", 0)
        self.port = int(url.rsplit(":", 1)[1])

    def post(self, body: bytes) -> tuple[int, Any]:
        return self.post_json(self.settings.public.payments_path, body)

    def nothing_published(self) -> bool:
        """PAY-H is pending and nothing but the control's outcome is owed."""
        async def check() -> bool:
            row = await self.inbound.payment("PAY-H")
            owed = {m.message_id for m in await self.inbound.unpublished()}
            return owed <= {"payment:PAY-C"} and row is not None and row.state == "pending"

        return bool(self.call(check()))

    async def _close(self) -> None:
        await self.runner.cleanup()
        await self.client.close()
        await self.store.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublicEndpoint]:
    served = PublicEndpoint(tmp_path_factory.mktemp("public"))
    served.start()
    yield served
    served.stop()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40) | st.sampled_from(["00", "PAY-H", "1500000", "VND", SIM.pp_partner_code, "a|b", "\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from([*NOTIFICATION_FIELDS, "MaXacThuc", "TrangThaiGD"]) | st.text(max_size=10), inner,
        max_size=6),
    max_leaves=12)


def _assert_refused(endpoint: PublicEndpoint, body: bytes) -> None:
    status, reply = endpoint.post(body)
    assert status == 200, (status, reply)
    assert isinstance(reply, dict) and reply["MaLoi"] == "99", reply
    assert set(reply) == {"MaLoi", "MoTaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD", "MaXacThuc"}
    verify(reply, REPLY_FIELDS, SIM.pp_secret)
    assert endpoint.nothing_published()


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_any_json_body_is_answered_99_in_the_platform_format(endpoint: PublicEndpoint, body: Any) -> None:
    _assert_refused(endpoint, json.dumps(body).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([*NOTIFICATION_FIELDS, "MaXacThuc"]), JSON)
def test_a_genuine_notification_with_any_field_changed_is_refused(endpoint: PublicEndpoint, field: str,
                                                                  value: Any) -> None:
    original = endpoint.genuine[field]
    if _text(value) == _text(original) or (value is None and original == ""):
        return  # the same message as far as the checksum goes
    _assert_refused(endpoint, json.dumps({**endpoint.genuine, field: value}).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.just(b"{" * 70_000) | st.just(b"[" * 5_000))
def test_bytes_that_are_not_json_are_answered_99(endpoint: PublicEndpoint, body: bytes) -> None:
    _assert_refused(endpoint, body)


def test_the_control_a_genuine_notification_is_accepted_once(endpoint: PublicEndpoint) -> None:
    """The endpoint does accept what is genuine (so the "99"s above are not those of a broken desk)."""
    status, reply = endpoint.post(json.dumps(endpoint.control).encode())
    assert (status, reply["MaLoi"], reply["MaThamChieu"]) == (200, "00", "PAY-C"), reply
    assert checksum(reply, REPLY_FIELDS, SIM.pp_secret) == reply["MaXacThuc"]
    status, reply = endpoint.post(json.dumps(endpoint.control).encode())
    assert (status, reply["MaLoi"]) == (200, "99")
    assert endpoint.nothing_published()

