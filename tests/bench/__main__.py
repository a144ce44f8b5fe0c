"""``make bench``: figures, not assertions. Prints medians of several runs.

- mapping: events decoded, validated and mapped per second (pure code, one core);
- end to end: events per second from a backlog in the local broker to committed offsets, through the
  daemon (in this process) and the portal simulator (its own process), one event per adapter call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.devbroker import LocalBroker, create_topics
from connector.events import decode_event
from connector.mapping import load_mappings, map_event
from connector.observability import configure_logging
from connector.samples import generate_events
from connector.service import Service
from tests.kafkatools import produce, wait_for_committed

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
END_TO_END_DOSSIERS = int(os.environ.get("BENCH_DOSSIERS", "2000"))


def bench_mapping() -> float:
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    messages = [m for m in generate_events(dossiers=2000, seed=5) if m.label == "valid"]
    started = time.perf_counter()
    for message in messages:
        map_event(decode_event(message.key, message.value, max_bytes=1 << 20), mappings)
    return len(messages) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _simulator() -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "simulate-portal", "--listen", f"127.0.0.1:{port}",
        "--keep-history", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readline(), timeout=30)  # "listening on …"
    return process, f"http://127.0.0.1:{port}"


async def bench_end_to_end(broker: LocalBroker, run: int) -> tuple[int, float]:
    topic, dlq, group = f"bench.events.{run}", f"bench.dlq.{run}", f"bench-{run}"
    await create_topics(broker.bootstrap_servers, {topic: 3, dlq: 1})
    messages = generate_events(dossiers=END_TO_END_DOSSIERS, seed=run, include_bad=False)
    expected = await produce(broker.bootstrap_servers, topic, messages)
    simulator, url = await _simulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                None,
                kafka={"bootstrap_servers": broker.bootstrap_servers, "group_id": group, "session_timeout_ms": 6000,
                       "topics": {"dossier_events": topic, "dead_letter": dlq}},
                portal={"adapter_url": url, "username": "portal-sync", "password": "secret",
                        "madonvi": "000.00.01.G12"},
                state={"url": f"sqlite+aiosqlite:///{Path(tmp) / 'state.db'}"},
                admin={"listen": "127.0.0.1:0"},
                log={"level": "warning", "format": "json"},
            )
            async with Service(settings) as service:
                stop = asyncio.Event()
                running = asyncio.create_task(service.run(stop))
                # The group forms in a few seconds on the local broker; count from the first sync.
                await _first_sync(service)
                started = time.perf_counter()
                first = _synced(service)
                await wait_for_committed(broker.bootstrap_servers, group, topic, expected, timeout=600)
                elapsed = time.perf_counter() - started
                stop.set()
                await running
                return len(messages) - int(first), elapsed
    finally:
        with contextlib.suppress(ProcessLookupError):
            simulator.send_signal(signal.SIGTERM)
        await asyncio.wait_for(simulator.wait(), timeout=30)


def _synced(service: Service) -> float:
    registry = service.metrics.registry
    return sum(registry.get_sample_value("portal_sync_event_outcomes_total", {"outcome": o, "reason": r}) or 0
               for o, r in (("synced", "created"), ("synced", "updated"), ("synced", "step"),
                            ("dead_lettered", "origin_portal_unsupported")))


async def _first_sync(service: Service) -> None:
    deadline = time.monotonic() + 60
    while _synced(service) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon synced nothing within 60 s")
        await asyncio.sleep(0.01)


async def main() -> None:
    with open(os.devnull, "w") as quiet:  # noqa: ASYNC230 - once, before anything runs
        configure_logging("warning", "json", stream=quiet)
        mapping = [bench_mapping() for _ in range(RUNS)]
        print(f"mapping (decode + validate + map), events/s: median {statistics.median(mapping):,.0f} "
              f"of {RUNS} runs {[round(x) for x in mapping]}")
        rates = []
        with LocalBroker.start() as broker:
            for run in range(RUNS):
                count, seconds = await bench_end_to_end(broker, run)
                rates.append(count / seconds)
        print(f"end to end ({END_TO_END_DOSSIERS} dossiers, backlog → committed, one event per call), events/s: "
              f"median {statistics.median(rates):,.0f} of {RUNS} runs {[round(x) for x in rates]}")


if __name__ == "__main__":
    asyncio.run(main())
