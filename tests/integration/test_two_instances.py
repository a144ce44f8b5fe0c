"""Two daemon processes in one consumer group, sharing one PostgreSQL state store.

The first instance starts alone on a backlog; the second joins mid-stream (partitions are split between
them); then the first is stopped with SIGTERM (its partitions move to the second). Afterwards no dossier
has regressed, on the portal or in the shared ledger, and every event is accounted for: the ledger holds
its dossier at its version or a newer one, or it is in the failure table (exactly once) and on the
dead-letter topic byte for byte. Both instances did part of the work.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from connector.dev.samples import SampleMessage, generate_events
from connector.kafka import ERROR_HEADER_PREFIX
from connector.store import FailureFilter, StateStore
from connector.store.tables import dossier_ledger
from tests.databases import state_database
from tests.integration.pipeline_harness import (
    HTTP_TIMEOUT,
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    records_pushed,
    unique_group,
    wait_until,
    write_config,
)
from tests.kafkatools import committed_offsets, consume_all, produce, wait_for_committed

pytestmark = pytest.mark.broker

EVENTS_SEED = 37
PARTITIONS = 4
DOSSIERS = 200
# The first instance works alone until the portal has received this many records.
PUSHED_BEFORE_SECOND = 60
# The first instance is stopped once the second has finished this many events (the backlog is far longer).
FINISHED_BY_SECOND_BEFORE_STOP = 150


async def test_two_instances_on_one_store_and_one_group_lose_nothing_and_never_regress(
    kafka_bootstrap, topics, portal_url, tmp_path, start_daemon
) -> None:
    stream = Topics(await topics.create("dossier.events", partitions=PARTITIONS),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    messages = generate_events(dossiers=DOSSIERS, seed=EVENTS_SEED, include_bad=True)
    bad = {(m.key, m.value) for m in messages if _cannot_sync(m)}
    assert len(bad) > 3  # the three broken events, and the events of dossiers that started on the portal
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)
    assert len(expected_offsets) == PARTITIONS

    async with state_database("postgresql", tmp_path) as state_url:
        config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
        config["state"]["url"] = state_url  # one store for both instances
        # Small batches, little in flight and a low request rate: the backlog stays in Kafka long enough
        # for both hand-overs to happen in the middle of it.
        config["push"] = {"max_batch_records": 5, "linger_ms": 0, "max_in_flight_events": 20}
        config["portal"]["rate_limit"] = {"requests_per_second": 40}
        config_file = write_config(tmp_path / "config.yaml", config)
        logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}
        processes: dict[str, asyncio.subprocess.Process] = {}
        try:
            processes["first"] = await start_daemon(config_file, logs["first"])
            await wait_until(lambda: _pushed_at_least(portal_url, PUSHED_BEFORE_SECOND, processes, logs),
                             timeout=60, what=f"the first instance to push {PUSHED_BEFORE_SECOND} records")

            processes["second"] = await start_daemon(config_file, logs["second"])
            admin = {name: await _admin_url(name, processes, logs) for name in processes}
            finished = {"first": 0.0, "second": 0.0}

            async def second_has_finished_events() -> bool:
                _still_running(processes, logs)
                finished["second"] = await _events_finished(admin["second"])
                return finished["second"] >= FINISHED_BY_SECOND_BEFORE_STOP

            # Both work side by side for a while, on partitions of their own.
            await wait_until(second_has_finished_events, timeout=60, interval=0.2,
                             what=f"the second instance to finish {FINISHED_BY_SECOND_BEFORE_STOP} events")
            finished["first"] = await _events_finished(admin["first"])

            processes["first"].send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(processes["first"].wait(), timeout=60) == 0, _tail(logs["first"])
            partitions = sorted(expected_offsets)
            after_first = await committed_offsets(kafka_bootstrap, stream.group, stream.events, partitions)
            assert any(after_first.get(p, 0) < expected_offsets[p] for p in partitions), (
                "the first instance stopped after everything was committed: the take-over went untested")

            await _while_running(
                wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected_offsets, timeout=90),
                processes["second"], logs["second"])
            finished["second"] = await _events_finished(admin["second"])
            processes["second"].send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(processes["second"].wait(), timeout=60) == 0, _tail(logs["second"])
        finally:
            # After a failure: stop what still runs before its database goes.
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
                    await asyncio.wait_for(process.wait(), timeout=10)

        ledger, failures = await _read_state(state_url)

    # Both instances took part: the second joined while the first held partitions (they were split
    # between the two), and each finished events of its own.
    assigned = {name: _assignments(log) for name, log in logs.items()}
    print(f"assignments: {assigned}; events finished: {finished}, of {len(messages)} produced")
    assert assigned["first"] and assigned["second"], f"an instance was never assigned a partition: {assigned}"
    assert 0 < len(assigned["second"][0]) < PARTITIONS, f"the partitions were not split: {assigned}"
    assert finished["first"] > 0 and finished["second"] > 0, finished

    # (1) The portal holds every dossier at its newest version; no older version came after a newer one.
    expected = await assert_portal_holds_newest(portal_url, messages)
    # The shared ledger agrees: every dossier at its newest version, none moved back.
    assert ledger == expected.versions

    # (2) Every event is accounted for, by the coordinates it was read at.
    on_topic = await consume_all(kafka_bootstrap, stream.events, count=len(messages), timeout=30)
    by_bytes = {(m.key, m.value): m for m in messages}
    coordinates = {(r.topic, r.partition, r.offset): by_bytes[(r.key, r.value)] for r in on_topic}
    assert len(coordinates) == len(messages)
    failed_at = {(f["topic"], f["partition"], f["offset"]): f for f in failures}
    unaccounted = [
        (where, m.dossier_no, m.version) for where, m in coordinates.items()
        if where not in failed_at and not (m.dossier_no in ledger and ledger[m.dossier_no] >= (m.version or 0))
    ]
    assert not unaccounted, f"{len(unaccounted)} events neither synced nor failed, e.g. {unaccounted[:5]}"
    # The failures are exactly the events that cannot be synced, each stored byte for byte.
    assert {where for where, m in coordinates.items() if _cannot_sync(m)} == set(failed_at)
    for where, failure in failed_at.items():
        message = coordinates[where]
        assert (failure["record_key"], failure["record_value"]) == (message.key, message.value), where
        if message.label == "valid":
            assert failure["event_version"] == message.version, where
        else:  # a broken event has a version only when it could be read that far
            assert failure["event_version"] in (None, message.version), where

    # (3) One row per failed event, however often it failed.
    assert len(failures) == len(failed_at) == len(bad)

    # (4) Every failed event is on the dead-letter topic, byte for byte, pointing at where it was read.
    dead = await _dead_letters(kafka_bootstrap, stream.dead_letter, bad)
    assert dead == {(where, coordinates[where].key, coordinates[where].value) for where in failed_at}


def _cannot_sync(message: SampleMessage) -> bool:
    """Broken events, and events of dossiers that started on the portal (the simulator has no such submission
    registered: it refuses their status back)."""
    return message.label != "valid" or json.loads(message.value)["dossier"]["origin"] == "portal"


def _still_running(processes: dict[str, asyncio.subprocess.Process], logs: dict[str, Path]) -> None:
    for name, process in processes.items():
        if process.returncode is not None:
            raise AssertionError(f"the {name} instance exited on its own ({process.returncode}):\n"
                                 f"{_tail(logs[name])}")


async def _pushed_at_least(portal_url: str, count: int, processes: dict[str, asyncio.subprocess.Process],
                           logs: dict[str, Path]) -> bool:
    _still_running(processes, logs)
    return await records_pushed(portal_url) >= count


async def _admin_url(name: str, processes: dict[str, asyncio.subprocess.Process], logs: dict[str, Path]) -> str:
    """The admin listener's address, from the instance's start-up log line."""
    found: list[str] = []

    async def started() -> bool:
        _still_running(processes, logs)
        found.extend(line["admin"] for line in _log_lines(logs[name]) if line.get("event") == "service started")
        return bool(found)

    await wait_until(started, timeout=30, what=f"the {name} instance to start")
    return found[-1]


async def _events_finished(admin_url: str) -> float:
    """Events the instance has finished (synced, skipped or failed), from its metrics."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{admin_url}/metrics") as reply:
        reply.raise_for_status()
        text = await reply.text()
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "portal_sync_event_outcomes" for sample in family.samples
               if sample.name.endswith("_total"))


