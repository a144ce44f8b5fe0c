"""``portal-sync demo``: the whole product on one machine, in a minute.

Starts the bundled Kafka-protocol broker and the portal simulator on free loopback ports, publishes a
realistic sample data set (with a few bad events on purpose), runs the daemon until every event has an
outcome, prints what happened, and shuts everything down.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.config import Settings, load_settings
from connector.dev.devbroker import LocalBroker, create_topics
from connector.dev.samples import SampleMessage, generate_events
from connector.dev.simulator.app import SimulatorConfig, start_simulator
from connector.observability import configure_logging
from connector.push.mapping import NATIONAL_STATUS_NAMES
from connector.service import Service

EVENTS_TOPIC = "dossier.events"
DLQ_TOPIC = "dossier.events.dlq"
PARTITIONS = 3
TIMEOUT_SECONDS = 120.0


async def _publish(bootstrap: str, messages: list[SampleMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(EVENTS_TOPIC, key=m.key, value=m.value) for m in messages]
        await asyncio.wait_for(asyncio.gather(*sent), timeout=30)
    finally:
        await producer.stop()


def _outcomes(service: Service) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for metric in service.metrics.event_outcomes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[(sample.labels["outcome"], sample.labels["reason"])] += int(sample.value)
    return counts


async def _portal_view(base_url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{base_url}/_sim/dossiers") as reply:
        reply.raise_for_status()
        view: dict[str, Any] = await reply.json()
        return view


def _settings(bootstrap: str, portal_url: str, sim: SimulatorConfig, workdir: Path) -> Settings:
    return load_settings(
        None,
        # A short session makes the consumer group form quickly (the local broker waits half of it).
        kafka={"bootstrap_servers": bootstrap, "group_id": "portal-sync-demo", "session_timeout_ms": 6000},
        portal={"adapter_url": portal_url, "username": sim.username, "password": sim.password,
                "madonvi": "000.00.01.G12", "retry": {"initial_backoff_seconds": 0.05}},
        state={"url": f"sqlite+aiosqlite:///{workdir / 'state.db'}"},
        admin={"listen": "127.0.0.1:0"},
        log={"level": "info", "format": "json"},
    )


def _print_summary(console: Console, outcomes: Counter[tuple[str, str]], portal: dict[str, Any],
                   total: int, seconds: float) -> None:
    table = Table(title=f"{total} events in {seconds:.1f} s", title_justify="left")
    table.add_column("outcome")
    table.add_column("reason / rule")
    table.add_column("events", justify="right")
    for (outcome, reason), count in sorted(outcomes.items()):
        style = {"synced": "green", "skipped": "yellow", "failed": "red"}.get(outcome, "")
        table.add_row(f"[{style}]{outcome}[/]", reason, str(count))
    console.print(table)

    statuses = Counter(d["record"]["TrangThaiHoSo"] for d in portal.values())
    by_status = Table(title=f"{len(portal)} dossiers on the portal, by national status", title_justify="left")
    by_status.add_column("TrangThaiHoSo", justify="right")
    by_status.add_column("meaning")
    by_status.add_column("dossiers", justify="right")
    for code, count in sorted(statuses.items(), key=lambda item: int(item[0])):
        by_status.add_row(code, NATIONAL_STATUS_NAMES.get(int(code), "?"), str(count))
    console.print(by_status)

    with_steps = sorted(portal.items(), key=lambda item: (-len(item[1]["steps"]), item[0]))[:3]
    for number, entry in with_steps:
        record = entry["record"]
        view = Table(title=f"portal view of {number}  ({entry['pushes']} pushes received)", title_justify="left",
                     show_header=False)
        view.add_column("field", style="bold")
        view.add_column("value")
        for name in ("MaTTHC", "TenTTHC", "DonViXuLy", "TrangThaiHoSo", "NgayTiepNhan", "NgayHenTra",
                     "NgayKetThucXuLy", "NgayTra", "GhiChu"):
            view.add_row(name, str(record.get(name, "")))
        for index, step in enumerate(entry["steps"], start=1):
            view.add_row(f"step {index}", f"{step['ThoiDiemXuLy']}  TrangThai {step['TrangThai']}  "
                                          f"{step['ChucDanh']} — {step['NoiDungXuLy'][:60]}")
        console.print(view)


async def run_demo(*, dossiers: int = 50, seed: int = 2019) -> int:
    console = Console()
    log_path = Path("var") / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)
        code = await _demo(console, dossiers, seed)
    console.print(f"the daemon's log (JSON, personal data redacted): {log_path}")
    return code


async def _demo(console: Console, dossiers: int, seed: int) -> int:
    messages = generate_events(dossiers=dossiers, seed=seed)
    console.print(f"[bold]portal-sync demo[/]: {len(messages)} events over {dossiers} dossiers "
                  f"({sum(m.label != 'valid' for m in messages)} bad on purpose)")
    sim = SimulatorConfig()
    with tempfile.TemporaryDirectory(prefix="portal-sync-demo-") as tmp, LocalBroker.start() as broker:
        console.print(f"broker     {broker.bootstrap_servers} (local, in memory)")
        await create_topics(broker.bootstrap_servers, {EVENTS_TOPIC: PARTITIONS, DLQ_TOPIC: 1})
        sim_runner, portal_url = await start_simulator("127.0.0.1", 0, sim)
        console.print(f"portal     {portal_url} (simulator)")
        try:
            await _publish(broker.bootstrap_servers, messages)
            settings = _settings(broker.bootstrap_servers, portal_url, sim, Path(tmp))
            started = time.monotonic()
            async with Service(settings) as service:
                console.print(f"daemon     metrics at {service.admin_url}/metrics")
                stop = asyncio.Event()
                runner = asyncio.create_task(service.run(stop))
                done = await _wait_for_outcomes(service, len(messages), runner)
                stop.set()
                await asyncio.wait_for(runner, timeout=60)
            elapsed = time.monotonic() - started
            portal = await _portal_view(portal_url)
        finally:
            await sim_runner.cleanup()
        _print_summary(console, _outcomes(service), portal, len(messages), elapsed)
    if not done:
        console.print(f"[red]not every event had an outcome within {TIMEOUT_SECONDS:.0f} s[/]")
        return 1
    console.print("[green]done[/]: every event synced, skipped by a named rule, or recorded as failed "
                  f"(in the state store and on {DLQ_TOPIC}) with its reason.")
    return 0


async def _wait_for_outcomes(service: Service, total: int, runner: asyncio.Task[None]) -> bool:
    columns = (TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task("sync", total=total)
        while time.monotonic() < deadline and not runner.done():
            finished = sum(_outcomes(service).values())
            progress.update(bar, completed=finished)
            if finished >= total:
                return True
            # A progress display polls a counter; nothing here waits on it for correctness.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(runner), timeout=0.1)
    if runner.done():
        runner.result()  # surface what stopped the daemon
    return False
