"""``make bench``: figures, not assertions. Prints the median of several runs of each figure, with its
parameters, and ends with a summary table.

Broker (local Kafka-protocol broker, fresh for every measurement), portal simulator and daemon(s) each run
in their own process; the bench only produces, watches committed offsets and reads /metrics.

Sections (``BENCH_ONLY=throughput,latency`` picks some; all by default):

- mapping     decode + validate + map, events/s (pure code, this process, one core);
- throughput  sustained events/s draining a backlog (200,000 events, 20,000 dossiers × 10, 6 partitions), from
              the first consumed event until the group's committed offsets reach the produced ends; in the
              same run the bare pipe (tests/bench/barepipe.py) drains the same events from its own topic,
              and the daemon ÷ bare pipe ratio is reported; then a daemon over the SOAP transport drains the
              same events from a third topic (events/s, CPU per event, SOAP ÷ REST CPU);
- latency     a steady stream (1,000 events/s for 30 s, each a new dossier, ``occurred_at`` = when produced)
              into a running daemon: p50/p99 from ``occurred_at`` to the simulator's receipt, and from
              producing to the committed offset being observed;
- memory      peak RSS of the daemon draining a 1,000,000-event backlog;
- scaling     throughput with 1, 2 and 4 daemons in one consumer group (200,000-event backlog).

Environment: ``BENCH_RUNS`` (3), ``BENCH_SCALE`` (1.0: the sizes above; 0.02 for a quick look),
``BENCH_ONLY``, ``BENCH_STATE_URL`` (a PostgreSQL URL: a fresh database per measurement instead of a
SQLite file per daemon), ``BENCH_INSTANCES`` (1,2,4), ``BENCH_LATENCY_RATE`` (1000),
``BENCH_LATENCY_SECONDS`` (30 × scale, at least 3), ``BENCH_MIN_RATE`` (50: a drain slower than this many
events/s is given up), ``BENCH_STALL_SECONDS`` (120: so is one whose commits stop moving),
``BENCH_JSON`` (also write the figures to this file), ``BENCH_DAEMON_SETTINGS`` (JSON laid over the daemon's
settings), ``KAFKA_BOOTSTRAP_SERVERS`` (an external broker).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import pickle
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.dev.samples import SampleMessage, generate_events
from connector.push.events import decode_event
from connector.push.mapping import load_mappings, map_event
from tests.bench.harness import (
    MADONVI,
    PARTITIONS,
    PORTAL_PASSWORD,
    PORTAL_USER,
    REQUEST_TIMEOUT,
    START_TIMEOUT,
    BenchError,
    Child,
    CommitWatcher,
    Daemon,
    Drained,
    Options,
    Simulator,
    backlog,
    broker,
    children,
    cpu_seconds,
    drain,
    dumps,
    has_setting,
    make_topics,
    produce_fast,
    reached,
    read_options,
    remaining,
    rfc3339,
    setting,
    state_label,
    state_urls,
    unique,
)

SECTIONS = ("mapping", "throughput", "latency", "memory", "scaling")
EVENTS_PER_DOSSIER = 10
DEFAULT_BATCH = 100
WARMUP_EVENTS = 20
SHORT_SECONDS = 5.0
console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)


# --------------------------------------------------------------------------------------------------
# Figures


@dataclass
class Figure:
    section: str
    name: str
    unit: str
    size: str  # what was measured, in short; the section's header gives the full parameters
    target: str = ""
    values: list[float] = field(default_factory=list)
    failed: int = 0
    decimals: int = 0

    def fmt(self, value: float) -> str:
        return f"{value:,.{self.decimals}f}"

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def median_text(self) -> str:
        return "failed" if self.median is None else self.fmt(self.median)

    def runs_text(self) -> str:
        shown = [self.fmt(v) for v in self.values] + ["failed"] * self.failed
        return ", ".join(shown)


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.failed = False  # some run could not be measured
        self.shortest = math.inf  # the shortest timed drain, seconds

    def timed(self, seconds: float) -> None:
        self.shortest = min(self.shortest, seconds)

    def figure(self, section: str, name: str, unit: str, size: str, target: str = "", decimals: int = 0) -> Figure:
        for existing in self.figures:
            if existing.section == section and existing.name == name:
                return existing
        made = Figure(section, name, unit, size, target, decimals=decimals)
        self.figures.append(made)
        return made

    def section_medians(self, section: str) -> None:
        for fig in (f for f in self.figures if f.section == section):
            runs = len(fig.values) + fig.failed
            target = f"  (target {fig.target})" if fig.target else ""
            if fig.median is None:
                console.print(f"  median {fig.name}: failed in {runs} run(s)", style="red")
                continue
            console.print(f"  [bold]median[/bold] {fig.name}: [bold]{fig.median_text()}[/bold] {fig.unit}"
                          f" of {runs} run(s) \\[{fig.runs_text()}]{target}")

    def summary(self, options: Options) -> None:
        table = Table(title=f"portal-sync bench: medians of {options.runs} run(s), scale {options.scale:g}",
                      title_justify="left")
        for column, justify in (("section", "left"), ("figure", "left"), ("median", "right"), ("unit", "left"),
                                ("runs", "left"), ("target", "left"), ("size", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for fig in self.figures:
            table.add_row(fig.section, fig.name, fig.median_text(), fig.unit, fig.runs_text(), fig.target, fig.size)
        console.print()
        console.print(table)
        if self.shortest < SHORT_SECONDS:
            self.notes.append(f"some drains took under {SHORT_SECONDS:g} s (the shortest {self.shortest:.1f} s): fixed "
                              f"costs such as the daemon's commit interval and the 50 ms polling weigh on their "
                              f"figures; raise BENCH_SCALE for figures that mean something")
        for note in self.notes:
            console.print(f"note: {note}")

    def write_json(self, path: Path, options: Options) -> None:
        payload = {
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()
                        if k != "state_url"},
            "figures": [asdict(f) | {"median": f.median} for f in self.figures],
            "notes": self.notes,
        }
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")


async def each_run(
    report: Report, options: Options, body: Callable[[int, Path], Awaitable[None]],
    failing: Sequence[Figure] = (),
) -> None:
    """``body(run, workdir)`` for every run, each in a fresh temporary directory; a failure is reported and
    counted against ``failing`` and the next run goes on."""
    for run in range(1, options.runs + 1):
        with tempfile.TemporaryDirectory(prefix="portal-sync-bench-") as tmp:
            started = time.monotonic()
            counts = [len(fig.values) for fig in failing]
            try:
                await body(run, Path(tmp))
            except Exception as error:  # one broken run must not hide the others' figures
                console.print(f"  run {run}/{options.runs} failed ({type(error).__name__}): {error}", style="red",
                              markup=False)
                for fig, count in zip(failing, counts, strict=True):
                    if len(fig.values) == count:  # no figure from this run
                        fig.failed += 1
                report.failed = True
            else:
                console.print(f"  run {run}/{options.runs} took {time.monotonic() - started:,.0f} s", style="dim")


def header(title: str) -> None:
    console.print()
    console.print(f"[bold]== {title}[/bold]")


# --------------------------------------------------------------------------------------------------
# mapping


def bench_mapping_once(dossiers: int, seed: int) -> float:
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    messages = [m for m in generate_events(dossiers=dossiers, seed=seed) if m.label == "valid"]
    started = time.perf_counter()
    for message in messages:
        map_event(decode_event(message.key, message.value, max_bytes=1 << 20), mappings)
    return len(messages) / (time.perf_counter() - started)


async def section_mapping(report: Report, options: Options) -> None:
    dossiers = options.scaled(2000, 200)
    header(f"mapping: decode + validate + map, {dossiers:,} sample dossiers (≈5 events each), pure code, one core")
    fig = report.figure("mapping", "decode + validate + map", "events/s", f"{dossiers:,} dossiers")

    async def body(run: int, _workdir: Path) -> None:
        rate = bench_mapping_once(dossiers, seed=run)
        fig.values.append(rate)
        console.print(f"  run {run}/{options.runs}: {rate:,.0f} events/s")

    await each_run(report, options, body, [fig])
    report.section_medians("mapping")


# --------------------------------------------------------------------------------------------------
# throughput + bare pipe


def precompute_records(messages: Sequence[SampleMessage], positions: Sequence[tuple[int, int]], path: Path) -> None:
    """Each event's DongBoHoSoMC record as JSON, by (partition, offset) on the bare pipe's topic."""
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    table: dict[int, dict[int, bytes]] = {}
    for message, (partition, offset) in zip(messages, positions, strict=True):
        mapped = map_event(decode_event(message.key, message.value, max_bytes=1 << 20), mappings)
        table.setdefault(partition, {})[offset] = dumps(mapped.record)
    path.write_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))


def batch_size(daemon: Daemon, report: Report) -> int:
    if has_setting("push.max_batch_records"):
        return int(setting(daemon.config.settings, "push.max_batch_records", DEFAULT_BATCH))
    note = (f"push.max_batch_records is not in this version's settings: the bare pipe uses batches of "
            f"{DEFAULT_BATCH}")
    if note not in report.notes:
        report.notes.append(note)
    return DEFAULT_BATCH


async def bare_pipe(
    workdir: Path, started: list[Child], *, bootstrap: str, topic: str, simulator: Simulator, records: Path,
    batch: int, max_poll_records: int, ends: dict[int, int], options: Options,
) -> Drained:
    group = unique("bench-bare")
    child = Child("bare pipe", [
        sys.executable, "-m", "tests.bench.barepipe", "--bootstrap", bootstrap, "--topic", topic, "--group", group,
        "--url", simulator.url, "--username", PORTAL_USER, "--password", PORTAL_PASSWORD, "--madonvi", MADONVI,
        "--batch", str(batch), "--max-poll-records", str(max_poll_records), "--session-timeout-ms", "6000",
        "--records", str(records),
    ], workdir / "barepipe.log")
    started.append(child)
    total = sum(ends.values())
    first = await _bare_first_consumed(child)
    cpu_at_first = cpu_seconds(child.pid)
    deadline = first + options.drain_timeout(total)
    last_move, last_left = time.monotonic(), total
    async with CommitWatcher(bootstrap, group, topic, range(PARTITIONS)) as watcher:
        while True:
            child.check_alive()
            committed = await watcher.read()
            now = time.monotonic()
            if reached(committed, ends):
                break
            left = remaining(committed, ends)
            if left < last_left:
                last_move, last_left = now, left
            if now - last_move > options.stall_seconds or now > deadline:
                raise BenchError(f"the bare pipe did not drain: {left:,} of {total:,} events left; its log ends "
                                 f"with:\n{child.log_tail()}")
            await asyncio.sleep(0.05)
    elapsed = now - first
    cpu = cpu_seconds(child.pid) - cpu_at_first
    await child.stop()
    return Drained(total, elapsed, cpu_seconds=cpu)


async def _bare_first_consumed(child: Child) -> float:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        child.check_alive()
        for line in child.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{") and "first_consumed" in line:
                first: float = json.loads(line)["first_consumed"]
                return first
        await asyncio.sleep(0.02)
    raise BenchError(f"the bare pipe consumed nothing within {START_TIMEOUT:g} s; its log ends with:\n"
                     f"{child.log_tail()}")


def _calls_text(stats: dict[str, Any]) -> str:
    calls = stats.get("calls") or {}
    parts = [f"{service} {outcome} {count:,}" for service, outcomes in sorted(calls.items())
             for outcome, count in sorted(outcomes.items())]
    return f"; simulator calls: {', '.join(parts) or 'none'}"


def _outcomes_text(drained: Drained) -> str:
    if not drained.outcomes:
        return ""
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(drained.outcomes.items()))
    return f" (outcomes: {parts})"


async def section_throughput(report: Report, options: Options) -> None:
    dossiers = options.scaled(20_000, 10)
    events = dossiers * EVENTS_PER_DOSSIER
    # The ministry's own dossiers of the backlog (about 96 %): ``events`` is the bound, the runs say the count.
    params = f"≤ {events:,} events, {dossiers:,} dossiers × {EVENTS_PER_DOSSIER}, {PARTITIONS} partitions"
    header(f"sustained throughput and bare pipe: backlog of {params}; state: {state_label(options)}")
    console.print("  from the first consumed event (seen on /metrics) until the committed offsets reach the produced "
                  "ends; the bare pipe: the same events on a topic of its own, premapped records POSTed to "
                  "DongBoHoSoMC in batches of push.max_batch_records, a commit per batch, partitions concurrently",
                  style="dim")
    size = f"≤ {events:,} events"
    daemon_fig = report.figure("throughput", "daemon", "events/s", size, "≥ 5,000")
    bare_fig = report.figure("throughput", "bare pipe", "events/s", size)
    ratio_fig = report.figure("throughput", "daemon ÷ bare pipe", "", size, "≥ 0.5",
                              decimals=2)
    cpu_fig = report.figure("throughput", "daemon CPU per event", "µs", size)
    bare_cpu_fig = report.figure("throughput", "bare pipe CPU per event", "µs", size)
    soap_fig = report.figure("throughput", "daemon over SOAP", "events/s", size)
    soap_cpu_fig = report.figure("throughput", "daemon over SOAP CPU per event", "µs", size)
    soap_ratio_fig = report.figure("throughput", "SOAP ÷ REST CPU per event", "", size, "≤ 2", decimals=2)

    async def body(run: int, workdir: Path) -> None:
        messages = list(backlog(dossiers, seed=run, events_per_dossier=EVENTS_PER_DOSSIER))
        with broker() as bootstrap:
            topic, bare_topic, dlq = unique("bench.throughput"), unique("bench.bare"), unique("bench.dlq")
            soap_topic = unique("bench.soap")
            await make_topics(bootstrap, {topic: PARTITIONS, bare_topic: PARTITIONS, soap_topic: PARTITIONS, dlq: 1})
            produced = await produce_fast(bootstrap, topic, ((m.key, m.value) for m in messages))
            soap_produced = await produce_fast(bootstrap, soap_topic, ((m.key, m.value) for m in messages))
            bare_produced = await produce_fast(bootstrap, bare_topic, ((m.key, m.value) for m in messages))
            records = workdir / "bare-records.pickle"
            precompute_records(messages, bare_produced.positions, records)
            del messages
            async with state_urls(options, workdir, 1) as urls, children() as started:
                simulator = await Simulator.start(workdir, started)

                async def one_daemon(name: str, topic: str, ends: dict[int, int], state_url: str,
                                     transport: str = "rest") -> tuple[Daemon, Drained]:
                    group = unique(f"bench-{name}")
                    daemon = await Daemon.start(workdir, name, started, bootstrap=bootstrap, topic=topic, dlq=dlq,
                                                group=group, portal_url=simulator.url, state_url=state_url,
                                                transport=transport)
                    async with CommitWatcher(bootstrap, group, topic, range(PARTITIONS)) as watcher:
                        drained = await drain([daemon], watcher, ends, timeout=options.drain_timeout(events),
                                              stall_seconds=options.stall_seconds)
                    await daemon.child.stop()
                    report.timed(drained.seconds)
                    return daemon, drained

                daemon, drained = await one_daemon("daemon", topic, produced.ends, urls[0])
                console.print(f"  run {run}/{options.runs}: daemon {drained.events:,} events in "
                              f"{drained.seconds:,.1f} s = [bold]{drained.rate:,.0f}[/bold] events/s, "
                              f"{drained.cpu_us_per_event:,.0f} µs of CPU per event "
                              f"({drained.gc_seconds / max(drained.cpu_seconds, 1e-9):.0%} in garbage collection)"
                              f"{_outcomes_text(drained)}{_calls_text(await simulator.stats())}")
                cpu_fig.values.append(drained.cpu_us_per_event)
                daemon_fig.values.append(drained.rate)
                batch = batch_size(daemon, report)
                max_poll = int(setting(daemon.config.settings, "kafka.max_poll_records", 500))
                await simulator.reset()
                bare = await bare_pipe(workdir, started, bootstrap=bootstrap, topic=bare_topic, simulator=simulator,
                                       records=records, batch=batch, max_poll_records=max_poll,
                                       ends=bare_produced.ends, options=options)
                report.timed(bare.seconds)
                bare_fig.values.append(bare.rate)
                ratio_fig.values.append(drained.rate / bare.rate)
                console.print(f"  run {run}/{options.runs}: bare pipe {bare.events:,} events in {bare.seconds:,.1f} s "
                              f"= [bold]{bare.rate:,.0f}[/bold] events/s, "
                              f"{bare.cpu_us_per_event:,.0f} µs of CPU per event "
                              f"(batches of {batch}, polls of ≤ {max_poll})"
                              f"{_calls_text(await simulator.stats())}; "
                              f"daemon ÷ bare pipe = [bold]{drained.rate / bare.rate:.2f}[/bold]")
                bare_cpu_fig.values.append(bare.cpu_us_per_event)
                # The same events over the SOAP transport (the project's WSDL, the simulator's SOAP face).
                await simulator.reset()
                async with state_urls(options, workdir, 1) as soap_urls:  # a ledger of its own: nothing synced yet
                    _, over_soap = await one_daemon("daemon-soap", soap_topic, soap_produced.ends, soap_urls[0],
                                                    transport="soap")
                soap_fig.values.append(over_soap.rate)
                soap_cpu_fig.values.append(over_soap.cpu_us_per_event)
                soap_ratio_fig.values.append(over_soap.cpu_us_per_event / drained.cpu_us_per_event)
                console.print(f"  run {run}/{options.runs}: daemon over SOAP {over_soap.events:,} events in "
                              f"{over_soap.seconds:,.1f} s = [bold]{over_soap.rate:,.0f}[/bold] events/s, "
                              f"{over_soap.cpu_us_per_event:,.0f} µs of CPU per event{_outcomes_text(over_soap)}"
                              f"{_calls_text(await simulator.stats())}")

    await each_run(report, options, body, [daemon_fig, bare_fig, ratio_fig, cpu_fig, bare_cpu_fig, soap_fig,
                                           soap_cpu_fig, soap_ratio_fig])
    report.section_medians("throughput")


# --------------------------------------------------------------------------------------------------
# latency

_MARK = "\u2063occurred-at\u2063"


def latency_templates(count: int, seed: int) -> list[tuple[bytes, bytes, bytes, str]]:
    """``count`` version-1 events of new local dossiers, as (key, value before occurred_at, value after, no)."""
    generated = generate_events(dossiers=math.ceil(count * 1.25) + 10, seed=seed, min_events_per_dossier=1,
                                max_events_per_dossier=1, include_bad=False)
    templates = []
    for message in generated:
        event = json.loads(message.value)
        if event["dossier"]["origin"] != "local":
            continue  # dossiers that started on the portal get a status back, refused by an empty portal
        event["occurred_at"] = _MARK
        before, after = dumps(event).split(_MARK.encode("utf-8"))
        templates.append((message.key or b"", before, after, event["dossier"]["no"]))
        if len(templates) == count:
            return templates
    raise BenchError(f"only {len(templates)} of {count} latency events could be made")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Steady:
    produced: list[tuple[float, int, int, str]]  # wall time, partition, offset, dossier no
    observations: list[tuple[float, dict[int, int]]]  # wall time seen, committed offsets
    seconds: float  # producing, first to last event

    @property
    def ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for _, partition, offset, _ in self.produced:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends


async def produce_steady(
    bootstrap: str, topic: str, templates: Sequence[tuple[bytes, bytes, bytes, str]], rate: float,
    watcher: CommitWatcher, daemon: Daemon, options: Options,
) -> Steady:
    """Produce at ``rate`` events/s (each stamped with the wall clock as it goes out) while watching the
    group's committed offsets; return once they reach the produced ends."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, request_timeout_ms=30_000)
    observations: list[tuple[float, dict[int, int]]] = []
    done = asyncio.Event()

    async def observe() -> None:
        while not done.is_set():
            committed = await watcher.read()
            observations.append((time.time(), committed))
            await asyncio.sleep(0.02)

    sent: list[tuple[float, asyncio.Future[Any], str]] = []
    observer = asyncio.create_task(observe())
    try:
        await asyncio.wait_for(producer.start(), timeout=REQUEST_TIMEOUT)
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            for index, (key, before, after, number) in enumerate(templates):
                delay = began + index / rate - loop.time()
                if delay > 0.001:
                    await asyncio.sleep(delay)
                if index % 500 == 0:
                    daemon.child.check_alive()
                wall = time.time()
                future = await producer.send(topic, key=key, value=before + rfc3339(wall).encode() + after)
                sent.append((wall, future, number))
            seconds = loop.time() - began
            acks = await asyncio.wait_for(asyncio.gather(*(f for _, f, _ in sent)), timeout=120)
        finally:
            await asyncio.wait_for(producer.stop(), timeout=REQUEST_TIMEOUT)
        steady = Steady([(wall, ack.partition, ack.offset, number) for (wall, _, number), ack in zip(sent, acks,
                                                                                                      strict=True)],
                        observations, seconds)
        ends, total = steady.ends, len(templates)
        deadline = time.monotonic() + options.drain_timeout(total)
        last_move, last_left = time.monotonic(), total
        while True:
            daemon.child.check_alive()
            if observer.done():
                observer.result()  # raises what stopped it
            if observations and reached(observations[-1][1], ends):
                break
            left = remaining(observations[-1][1], ends) if observations else total
            now = time.monotonic()
            if left < last_left:
                last_move, last_left = now, left
            if now - last_move > options.stall_seconds or now > deadline:
                raise BenchError(f"the latency stream did not drain: {left:,} of {total:,} events left; the "
                                 f"daemon's log ends with:\n{daemon.child.log_tail()}")
            await asyncio.sleep(0.05)
        return steady
    finally:
        done.set()
        await asyncio.gather(observer, return_exceptions=True)


