"""The bench's moving parts: options, child processes (simulator, daemons, bare pipe), daemon settings,
fast producing, committed-offset watching, process memory.

Every wait is bounded; every child process is ended (SIGTERM, then SIGKILL) by whoever started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import typing
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from connector.config import Settings, describe_validation_error
from connector.dev.devbroker import LocalBroker, create_topics
from connector.dev.samples import DEFAULT_START, ICT, SampleMessage, generate_events, own_dossiers
from connector.store import StateStore
from tests import REPO_ROOT

PORTAL_USER = "portal-sync"
PORTAL_PASSWORD = "secret"  # the simulator's own test credential
MADONVI = "000.00.01.G12"
PARTITIONS = 6
REQUEST_TIMEOUT = 10.0  # one broker or HTTP round trip
START_TIMEOUT = 60.0  # a child process up and answering; a group formed
STOP_GRACE = 30.0  # SIGTERM → exit, before SIGKILL


class BenchError(RuntimeError):
    """A measurement could not be taken; the message says why (with a log tail when a process is at fault)."""


# --------------------------------------------------------------------------------------------------
# Options (environment)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {raw!r}") from None


@dataclass(frozen=True)
class Options:
    runs: int
    scale: float
    sections: tuple[str, ...]
    state_url: str | None  # PostgreSQL (a fresh database per measurement) instead of SQLite files
    min_rate: float  # events/s below which a drain is given up (bounds every drain's wait)
    stall_seconds: float  # give up when committed offsets do not move for this long
    latency_rate: float
    latency_seconds: float
    json_path: Path | None

    def scaled(self, full: int, minimum: int = 1) -> int:
        return max(minimum, round(full * self.scale))

    def drain_timeout(self, events: int) -> float:
        return 120.0 + events / self.min_rate


def read_options(known_sections: Sequence[str]) -> Options:
    scale = _env_float("BENCH_SCALE", 1.0)
    if scale <= 0:
        raise SystemExit("BENCH_SCALE must be > 0")
    only = [s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()]
    unknown = sorted(set(only) - set(known_sections))
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown section(s) {unknown}; known: {', '.join(known_sections)}")
    json_path = os.environ.get("BENCH_JSON", "").strip()
    return Options(
        runs=max(1, int(_env_float("BENCH_RUNS", 3))),
        scale=scale,
        sections=tuple(s for s in known_sections if not only or s in only),
        state_url=os.environ.get("BENCH_STATE_URL", "").strip() or None,
        min_rate=_env_float("BENCH_MIN_RATE", 50.0),
        stall_seconds=_env_float("BENCH_STALL_SECONDS", 120.0),
        latency_rate=_env_float("BENCH_LATENCY_RATE", 1000.0),
        latency_seconds=_env_float("BENCH_LATENCY_SECONDS", max(3.0, 30.0 * scale)),
        json_path=Path(json_path) if json_path else None,
    )


def daemon_overrides() -> dict[str, Any]:
    """``BENCH_DAEMON_SETTINGS``: JSON laid over the bench's daemon settings, to measure other values
    (e.g. ``{"push": {"max_in_flight_events": 6000}}``)."""
    raw = os.environ.get("BENCH_DAEMON_SETTINGS", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"BENCH_DAEMON_SETTINGS is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit("BENCH_DAEMON_SETTINGS must be a JSON object of settings sections")
    return value


# --------------------------------------------------------------------------------------------------
# Sample data


def backlog(dossiers: int, *, seed: int, events_per_dossier: int = 10, chunk: int = 2000) -> Iterator[SampleMessage]:
    """The valid events of ``dossiers`` dossiers × ``events_per_dossier``, generated a chunk of dossiers at a
    time; only dossiers of the ministry's own (those the samples make as filed on the national portal take the
    status-back path, which the simulator refuses for submissions it never held, and the bare pipe cannot
    push), so the figures compare like with like.

    Each chunk starts the day after the previous one's last reception, so dossier numbers (agency, day,
    sequence) never repeat across chunks; memory stays bounded by one chunk whatever the total.
    """
    start = DEFAULT_START
    left = dossiers
    number = 0
    while left > 0:
        size = min(chunk, left)
        messages = generate_events(
            dossiers=size, seed=seed * 1000 + number, start=start, include_bad=False,
            min_events_per_dossier=events_per_dossier, max_events_per_dossier=events_per_dossier,
        )
        yield from own_dossiers(messages)
        last_day = max(datetime.strptime(m.dossier_no.split("-")[1], "%y%m%d")  # type: ignore[union-attr]
                       for m in messages)
        start = datetime.combine(last_day.date() + timedelta(days=1), DEFAULT_START.time(), ICT)
        left -= size
        number += 1


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, ICT).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------------------------------
# Broker, topics, producing


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """A fresh local broker (bootstrap address), or the external one in KAFKA_BOOTSTRAP_SERVERS."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    with LocalBroker.start() as local:
        yield local.bootstrap_servers


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