async def _while_running(awaited: Awaitable[None], process: asyncio.subprocess.Process, log: Path) -> None:
    """Await ``awaited``; fail at once, with the log, if the process exits meanwhile."""
    waiting = asyncio.ensure_future(awaited)
    exited = asyncio.ensure_future(process.wait())
    try:
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, exited):
            task.cancel()
        await asyncio.gather(waiting, exited, return_exceptions=True)
    if waiting in done:
        waiting.result()
        return
    raise AssertionError(f"the instance exited on its own ({process.returncode}):\n{_tail(log)}")


async def _read_state(url: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The shared ledger (dossier → last version) and every failure row, in any state."""
    store = await StateStore.open(url, migrate=False)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(dossier_ledger.c.dossier_no, dossier_ledger.c.last_version))).all()
        failures = await store.list_failures(FailureFilter(states=()), limit=None)
    finally:
        await store.close()
    return {no: version for no, version in rows}, failures


async def _dead_letters(bootstrap: str, topic: str, bad: set[tuple[bytes | None, bytes]]
                        ) -> set[tuple[tuple[str, int, int], bytes | None, bytes]]:
    """Read the dead-letter topic until every bad event is there (one may be there twice: a record failed
    but not yet committed when its partition moved is failed again by the new owner); nothing else may be.
    Returns each dead letter's original coordinates (from its headers), key and value."""
    count = len(bad)
    while True:
        records: list[ConsumerRecord[bytes, bytes]] = await consume_all(bootstrap, topic, count=count, timeout=30)
        found = {(r.key, r.value) for r in records}
        assert found <= bad, f"{len(found - bad)} events that could be synced were dead-lettered"
        if found == bad:
            return {((_header(r, "topic"), int(_header(r, "partition")), int(_header(r, "offset"))), r.key, r.value)
                    for r in records}
        count = len(records) + len(bad - found)


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    return dict(record.headers)[ERROR_HEADER_PREFIX + name].decode()


def _log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue  # a line still being written
    return lines


def _assignments(log: Path) -> list[list[int]]:
    """The partitions an instance was assigned, one list per assignment, in order."""
    return [line["partitions"] for line in _log_lines(log) if line.get("event") == "partitions assigned"]


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]