def commit_latencies(steady: Steady) -> list[float]:
    """Per event: from producing it to the first observation of a committed offset past it."""
    by_partition: dict[int, list[tuple[int, float]]] = {}
    for wall, partition, offset, _ in steady.produced:
        by_partition.setdefault(partition, []).append((offset, wall))
    for entries in by_partition.values():
        entries.sort()
    position = dict.fromkeys(by_partition, 0)
    latencies: list[float] = []
    for seen, committed in sorted(steady.observations, key=lambda o: o[0]):
        for partition, entries in by_partition.items():
            upto = committed.get(partition, -1)
            i = position[partition]
            while i < len(entries) and entries[i][0] < upto:
                latencies.append(seen - entries[i][1])
                i += 1
            position[partition] = i
    return latencies


RECEIPT_KEYS = ("first_received_at", "last_received_at")


def receipt_latencies(steady: Steady, dossiers: dict[str, Any]) -> tuple[list[float], int] | None:
    """Per event: simulator receipt − occurred_at, and how many of the dossiers the simulator lacked; None
    when this simulator does not report receipt times."""
    if not any(isinstance(v, dict) and any(k in v for k in RECEIPT_KEYS) for v in dossiers.values()):
        return None
    latencies: list[float] = []
    missing = 0
    for wall, _, _, number in steady.produced:
        stored = dossiers.get(number)
        received = next((stored[k] for k in RECEIPT_KEYS if isinstance(stored, dict) and stored.get(k) is not None),
                        None)
        if received is None:
            missing += 1
            continue
        latencies.append(float(received) - wall)
    return latencies, missing