async def make_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    await create_topics(bootstrap, topics, timeout=60)


@dataclass
class Produced:
    ends: dict[int, int]  # partition → offset after the last record (from the acknowledgements)
    positions: list[tuple[int, int]]  # per message, in order: (partition, offset)
    seconds: float

    @property
    def count(self) -> int:
        return len(self.positions)


async def produce_fast(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]], *, chunk: int = 5000
) -> Produced:
    """Publish as fast as the broker takes it: linger, large batches, send futures gathered per chunk."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20,
        max_request_size=2 << 20, request_timeout_ms=30_000,
    )
    positions: list[tuple[int, int]] = []
    started = time.perf_counter()
    await asyncio.wait_for(producer.start(), timeout=REQUEST_TIMEOUT)
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in messages:
            pending.append(await asyncio.wait_for(producer.send(topic, key=key, value=value), timeout=60))
            if len(pending) >= chunk:
                positions.extend(await _acknowledged(pending))
                pending = []
        positions.extend(await _acknowledged(pending))
    finally:
        await asyncio.wait_for(producer.stop(), timeout=REQUEST_TIMEOUT)
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return Produced(ends, positions, time.perf_counter() - started)


async def _acknowledged(pending: Sequence[asyncio.Future[Any]]) -> list[tuple[int, int]]:
    acks = await asyncio.wait_for(asyncio.gather(*pending), timeout=120)
    return [(ack.partition, ack.offset) for ack in acks]


class CommitWatcher:
    """Reads a group's committed offsets over one admin connection, naming the partitions (the local
    broker drops the connection when asked for "all topics")."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: Iterable[int]) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(REQUEST_TIMEOUT * 1000))
        self._group = group
        self._partitions = [TopicPartition(topic, p) for p in partitions]

    async def __aenter__(self) -> CommitWatcher:
        await asyncio.wait_for(self._admin.start(), timeout=REQUEST_TIMEOUT)
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._admin.close(), timeout=REQUEST_TIMEOUT)

    async def read(self) -> dict[int, int]:
        offsets = await asyncio.wait_for(
            self._admin.list_consumer_group_offsets(self._group, partitions=self._partitions),
            timeout=REQUEST_TIMEOUT,
        )
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def reached(committed: Mapping[int, int], ends: Mapping[int, int]) -> bool:
    return all(committed.get(p, -1) >= end for p, end in ends.items())


def remaining(committed: Mapping[int, int], ends: Mapping[int, int]) -> int:
    return sum(max(0, end - max(committed.get(p, 0), 0)) for p, end in ends.items())


# --------------------------------------------------------------------------------------------------
# Child processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    # The daemon reads PORTAL_SYNC__* overrides from its environment: a developer's own must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SYNC__")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """One child process, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, tier: int = 1) -> None:
        self.name = name
        self.log_path = log_path
        self.tier = tier  # stopped after every child of a higher tier: clients before the servers they use
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(  # returns at once; the child runs on its own
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=child_env(), cwd=REPO_ROOT, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with code {self.process.returncode}; its log ends with:\n"
                             f"{self.log_tail()}")

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of the log; JSON log lines shown as level, event and the end of any traceback."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        shown: list[str] = []
        for line in text.strip().splitlines()[-lines:]:
            try:
                entry = json.loads(line)
            except ValueError:
                shown.append("    " + line)
                continue
            if not isinstance(entry, dict):
                shown.append("    " + line)
                continue
            shown.append(f"    {entry.get('level', '?')}: {entry.get('event', line)}")
            trace = entry.get("exception")
            if isinstance(trace, str):
                shown.extend("      " + t for t in trace.strip().splitlines()[-6:])
        return "\n".join(shown) or "(empty log)"

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            await asyncio.to_thread(self._wait, wait)

    def _wait(self, seconds: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=seconds)


