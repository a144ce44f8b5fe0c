"""The daemon killed without warning: SIGKILL at random points of a 5,000-event stream, several times,
restarted each time with the same configuration, state store and consumer group.

Afterwards the guarantees hold as if nothing had happened: every dossier on the portal ends at its newest
version, every step arrived and first arrived in order, the group committed everything the producer wrote,
and the bad events are on the dead-letter topic. What a crash may cost is work done again: events that
were in flight at the kill are delivered again, so records and steps are re-sent, and a version that was
coalesced away may be pushed once after the newer one it had been folded into. All of that is counted,
printed, and bounded by what can be in flight: at most ``max_in_flight_events`` per kill.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from connector.dev.samples import SampleMessage, generate_events
from connector.kafka import ERROR_HEADER_PREFIX
from connector.store import StateStore
from tests.integration.pipeline_harness import (
    Expected,
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    inject_fault,
    over_both_transports,
    portal_dossiers,
    portal_stats,
    pushed_versions,
    records_pushed,
    unique_group,
    wait_until,
    write_config,
)
from tests.kafkatools import committed_offsets, consume_all, produce, wait_for_committed

pytestmark = [pytest.mark.broker, over_both_transports]

EVENTS_SEED = 31
KILLS_SEED = 2024  # where the kills land: another seed, other crash points
KILLS = 3
# Small, so that "at most this much per kill" is a bound with teeth: a daemon that re-pushed everything
# re-delivered after a crash (finished but uncommitted work too, not only what was in flight) goes over it.
MAX_IN_FLIGHT = 50
# Each run is killed once it has pushed this many records (drawn at random): well under way, and the
# stream not over (all runs together push about 4,000 records for these events).
PUSHED_BEFORE_KILL = (150, 800)


async def test_sigkill_at_random_points_loses_nothing_and_repeats_at_most_what_was_in_flight(
    kafka_bootstrap, topics, portal_url, tmp_path, start_daemon
) -> None:
    began = time.monotonic()
    stream = Topics(await topics.create("dossier.events", partitions=3),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    messages = generate_events(dossiers=990, seed=EVENTS_SEED, include_bad=True)
    assert 4_900 <= len(messages) <= 5_100
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)
    partitions = sorted(expected_offsets)
    settings = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    settings["push"] = {"max_in_flight_events": MAX_IN_FLIGHT}  # a kill leaves at most this much undone
    config = write_config(tmp_path / "config.yaml", settings)
    log = tmp_path / "daemon.log"
    rng = random.Random(KILLS_SEED)  # reproducible kill points

    # Late answers (the push is applied first): a kill is likely to find pushes done but not acknowledged.
    await inject_fault(portal_url, status=None, delay_seconds=0.01, times=100_000)
    for kill in range(1, KILLS + 1):
        target = await records_pushed(portal_url) + rng.randint(*PUSHED_BEFORE_KILL)
        daemon = await start_daemon(config, log)
        await wait_until(functools.partial(_pushed_at_least, portal_url, target, daemon, log), timeout=60,
                         what=f"run {kill} to bring the portal to {target} records pushed")
        daemon.kill()
        assert await asyncio.wait_for(daemon.wait(), timeout=10) == -signal.SIGKILL
        committed = await committed_offsets(kafka_bootstrap, stream.group, stream.events, partitions)
        assert any(committed.get(p, 0) < expected_offsets[p] for p in partitions), (
            f"kill {kill} landed after everything was committed: it tested nothing")
        print(f"kill {kill}: {time.monotonic() - began:.0f} s after the start, after {target} records pushed, "
              f"{sum(committed.values())} of {len(messages)} events committed")

    final = await start_daemon(config, log)
    try:
        await _committed_while_running(
            wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected_offsets, timeout=120),
            final, log)
    finally:
        if final.returncode is None:
            final.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(final.wait(), timeout=60) == 0, _tail(log)
    print(f"everything committed {time.monotonic() - began:.0f} s after the start")

    expected = await assert_portal_holds_newest(portal_url, messages, resent_steps_allowed=True,
                                                replayed_versions_allowed=True)
    redone = _work_done_again(await portal_dossiers(portal_url), expected)
    stats = await portal_stats(portal_url, fields="all")
    dead = await _dead_letters(kafka_bootstrap, stream.dead_letter, messages)
    print(f"after {KILLS} kills (at most {MAX_IN_FLIGHT} events in flight each): "
          f"{redone['records']} records re-sent ({stats['duplicate_pushes']} identical to the one held), "
          f"{redone['backward']} pushed after a newer version, {redone['steps']} steps re-sent "
          f"({stats['duplicate_steps']} counted by the portal); {dead['repeated']} of {dead['events']} "
          f"bad events dead-lettered again")
    assert redone["records"] + redone["steps"] > 0, "no kill caught a push in flight: recovery went untested"
    # A push is done again only for an event that was in flight (read, not finished) at a kill.
    for what, count in (*redone.items(), ("identical records", stats["duplicate_pushes"])):
        assert count <= KILLS * MAX_IN_FLIGHT, f"{count} {what} done again: more than {KILLS} kills leave in flight"
    # Dead letters have no ledger: one finished but not yet committed at a kill is written again, once.
    assert dead["repeated"] <= KILLS * dead["events"]
    # The failure table has one row per bad event, however often it was dead-lettered.
    store = await StateStore.open(settings["state"]["url"])
    try:
        failures = await store.failures(state=None)
    finally:
        await store.close()
    assert len(failures) == dead["events"]
    assert {(f["topic"], f["partition"], f["offset"]) for f in failures} == dead["coordinates"]


async def _pushed_at_least(portal_url: str, count: int, daemon: asyncio.subprocess.Process, log: Path) -> bool:
    if daemon.returncode is not None:
        raise AssertionError(f"the daemon exited on its own ({daemon.returncode}):\n{_tail(log)}")
    return await records_pushed(portal_url) >= count


async def _committed_while_running(committed: Awaitable[None], daemon: asyncio.subprocess.Process, log: Path
                                   ) -> None:
    """Await ``committed``; fail at once, with the log, if the daemon exits meanwhile."""
    waiting = asyncio.ensure_future(committed)
    exited = asyncio.ensure_future(daemon.wait())
    try:
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, exited):
            task.cancel()
        await asyncio.gather(waiting, exited, return_exceptions=True)  # each bounded: let them clean up
    if waiting in done:
        waiting.result()  # raises when the offsets were not reached in time
        return
    raise AssertionError(f"the daemon exited on its own ({daemon.returncode}):\n{_tail(log)}")


def _work_done_again(portal: dict[str, Any], expected: Expected) -> dict[str, int]:
    """From what the portal received: records pushed again (a version it already had), records pushed
    after a newer version of the same dossier, and steps beyond the expected ones."""
    records = backward = steps = 0
    for no, dossier in portal.items():
        seen: set[int] = set()
        for version in pushed_versions(dossier["history"]):
            records += version in seen
            backward += bool(seen) and version < max(seen)
            seen.add(version)
        steps += len(dossier["steps"]) - len(expected.steps.get(no, []))
    return {"records": records, "backward": backward, "steps": steps}


async def _dead_letters(bootstrap: str, topic: str, messages: list[SampleMessage]) -> dict[str, Any]:
    """Every event that cannot be synced is on the DLQ byte for byte (some possibly twice: dead-lettered
    again after a kill), and nothing else is."""
    bad = {(m.key, m.value) for m in messages
           if m.label != "valid" or json.loads(m.value)["dossier"]["origin"] == "portal"}
    assert len(bad) > 3  # the three broken events, and dossiers that started on the portal
    count = len(bad)
    while True:  # a repeated dead letter counts towards ``count``: read on until every one is there
        records: list[ConsumerRecord[bytes, bytes]] = await consume_all(bootstrap, topic, count=count, timeout=30)
        found = {(r.key, r.value) for r in records}
        assert found <= bad, f"{len(found - bad)} events that could be synced were dead-lettered"
        if found == bad:
            coordinates = {(_header(r, "topic"), int(_header(r, "partition")), int(_header(r, "offset")))
                           for r in records}
            return {"events": len(bad), "repeated": len(records) - len(found), "coordinates": coordinates}
        count = len(records) + len(bad - found)


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    return dict(record.headers)[ERROR_HEADER_PREFIX + name].decode()


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]