async def section_latency(report: Report, options: Options) -> None:
    rate, seconds = options.latency_rate, options.latency_seconds
    count = max(1, round(rate * seconds))
    params = f"{rate:,.0f} events/s for {seconds:g} s ({count:,} new dossiers, version 1), {PARTITIONS} partitions"
    header(f"latency: a steady stream into a running daemon, {params}; state: {state_label(options)}")
    console.print("  occurred_at = the wall clock when produced; receipt = the simulator's first_received_at; the "
                  "produced → commit observed figure includes the daemon's commit interval (push.commit_interval_ms) "
                  "and 20 ms of polling", style="dim")
    size = f"{rate:,.0f}/s × {seconds:g} s"
    receipt = {q: report.figure("latency", f"p{q} occurred_at → simulator receipt", "ms", size,
                                "≤ 250" if q == 99 else "") for q in (50, 99)}
    commit = {q: report.figure("latency", f"p{q} produced → commit observed", "ms", size) for q in (50, 99)}
    achieved = report.figure("latency", "producer's achieved rate", "events/s", size)

    async def body(run: int, workdir: Path) -> None:
        templates = latency_templates(count + WARMUP_EVENTS, seed=run)
        warmup, stream = templates[:WARMUP_EVENTS], templates[WARMUP_EVENTS:]
        with broker() as bootstrap:
            topic, dlq = unique("bench.latency"), unique("bench.dlq")
            await make_topics(bootstrap, {topic: PARTITIONS, dlq: 1})
            async with state_urls(options, workdir, 1) as urls, children() as started:
                simulator = await Simulator.start(workdir, started)
                group = unique("bench-latency")
                daemon = await Daemon.start(workdir, "daemon", started, bootstrap=bootstrap, topic=topic, dlq=dlq,
                                            group=group, portal_url=simulator.url, state_url=urls[0])
                async with CommitWatcher(bootstrap, group, topic, range(PARTITIONS)) as watcher:
                    # Warm up: the group formed, the session logged in, the path hot.
                    warm = await produce_fast(bootstrap, topic, [
                        (key, before + rfc3339(time.time()).encode() + after) for key, before, after, _ in warmup])
                    await drain([daemon], watcher, warm.ends, timeout=START_TIMEOUT, stall_seconds=START_TIMEOUT)
                    steady = await produce_steady(bootstrap, topic, stream, rate, watcher, daemon, options)
                dossiers = await simulator.dossiers(RECEIPT_KEYS)
        achieved.values.append(len(stream) / steady.seconds if steady.seconds else 0.0)
        by_commit = [x * 1000 for x in commit_latencies(steady)]
        for q, fig in commit.items():
            fig.values.append(percentile(by_commit, q))
        line = (f"  run {run}/{options.runs}: produced {len(stream):,} events in {steady.seconds:,.1f} s; "
                f"produced → committed observed p50 {percentile(by_commit, 50):,.0f} ms, "
                f"p99 {percentile(by_commit, 99):,.0f} ms")
        found = receipt_latencies(steady, dossiers)
        if found is None:
            note = ("the simulator does not report first_received_at/last_received_at in GET /_sim/dossiers yet: "
                    "latency to simulator receipt not measured; the produced → committed figures stand in for it")
            if note not in report.notes:
                report.notes.append(note)
            for fig in receipt.values():
                fig.failed += 1
            line += "; simulator receipt times: not reported by this simulator"
        else:
            by_receipt, missing = [x * 1000 for x in found[0]], found[1]
            if not by_receipt:
                raise BenchError("none of the streamed dossiers reached the simulator")
            for q, fig in receipt.items():
                fig.values.append(percentile(by_receipt, q))
            line += (f"; occurred_at → simulator receipt p50 [bold]{percentile(by_receipt, 50):,.0f}[/bold] ms, "
                     f"p99 [bold]{percentile(by_receipt, 99):,.0f}[/bold] ms")
            if missing:
                line += f" ({missing:,} dossiers missing on the simulator)"
        console.print(line)

    await each_run(report, options, body, [*commit.values(), achieved])
    if all(not fig.values for fig in receipt.values()):
        report.figures = [f for f in report.figures if f not in receipt.values()]
        for fig in commit.values():
            fig.name += " (no simulator receipt times yet)"
            fig.target = "p99 ≤ 250 (receipt)" if "p99" in fig.name else ""
    report.section_medians("latency")