@contextlib.asynccontextmanager
async def children() -> AsyncIterator[list[Child]]:
    """Collects the children started inside; all of them are stopped on the way out, whatever happens:
    by tier, highest first (a daemon finishing its in-flight work still has its simulator), a tier at once."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for tier in sorted({child.tier for child in started}, reverse=True):
            await asyncio.gather(*(c.stop() for c in started if c.tier == tier), return_exceptions=True)


async def wait_http(url: str, child: Child, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            child.check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise BenchError(f"{child.name} did not answer {url} within {timeout:g} s; its log ends with:\n"
                                 f"{child.log_tail()}")
            await asyncio.sleep(0.1)


class Simulator:
    def __init__(self, child: Child, url: str) -> None:
        self.child = child
        self.url = url

    @classmethod
    async def start(cls, workdir: Path, started: list[Child]) -> Simulator:
        port = free_port()
        child = Child("portal simulator", [
            sys.executable, "-m", "connector", "simulate-portal", "--listen", f"127.0.0.1:{port}",
            "--keep-history", "0", "--username", PORTAL_USER, "--password", PORTAL_PASSWORD,
        ], workdir / f"simulator-{port}.log", tier=0)
        started.append(child)
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/_sim/stats", child)
        return cls(child, url)

    async def _call(self, method: str, path: str, timeout: float = REQUEST_TIMEOUT) -> Any:
        self.child.check_alive()
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.request(method, self.url + path) as response,
        ):
            response.raise_for_status()
            return await response.json()

    async def reset(self) -> None:
        await self._call("POST", "/_sim/reset")

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/_sim/stats")
        return result

    async def dossiers(self, fields: Sequence[str] = ()) -> dict[str, Any]:
        """What the simulator holds per dossier; ``fields`` narrows the view (a simulator that does not know
        the parameter answers its default view)."""
        query = f"?fields={','.join(fields)}" if fields else ""
        result: dict[str, Any] = await self._call("GET", "/_sim/dossiers" + query, timeout=300)
        return result


# --------------------------------------------------------------------------------------------------
# Daemon settings: what the bench wants, kept only where this version's settings model has the key


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def fit_settings(model: type[BaseModel], desired: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any],
                                                                                                 list[str]]:
    """``desired`` limited to the keys ``model`` declares (recursively); also the dotted keys left out."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in desired.items():
        declared = model.model_fields.get(key)
        if declared is None:
            dropped.append(prefix + key)
            continue
        section = _model_of(declared.annotation)
        if section is not None and isinstance(value, Mapping):
            kept[key], missing = fit_settings(section, value, f"{prefix}{key}.")
            dropped.extend(missing)
        else:
            kept[key] = value
    return kept, dropped


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def has_setting(dotted: str) -> bool:
    model: type[BaseModel] | None = Settings
    for part in dotted.split("."):
        if model is None or part not in model.model_fields:
            return False
        model = _model_of(model.model_fields[part].annotation)
    return True


@dataclass(frozen=True)
class DaemonConfig:
    path: Path
    settings: Settings
    dropped: tuple[str, ...]


