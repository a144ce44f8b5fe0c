"""Poison events: an event that can never be synced ends as a recorded failure — a row in the state store's
failure table and a record on the DLQ, with the error and the attempts made — and its partition keeps
flowing, however small the in-flight bound."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.dev.samples import SampleMessage, generate_events, own_dossiers
from connector.kafka import ERROR_HEADER_PREFIX
from connector.push.mapping import load_mappings
from connector.service import Service
from connector.store import StateStore
from tests.factories import encode, event_dict
from tests.integration.pipeline_harness import (
    HTTP_TIMEOUT,
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    portal_dossiers,
    portal_stats,
    run_until_committed,
    unique_group,
    wait_until,
)
from tests.kafkatools import consume_all, produce, wait_for_committed

pytestmark = pytest.mark.broker

POISON = "000.00.01.G12-201005-0666"


@pytest.fixture
async def stream(topics) -> Topics:
    return Topics(await topics.create("dossier.events", partitions=2),
                  await topics.create("dossier.events.dlq", partitions=1), unique_group())


def poison_config(bootstrap, portal_url, stream, tmp_path) -> dict:
    config = daemon_config(bootstrap, portal_url, stream, tmp_path)
    config["portal"]["retry"] = {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.2,
                                 "split_batch_after_attempts": 2, "record_deadline_seconds": 1}
    # A tiny in-flight bound: while the poison waits, consumption pauses; only its end lets the rest in.
    config["push"] = {"max_in_flight_events": 10, "max_batch_records": 10}
    return config


async def failures_in_store(tmp_path) -> list[dict]:
    store = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    try:
        return await store.failures()
    finally:
        await store.close()


def headers_of(record) -> dict[str, str]:
    return {k.removeprefix(ERROR_HEADER_PREFIX): v.decode() for k, v in record.headers
            if k.startswith(ERROR_HEADER_PREFIX)}


def local_sample(dossiers: int, seed: int) -> list:
    return own_dossiers(generate_events(dossiers=dossiers, seed=seed, include_bad=False))


async def test_a_record_the_adapter_always_crashes_on_becomes_a_recorded_failure_and_the_rest_flows(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    others = local_sample(40, seed=41)
    poison = [encode(event_dict(no=POISON, version=v)) for v in (1, 2, 3)]
    # The poison events spread through the stream, in one partition (same key), with events after the
    # last one: a record failing alone with nothing else going on cannot be told from an outage, so it
    # waits for other traffic (see the quiet-stream test below).
    stream_messages = [*others[:5], poison[0], *others[5:60], poison[1], *others[60:-30], poison[2],
                       *others[-30:]]
    expected_offsets = await produce(kafka_bootstrap, stream.events, stream_messages)
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.put(
        f"{portal_url}/_sim/chaos", json={"crashing_dossiers": [POISON], "crash_status": 502}
    ) as reply:
        assert reply.status == 200, await reply.text()

    config = poison_config(kafka_bootstrap, portal_url, stream, tmp_path)
    await run_until_committed(load_settings(None, **config), kafka_bootstrap, stream, expected_offsets)

    await assert_portal_holds_newest(portal_url, others)
    assert POISON not in await portal_dossiers(portal_url)
    failures = await failures_in_store(tmp_path)
    assert [(f["dossier_no"], f["record_value"]) for f in failures] == [(POISON, value) for _, value in poison]
    for failure in failures:
        assert (failure["error_kind"], failure["reason"], failure["service"]) == (
            "retryable", "deadline_exceeded", "DongBoHoSoMC")
        assert failure["attempts"] >= 2 and "http_502" in failure["message"], failure["message"]
        assert failure["mapped_payload"]["DongBoHoSoMC"]["MaHoSo"] == POISON
    dead = await consume_all(kafka_bootstrap, stream.dead_letter, count=3, timeout=30)
    assert sorted(r.value for r in dead) == sorted(value for _, value in poison)
    assert {headers_of(r)["reason"] for r in dead} == {"deadline_exceeded"}
    assert all(int(headers_of(r)["attempts"]) >= 2 for r in dead)


async def test_refused_and_unreadable_events_are_recorded_whole(kafka_bootstrap, stream, portal_url, tmp_path) -> None:
    # Without the declared length limit, a long note reaches the adapter, which refuses it for good.
    unlimited = load_mappings(DEFAULT_MAPPINGS_DIR).model_copy(update={"limits": {}})
    refused = [encode(event_dict(no=POISON, version=v, note="x" * 2500)) for v in (1, 2)]
    unreadable = (b"000.00.01.G12-201005-0999", b'{"schema_version": 1, "dossier": ')
    # Short events only: without length limits, the samples' long texts would be refused too.
    others = [SampleMessage(*encode(event_dict(no=f"000.00.01.G12-201005-{n:04d}", version=v)), None, None, "")
              for v in (1, 2, 3) for n in range(20)]
    stream_messages = [refused[0], *others[:30], unreadable, *others[30:], refused[1]]
    expected_offsets = await produce(kafka_bootstrap, stream.events, stream_messages)

    config = poison_config(kafka_bootstrap, portal_url, stream, tmp_path)
    await run_until_committed(load_settings(None, **config), kafka_bootstrap, stream, expected_offsets,
                              mappings=unlimited)

    await assert_portal_holds_newest(portal_url, others)
    rows = await failures_in_store(tmp_path)
    assert sorted(r["record_value"] for r in rows) == sorted([refused[0][1], refused[1][1], unreadable[1]])
    by_value = {r["record_value"]: r for r in rows}
    rejected = by_value[refused[1][1]]
    assert (rejected["error_kind"], rejected["reason"], rejected["attempts"]) == ("permanent", "portal_rejected", 1)
    assert rejected["mapped_payload"]["DongBoHoSoMC"]["GhiChu"].startswith("x" * 100)
    garbled = by_value[unreadable[1]]
    assert (garbled["error_kind"], garbled["reason"]) == ("invalid_input", "malformed_json")
    assert garbled["record_key"] == unreadable[0]
    assert garbled["dossier_no"] == "000.00.01.G12-201005-0999" and garbled["mapped_payload"] is None
    assert len(await consume_all(kafka_bootstrap, stream.dead_letter, count=3, timeout=30)) == 3


async def test_a_record_failing_alone_in_a_quiet_stream_does_not_stop_consumption(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    # Nothing else in flight: a record failing alone looks like an outage until other events arrive, so
    # consumption must go on for them to arrive.
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.put(
        f"{portal_url}/_sim/chaos", json={"crashing_dossiers": [POISON]}
    ) as reply:
        assert reply.status == 200, await reply.text()
    first = await produce(kafka_bootstrap, stream.events, [encode(event_dict(no=POISON, version=1))])
    others = [SampleMessage(*encode(event_dict(no=f"000.00.01.G12-201005-{n:04d}")), None, None, "")
              for n in range(30)]
    config = poison_config(kafka_bootstrap, portal_url, stream, tmp_path)
    async with Service(load_settings(None, **config)) as service:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        try:
            async def crashed_alone_a_while() -> bool:
                calls = (await portal_stats(portal_url))["calls"].get("DongBoHoSoMC", {})
                return calls.get("crash_500", 0) >= 3

            await wait_until(crashed_alone_a_while, timeout=30, what="the lone record to fail three times")
            ends = await produce(kafka_bootstrap, stream.events, others)
            expected = {p: max(first.get(p, 0), ends.get(p, 0)) for p in {*first, *ends}}
            await wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected, timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)
    await assert_portal_holds_newest(portal_url, others)
    assert [(f["dossier_no"], f["reason"]) for f in await failures_in_store(tmp_path)] == [
        (POISON, "deadline_exceeded")]