# --------------------------------------------------------------------------------------------------
# memory


async def section_memory(report: Report, options: Options) -> None:
    dossiers = math.ceil(options.scaled(1_000_000, 1000) / EVENTS_PER_DOSSIER)
    events = dossiers * EVENTS_PER_DOSSIER
    params = f"{events:,}-event backlog, {dossiers:,} dossiers × {EVENTS_PER_DOSSIER}, {PARTITIONS} partitions"
    header(f"memory: peak RSS of the daemon draining a {params}; state: {state_label(options)}")
    size = f"{events:,} events"
    peak = report.figure("memory", "daemon peak RSS", "MiB", size, "≤ 200 MB", decimals=1)
    start_rss = report.figure("memory", "daemon RSS at first consumed event", "MiB", size, decimals=1)
    rate = report.figure("memory", "daemon", "events/s", size)

    async def body(run: int, workdir: Path) -> None:
        with broker() as bootstrap:
            topic, dlq = unique("bench.memory"), unique("bench.dlq")
            await make_topics(bootstrap, {topic: PARTITIONS, dlq: 1})
            produced = await produce_fast(bootstrap, topic, (
                (m.key, m.value) for m in backlog(dossiers, seed=run, events_per_dossier=EVENTS_PER_DOSSIER)))
            async with state_urls(options, workdir, 1) as urls, children() as started:
                simulator = await Simulator.start(workdir, started)
                group = unique("bench-memory")
                daemon = await Daemon.start(workdir, "daemon", started, bootstrap=bootstrap, topic=topic, dlq=dlq,
                                            group=group, portal_url=simulator.url, state_url=urls[0])
                async with CommitWatcher(bootstrap, group, topic, range(PARTITIONS)) as watcher:
                    drained = await drain([daemon], watcher, produced.ends, timeout=options.drain_timeout(events),
                                          stall_seconds=options.stall_seconds)
        report.timed(drained.seconds)
        peak.values.append(daemon.memory.peak_mib)
        start_rss.values.append(daemon.memory.at_start_kib / 1024)
        rate.values.append(drained.rate)
        console.print(f"  run {run}/{options.runs}: peak RSS [bold]{daemon.memory.peak_mib:,.1f}[/bold] MiB "
                      f"({daemon.memory.samples} samples; {daemon.memory.at_start_kib / 1024:,.1f} MiB when "
                      f"consumption began); {drained.events:,} events in {drained.seconds:,.1f} s = "
                      f"{drained.rate:,.0f} events/s{_outcomes_text(drained)}")

    await each_run(report, options, body, [peak, start_rss, rate])
    report.section_medians("memory")