def write_daemon_config(
    path: Path, *, bootstrap: str, topic: str, dlq: str, group: str, portal_url: str, state_url: str,
    admin_port: int, transport: str = "rest",
) -> DaemonConfig:
    desired = {
        "kafka": {
            "bootstrap_servers": bootstrap, "group_id": group, "client_id": "portal-sync-bench",
            "topics": {"dossier_events": topic, "dead_letter": dlq},
            # The local broker holds a JoinGroup for half the session timeout.
            "session_timeout_ms": 6000,
        },
        "portal": {
            "adapter_url": portal_url, "username": PORTAL_USER, "password": PORTAL_PASSWORD, "madonvi": MADONVI,
            "transport": transport, "soap": {"address": f"{portal_url}/soap"},
            "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 1.0},
            # Measure the pipeline, not the limiter.
            "rate_limit": {"requests_per_second": 100_000},
        },
        "state": {"url": state_url},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "log": {"level": "warning", "format": "json"},
    }
    desired = merged(desired, daemon_overrides())
    kept, dropped = fit_settings(Settings, desired)
    path.write_text(yaml.safe_dump(kept, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        settings = Settings(**kept)
    except ValidationError as exc:
        raise BenchError(describe_validation_error(exc, source="the bench's daemon settings")) from None
    return DaemonConfig(path, settings, tuple(dropped))


def setting(settings: Settings, dotted: str, default: Any) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        if not hasattr(value, part):
            return default
        value = getattr(value, part)
    return value


# --------------------------------------------------------------------------------------------------
# The daemon


@dataclass
class Memory:
    """Peak resident memory of one process: VmHWM at the end, max'd with periodic VmRSS samples."""

    peak_kib: int = 0
    samples: int = 0
    at_start_kib: int = 0  # VmRSS when the first event was seen consumed

    def sample(self, pid: int, *, final: bool = False) -> None:
        status = read_status(pid)
        keys = ("VmRSS", "VmHWM") if final else ("VmRSS",)
        for key in keys:
            if key in status:
                self.peak_kib = max(self.peak_kib, status[key])
        self.samples += 1

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def read_status(pid: int) -> dict[str, int]:
    """Memory lines of /proc/<pid>/status in KiB; empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


class Daemon:
    def __init__(self, child: Child, admin_url: str, config: DaemonConfig) -> None:
        self.child = child
        self.admin_url = admin_url
        self.config = config
        self.memory = Memory()

    @classmethod
    async def start(
        cls, workdir: Path, name: str, started: list[Child], *, bootstrap: str, topic: str, dlq: str, group: str,
        portal_url: str, state_url: str, transport: str = "rest",
    ) -> Daemon:
        port = free_port()
        config = write_daemon_config(
            workdir / f"{name}.yaml", bootstrap=bootstrap, topic=topic, dlq=dlq, group=group,
            portal_url=portal_url, state_url=state_url, admin_port=port, transport=transport,
        )
        child = Child(f"daemon {name}", [sys.executable, "-m", "connector", "run", "--config", str(config.path)],
                      workdir / f"{name}.log")
        started.append(child)
        return cls(child, f"http://127.0.0.1:{port}", config)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Prometheus samples by name, then by label set."""
        async with http.get(self.admin_url + "/metrics") as response:
            response.raise_for_status()
            text = await response.text()
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return samples

    async def consumed(self, http: aiohttp.ClientSession) -> float:
        """Events consumed so far; 0 while the admin listener is not up yet."""
        try:
            samples = await self.metrics(http)
        except (aiohttp.ClientError, TimeoutError):
            return 0.0
        return sum(samples.get("portal_sync_events_consumed_total", {}).values())

    async def gc_seconds(self, http: aiohttp.ClientSession) -> float:
        """Time spent in garbage collections so far, all generations."""
        samples = await self.metrics(http)
        return sum(samples.get("portal_sync_gc_pause_seconds_sum", {}).values())

    async def outcomes(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """Events finished, by outcome (synced / skipped / failed)."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            samples = await self.metrics(http)
            totals: dict[str, float] = {}
            for labels, value in samples.get("portal_sync_event_outcomes_total", {}).items():
                outcome = dict(labels).get("outcome", "?")
                totals[outcome] = totals.get(outcome, 0) + value
            return totals
        return {}


@dataclass
class Drained:
    events: int
    seconds: float
    per_instance: list[float] = field(default_factory=list)  # events consumed by each daemon
    all_working_after: float | None = None  # seconds from the first consumed event until every daemon consumed
    outcomes: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # CPU time the daemons used over the same span, all threads
    gc_seconds: float = 0.0  # of which in garbage collections

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds * 1e6 / self.events


async def wait_first_consumed(daemons: Sequence[Daemon], http: aiohttp.ClientSession) -> float:
    """Poll the daemons' /metrics until one has consumed an event; the monotonic time it was seen."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        for daemon in daemons:
            daemon.child.check_alive()
        counts = await asyncio.gather(*(d.consumed(http) for d in daemons))
        if any(counts):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"no daemon consumed anything within {START_TIMEOUT:g} s (group not formed?); "
                             f"log of the first ends with:\n{daemons[0].child.log_tail()}")
        await asyncio.sleep(0.02)


async def drain(
    daemons: Sequence[Daemon], watcher: CommitWatcher, ends: Mapping[int, int], *, timeout: float,
    stall_seconds: float,
) -> Drained:
    """Time the daemons from their first consumed event until the group committed ``ends``."""
    total = sum(ends.values())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as http:
        started = await wait_first_consumed(daemons, http)
        cpu_at_start = [cpu_seconds(daemon.child.pid) for daemon in daemons]
        gc_at_start = await asyncio.gather(*(d.gc_seconds(http) for d in daemons))
        for daemon in daemons:
            daemon.memory.at_start_kib = read_status(daemon.child.pid).get("VmRSS", 0)
        deadline = started + timeout
        last_move, last_left = started, total
        all_working: float | None = None
        next_sample = 0.0
        while True:
            now = time.monotonic()
            for daemon in daemons:
                daemon.child.check_alive()
                if now >= next_sample:
                    daemon.memory.sample(daemon.child.pid)
            if now >= next_sample:
                next_sample = now + 0.25
                if all_working is None and len(daemons) > 1:
                    counts = await asyncio.gather(*(d.consumed(http) for d in daemons))
                    if all(counts):
                        all_working = time.monotonic() - started
            committed = await watcher.read()
            if reached(committed, ends):
                elapsed = time.monotonic() - started
                break
            left = remaining(committed, ends)
            if left < last_left:
                last_move, last_left = now, left
            if now - last_move > stall_seconds:
                raise BenchError(f"committed offsets did not move for {stall_seconds:g} s with {left:,} of "
                                 f"{total:,} events left; log of the first daemon ends with:\n"
                                 f"{daemons[0].child.log_tail()}")
            if now > deadline:
                raise BenchError(f"not drained within {timeout:g} s: {left:,} of {total:,} events left")
            await asyncio.sleep(0.05)
        cpu = sum(cpu_seconds(d.child.pid) - at_start for d, at_start in zip(daemons, cpu_at_start, strict=True))
        gc_used = sum(await asyncio.gather(*(d.gc_seconds(http) for d in daemons))) - sum(gc_at_start)
        for daemon in daemons:
            daemon.memory.sample(daemon.child.pid, final=True)
        per_instance = list(await asyncio.gather(*(d.consumed(http) for d in daemons)))
        outcomes: dict[str, float] = {}
        for daemon in daemons:
            for outcome, value in (await daemon.outcomes(http)).items():
                outcomes[outcome] = outcomes.get(outcome, 0) + value
    return Drained(total, elapsed, per_instance, all_working, outcomes, cpu, gc_used)


# --------------------------------------------------------------------------------------------------
# State store per measurement


@contextlib.asynccontextmanager
async def state_urls(options: Options, workdir: Path, instances: int) -> AsyncIterator[list[str]]:
    """One state URL per instance: a SQLite file each, or one fresh PostgreSQL database shared by all
    (created here, dropped on the way out) when BENCH_STATE_URL is set."""
    if options.state_url is None:
        yield [f"sqlite+aiosqlite:///{workdir / f'state-{uuid.uuid4().hex[:8]}-{i}.db'}" for i in range(instances)]
        return
    import asyncpg  # type: ignore[import-untyped]

    base, _, _database = options.state_url.rpartition("/")
    admin_dsn = options.state_url.replace("+asyncpg", "", 1)
    name = f"portal_sync_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncio.wait_for(asyncpg.connect(admin_dsn), timeout=REQUEST_TIMEOUT)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{base}/{name}"
    try:
        # The schema first, as an operator would before scaling out: daemons starting together on an empty
        # database race to create the same tables.
        store = await asyncio.wait_for(StateStore.open(url), timeout=30)
        await store.close()
        yield [url] * instances
    finally:
        conn = await asyncio.wait_for(asyncpg.connect(admin_dsn), timeout=REQUEST_TIMEOUT)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def state_label(options: Options) -> str:
    if options.state_url is None:
        return "SQLite file per instance"
    return "PostgreSQL, one fresh database per measurement shared by its instances"


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
