"""``stats rebuild --since``: the dossiers' facts recomputed from the dossier topic as the daemon reads it, from the
broker's offsets for that time, outside the daemon's consumer group; a history that began before the window
continues from the stored facts, and without them is counted as partial.

The month is the one of test_stats_push (its hand-worked table). Its events go to the topic in two batches,
stamped January and April 2026: D04's and D05's first versions (D05: received, then its first supplement
request) in January, everything else in April."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.national_time import PORTAL_TZ
from tests.factories import encode
from tests.integration.pipeline_harness import write_config
from tests.integration.test_stats_push import AGENCY, march
from tests.kafkatools import produce

FIGURES = ("received", "carried_over", "total", "resolved", "early", "on_time", "late", "withdrawn", "pending",
           "within", "overdue")
HAND_WORKED = {"received": 9, "carried_over": 1, "total": 10, "resolved": 8, "early": 4, "on_time": 2, "late": 2,
               "withdrawn": 1, "pending": 2, "within": 1, "overdue": 1}


def stamp(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=PORTAL_TZ).timestamp() * 1000)


async def portal_sync(*args: str, config: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SYNC__")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", *args, "--config", str(config), "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out)


@pytest.mark.broker
async def test_rebuild_reads_from_since_continues_stored_histories_and_names_the_partial_ones(
    kafka_bootstrap, topics, tmp_path
) -> None:
    events = march()
    early = [e for e in events if e["dossier"]["no"].endswith(("-0004", "-0005")) and e["dossier"]["version"] <= 2]
    rest = [e for e in events if e not in early]
    topic = await topics.create("dossier.events", partitions=2)
    await produce(kafka_bootstrap, topic, [encode(e) for e in early], timestamp_ms=stamp("2026-01-15T08:00:00"))
    await produce(kafka_bootstrap, topic, [encode(e) for e in rest], timestamp_ms=stamp("2026-04-01T08:00:00"))
    config = write_config(tmp_path / "config.yaml", {
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": {"dossier_events": topic}},
        "state": {"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"}})

    # No stored facts and a window that misses the first versions: D04 and D05 are partial.
    first = await portal_sync("stats", "rebuild", "--since", "2026-02-01", config=config)
    assert (first["events"], first["partial"], first["continued"], first["dossiers"]) == (len(rest), 2, 0, 11)
    assert first["oldest_read"].startswith("2026-04-01T01:00:00")  # 08:00 in Hanoi, in UTC
    partial = (await portal_sync("stats", "show", "--month", "2026-03", config=config))["total"]
    assert partial["late"] == 1  # D05's first request was before the window: it looks like one request only

    # The whole topic: every history complete, the hand-worked table.
    whole = await portal_sync("stats", "rebuild", "--since", "2026-01-01", config=config)
    assert (whole["events"], whole["partial"], whole["continued"]) == (len(events), 0, 0)
    table = (await portal_sync("stats", "show", "--month", "2026-03", "--agency", AGENCY, config=config))["total"]
    assert {k: table[k] for k in FIGURES} == HAND_WORKED

    # The later window again: D04 and D05 continue from their stored facts, nothing changes.
    again = await portal_sync("stats", "rebuild", "--since", "2026-02-01", config=config)
    assert (again["partial"], again["continued"]) == (0, 2)
    table = (await portal_sync("stats", "show", "--month", "2026-03", config=config))["total"]
    assert {k: table[k] for k in FIGURES} == HAND_WORKED