# --------------------------------------------------------------------------------------------------
# scaling


def instance_counts() -> list[int]:
    raw = os.environ.get("BENCH_INSTANCES", "1,2,4")
    try:
        counts = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"BENCH_INSTANCES must be a list of numbers like 1,2,4, not {raw!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit("BENCH_INSTANCES must name at least one instance count ≥ 1")
    return counts


async def section_scaling(report: Report, options: Options) -> None:
    dossiers = options.scaled(20_000, 10)
    events = dossiers * EVENTS_PER_DOSSIER
    counts = instance_counts()
    # The ministry's own dossiers of the backlog (about 96 %): ``events`` is the bound, the runs say the count.
    params = f"≤ {events:,} events, {dossiers:,} dossiers × {EVENTS_PER_DOSSIER}, {PARTITIONS} partitions"
    header(f"scaling: {', '.join(map(str, counts))} daemons in one consumer group, backlog of {params}; "
           f"state: {state_label(options)}")
    size = f"{events:,} events"
    figs = {n: report.figure("scaling", f"{n} daemon{'s' if n > 1 else ''}", "events/s", size) for n in counts}
    speedup = {n: report.figure("scaling", f"{n} daemons ÷ {counts[0]}", "", size,
                                decimals=2) for n in counts[1:]}

    async def body(run: int, workdir: Path) -> None:
        messages = [(m.key, m.value) for m in backlog(dossiers, seed=run, events_per_dossier=EVENTS_PER_DOSSIER)]
        rates: dict[int, float] = {}
        for n in counts:
            with broker() as bootstrap:
                topic, dlq = unique("bench.scaling"), unique("bench.dlq")
                await make_topics(bootstrap, {topic: PARTITIONS, dlq: 1})
                produced = await produce_fast(bootstrap, topic, messages)
                async with state_urls(options, workdir, n) as urls, children() as started:
                    simulator = await Simulator.start(workdir, started)
                    group = unique("bench-scaling")
                    daemons = [
                        await Daemon.start(workdir, f"daemon-{n}-{i}", started, bootstrap=bootstrap, topic=topic,
                                           dlq=dlq, group=group, portal_url=simulator.url, state_url=urls[i])
                        for i in range(n)
                    ]
                    async with CommitWatcher(bootstrap, group, topic, range(PARTITIONS)) as watcher:
                        drained = await drain(daemons, watcher, produced.ends,
                                              timeout=options.drain_timeout(events),
                                              stall_seconds=options.stall_seconds)
            report.timed(drained.seconds)
            rates[n] = drained.rate
            figs[n].values.append(drained.rate)
            split = " / ".join(f"{c:,.0f}" for c in drained.per_instance)
            after = (f", every instance consuming {drained.all_working_after:,.1f} s after the first"
                     if drained.all_working_after is not None else "")
            console.print(f"  run {run}/{options.runs}, {n} instance(s): {drained.events:,} events in "
                          f"{drained.seconds:,.1f} s = [bold]{drained.rate:,.0f}[/bold] events/s; consumed per "
                          f"instance {split}{after}")
        for n in counts[1:]:
            speedup[n].values.append(rates[n] / rates[counts[0]])

    await each_run(report, options, body, [*figs.values(), *speedup.values()])
    report.section_medians("scaling")


