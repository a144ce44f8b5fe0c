"""The adapter misbehaving in every way it does in production, one test each: errors, ambiguous
timeouts, throttling, expiring sessions, an outage. In every case the portal ends with each dossier's
newest version and every step in order, nothing is dead-lettered or recorded as failed (these causes are
the adapter's, not the events'), every offset is committed, and the request rate never exceeds the
configured limit."""

from __future__ import annotations

import os

import pytest

from connector.config import load_settings
from connector.dev.samples import generate_events, own_dossiers
from connector.store import StateStore
from tests.integration.pipeline_harness import (
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    over_both_transports,
    run_until_committed,
    simulator_call,
    unique_group,
)
from tests.integration.test_outage import assert_dlq_empty
from tests.kafkatools import produce

pytestmark = [pytest.mark.broker, over_both_transports]

RATE_LIMIT = 60  # requests per second
OUTAGE_SECONDS = float(os.environ.get("PORTAL_SYNC_TEST_OUTAGE_SECONDS", "20"))

# Each profile, and the outcome the simulator must have counted to show the fault really happened.
PROFILES = {
    "30% of calls answer 5xx": ({"seed": 1, "error_rate": 0.3}, "chaos_5"),
    "10% of pushes apply, then time out": (
        {"seed": 2, "apply_then_timeout_rate": 0.1, "hang_seconds": 3}, "withheld"),
    "bursts of 429 with Retry-After": (
        {"seed": 3, "burst": {"every_seconds": 0.7, "for_seconds": 0.2, "retry_after_seconds": 1}}, "throttled"),
    "sessions expire every few tenths of a second": ({"seed": 4, "session_ttl_seconds": 0.2}, "session_expired"),
    # After 10 calls, not after some seconds: the stream may be over in two.
    "an outage in the middle of the stream": (
        {"seed": 5, "outages": [{"start_in_seconds": 0, "after_calls": 10, "duration_seconds": OUTAGE_SECONDS}]},
        "outage"),
}


@pytest.mark.parametrize(("profile", "evidence"), list(PROFILES.values()), ids=list(PROFILES))
async def test_the_portal_ends_right_whatever_the_adapter_does(
    kafka_bootstrap, topics, portal_url, tmp_path, profile, evidence
) -> None:
    stream = Topics(await topics.create("dossier.events", partitions=3),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    # Only dossiers of our own (the portal would refuse the status back of the others, never registered there
    # as submissions): anything dead-lettered then shows a fault taken for the event's.
    messages = own_dossiers(generate_events(dossiers=60, seed=31, include_bad=False))
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)

    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    # A record deadline shorter than the outage: waiting out the adapter must not count against records.
    config["portal"].update(timeout_seconds=1, retry={"initial_backoff_seconds": 0.05, "max_backoff_seconds": 1,
                                                      "record_deadline_seconds": min(10.0, OUTAGE_SECONDS / 2)})
    config["portal"]["rate_limit"] = {"requests_per_second": RATE_LIMIT}
    # Small batches: many calls, so the faults meet many of them.
    config["push"] = {"max_batch_records": 5}
    await simulator_call("PUT", f"{portal_url}/_sim/chaos", json=profile)

    await run_until_committed(load_settings(None, **config), kafka_bootstrap, stream, expected_offsets)

    await assert_portal_holds_newest(portal_url, messages, resent_steps_allowed=True)
    await assert_dlq_empty(kafka_bootstrap, stream.dead_letter)
    store = await StateStore.open(config["state"]["url"])
    try:
        assert await store.failures(state=None) == []
    finally:
        await store.close()
    rate = await simulator_call("GET", f"{portal_url}/_sim/rate")
    assert rate["max_per_second"] <= RATE_LIMIT + 1, rate
    stats = await simulator_call("GET", f"{portal_url}/_sim/stats")
    outcomes = {outcome for by_outcome in [*stats["calls"].values(), stats["logins"]] for outcome in by_outcome}
    assert any(outcome.startswith(evidence) for outcome in outcomes), f"the fault never happened: {stats}"
