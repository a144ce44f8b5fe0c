"""The daemon as operators run it: a separate process, stopped with SIGTERM mid-stream and started again.

Also the log audit: everything both runs wrote to stderr is searched for the applicants' identifiers
and the portal password.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.dev.samples import SampleMessage, generate_events
from connector.push.mapping import load_mappings
from tests.integration.pipeline_harness import (
    SIM,
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    expected_portal_state,
    inject_fault,
    portal_dossiers,
    records_pushed,
    unique_group,
    version_in,
    wait_until,
    write_config,
)
from tests.kafkatools import committed_offsets, consume_all, produce, wait_for_committed

pytestmark = pytest.mark.broker


async def test_sigterm_mid_stream_then_restart_loses_nothing_and_never_regresses(
    kafka_bootstrap, topics, portal_url, tmp_path, start_daemon
) -> None:
    stream = Topics(await topics.create("dossier.events", partitions=3),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    messages = generate_events(dossiers=300, seed=11, include_bad=True)
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)
    settings = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    settings["push"] = {"max_in_flight_events": 50}  # so a stop leaves work for the restart
    config = write_config(tmp_path / "config.yaml", settings)
    log = tmp_path / "daemon.log"

    # Slow answers for a while (still applied), so SIGTERM surely lands mid-stream.
    await inject_fault(portal_url, status=None, delay_seconds=0.02, times=600)
    first = await start_daemon(config, log)
    await wait_until(lambda: _pushed_at_least(portal_url, 100), timeout=60, what="the first 100 records pushed")
    first.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.wait(), timeout=60) == 0, log.read_text()[-3000:]

    partitions = sorted(expected_offsets)
    after_first = await committed_offsets(kafka_bootstrap, stream.group, stream.events, partitions)
    assert any(after_first.get(p, 0) < expected_offsets[p] for p in partitions), "stopped too late to test"
    # A graceful stop commits exactly what it finished: the portal holds, per dossier, the newest version
    # below the committed offsets, no more (nothing finished was left uncommitted) and no less.
    on_topic = await consume_all(kafka_bootstrap, stream.events, count=len(messages), timeout=30)
    committed_part = [(r.key, r.value) for r in on_topic if r.offset < after_first.get(r.partition, 0)]
    assert committed_part, "nothing was committed before SIGTERM"
    done = expected_portal_state([SampleMessage(k, v, None, None, "") for k, v in committed_part],
                                 load_mappings(DEFAULT_MAPPINGS_DIR))
    portal = await portal_dossiers(portal_url)
    assert {no: version_in(d["record"]) for no, d in portal.items()} == done.versions

    second = await start_daemon(config, log)
    try:
        await wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected_offsets, timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), timeout=60) == 0, log.read_text()[-3000:]

    await assert_portal_holds_newest(portal_url, messages)

    _assert_logs_hold_no_personal_data(log, messages)


async def _pushed_at_least(portal_url: str, count: int) -> bool:
    return await records_pushed(portal_url) >= count


def _assert_logs_hold_no_personal_data(log: Path, messages) -> None:
    text = log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    events = {line.get("event") for line in lines}
    assert "service started" in events and "service stopped" in events  # the audit read real logs
    assert any(line.get("event") == "event failed" for line in lines)
    secrets = {SIM.password}
    for message in messages:
        try:
            applicant = json.loads(message.value)["dossier"]["applicant"]
        except (ValueError, KeyError, TypeError):
            continue
        secrets.update(v for k, v in applicant.items() if k in {"id_number", "phone", "email", "name"} and v)
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} personal identifiers or secrets reached the log"