# --------------------------------------------------------------------------------------------------


SECTION_RUNNERS = {
    "mapping": section_mapping,
    "throughput": section_throughput,
    "latency": section_latency,
    "memory": section_memory,
    "scaling": section_scaling,
}


def describe_daemon_settings(report: Report) -> None:
    """What the bench sets in the daemon's settings, and what this version's settings lack."""
    from tests.bench.harness import write_daemon_config

    with tempfile.TemporaryDirectory(prefix="portal-sync-bench-") as tmp:
        config = write_daemon_config(
            Path(tmp) / "probe.yaml", bootstrap="127.0.0.1:9092", topic="t", dlq="d", group="g",
            portal_url="http://127.0.0.1:8080", state_url="sqlite+aiosqlite:///probe.db", admin_port=9464,
        )
    s = config.settings
    shown = []
    for key in ("push.max_batch_records", "push.linger_ms", "push.max_in_flight_events", "push.commit_interval_ms",
                "portal.rate_limit.requests_per_second", "portal.rate_limit.max_concurrent_requests",
                "kafka.max_poll_records", "kafka.session_timeout_ms", "portal.retry.initial_backoff_seconds",
                "portal.retry.max_backoff_seconds"):
        if has_setting(key):
            value = setting(s, key, None)
            shown.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    console.print("daemon settings (defaults unless set by the bench): " + ", ".join(shown) +
                  "; log level warning to a file")
    if config.dropped:
        note = "not in this version's settings, left out of the daemon config: " + ", ".join(config.dropped)
        report.notes.append(note)
        console.print(note)


async def main() -> int:
    options = read_options(SECTIONS)
    # SIGTERM as Ctrl-C: cancel, so that every child process is stopped and every temporary directory removed.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    report = Report()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    console.print(f"[bold]portal-sync bench[/bold]: runs {options.runs}, scale {options.scale:g}, sections "
                  f"{', '.join(options.sections)}; {os.cpu_count()} CPUs, Python {platform.python_version()}; broker: "
                  f"{'external ' + external if external else 'local, fresh per measurement'}; "
                  f"state: {state_label(options)}")
    if any(k.startswith("PORTAL_SYNC__") for k in os.environ):
        console.print("PORTAL_SYNC__* variables are set here; the daemons do not see them")
    try:
        describe_daemon_settings(report)
    except BenchError as error:
        console.print(f"bench: {error}", style="red", markup=False)
        return 1
    started = time.monotonic()
    for section in options.sections:
        await SECTION_RUNNERS[section](report, options)
    report.summary(options)
    console.print(f"total {time.monotonic() - started:,.0f} s")
    if options.json_path is not None:
        report.write_json(options.json_path, options)
    return 1 if report.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("bench: interrupted; child processes stopped")
