"""What the push-pipeline tests share: settings for a daemon pointed at a test broker and simulator,
and reading what the simulator holds."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from connector.config import DEFAULT_MAPPINGS_DIR, Settings, load_settings
from connector.dev.simulator.app import SimulatorConfig
from connector.push.events import DossierEvent, InvalidEvent, decode_event
from connector.push.mapping import MappingError, Mappings, load_mappings, map_event
from connector.service import Service
from tests.kafkatools import GROUP_TIMING, wait_for_committed

SIM = SimulatorConfig()
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
TRANSPORTS = ("rest", "soap")
# For a module whose tests must hold over both transports: ``pytestmark = over_both_transports``.
over_both_transports = pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)


class PortalUrl(str):
    """The simulator's base URL, and the transport a daemon pointed at it uses."""

    transport: str

    def __new__(cls, url: str, transport: str = "rest") -> PortalUrl:
        made = super().__new__(cls, url)
        made.transport = transport
        return made


def portal_config(portal_url: str, transport: str | None = None) -> dict[str, Any]:
    """``portal`` settings for the simulator at ``portal_url``, over ``transport`` (default: the URL's)."""
    chosen = transport or getattr(portal_url, "transport", "rest")
    return {
        "transport": chosen,
        "adapter_url": str(portal_url),
        "soap": {"address": f"{portal_url}{SIM.soap_path}"},
        "username": SIM.username,
        "password": SIM.password,
        "madonvi": "000.00.01.G12",
        "timeout_seconds": 10,
        "retry": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.5},
    }


@dataclass(frozen=True)
class Topics:
    events: str
    dead_letter: str
    group: str


def daemon_config(bootstrap: str, portal_url: str, topics: Topics, state_dir: Path) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": topics.group,
            "topics": {"dossier_events": topics.events, "dead_letter": topics.dead_letter},
            # A short session makes the group form quickly (the local broker waits half of it).
            **GROUP_TIMING,
        },
        "portal": portal_config(portal_url),
        "state": {"url": f"sqlite+aiosqlite:///{state_dir / 'state.db'}"},
        "admin": {"listen": "127.0.0.1:0"},
        "log": {"level": "debug", "format": "json"},
    }


def daemon_settings(*args: Any) -> Settings:
    return load_settings(None, **daemon_config(*args))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def unique_group() -> str:
    return f"portal-sync-test-{uuid.uuid4().hex[:8]}"


async def simulator_call(method: str, url: str, *, expect: int = 200, **kwargs: Any) -> Any:
    """One call to the simulator's knobs or inspection, which must answer ``expect``: its JSON reply."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.request(method, url, **kwargs) as reply:
        assert reply.status == expect, (await reply.text())[:300]
        return await reply.json()


async def portal_dossiers(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{base_url}/_sim/dossiers") as r:
        r.raise_for_status()
        result: dict[str, Any] = await r.json()
        return result


async def portal_stats(base_url: str, *, fields: str | None = None) -> dict[str, Any]:
    """The simulator's counters; ``fields="all"`` adds the duplicate_pushes and duplicate_steps totals."""
    params = {"fields": fields} if fields is not None else {}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(
        f"{base_url}/_sim/stats", params=params
    ) as r:
        r.raise_for_status()
        result: dict[str, Any] = await r.json()
        return result


async def records_pushed(base_url: str) -> int:
    """How many records the portal has received in ``DongBoHoSoMC`` calls that took effect, re-sends
    included (only the per-dossier counts are fetched, not the records)."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(
        f"{base_url}/_sim/dossiers", params={"fields": "pushes"}
    ) as r:
        r.raise_for_status()
        dossiers: dict[str, Any] = await r.json()
    return sum(d["pushes"] for d in dossiers.values())


async def run_until_committed(
    settings: Settings, bootstrap: str, topics: Topics, expected_offsets: dict[int, int], *,
    mappings: Mappings | None = None, while_running: Any = None,
) -> Any:
    """Run the daemon in-process until the group committed ``expected_offsets``, then stop it.
    Returns the service and what ``while_running(service)`` (if given) returned just before stopping."""
    async with Service(settings, mappings=mappings) as service:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        try:
            await wait_for_committed(bootstrap, topics.group, topics.events, expected_offsets, timeout=120)
            observed = await while_running(service) if while_running is not None else None
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)
    return service, observed


async def inject_fault(base_url: str, **fault: Any) -> None:
    """Arm a simulator fault (see connector.dev.simulator.state.Fault)."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
        f"{base_url}/_sim/faults", json=fault
    ) as reply:
        assert reply.status == 201, await reply.text()


async def clear_faults(base_url: str) -> None:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.delete(f"{base_url}/_sim/faults") as reply:
        assert reply.status == 200, await reply.text()


async def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll an async predicate until true; fail naming what was awaited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Expected:
    """What the portal must hold after the stream: per dossier the newest record and every step in order."""

    records: dict[str, dict[str, Any]]
    versions: dict[str, int]
    steps: dict[str, list[dict[str, Any]]]


def expected_portal_state(messages: list[Any], mappings: Mappings) -> Expected:
    records: dict[str, dict[str, Any]] = {}
    versions: dict[str, int] = {}
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        try:
            event: DossierEvent = decode_event(message.key, message.value, max_bytes=1 << 20)
            mapped = map_event(event, mappings)
        except (InvalidEvent, MappingError):
            continue
        if event.dossier.origin != "local":
            continue
        no = event.dossier.no
        if event.dossier.version > versions.get(no, 0):
            versions[no] = event.dossier.version
            records[no] = mapped.record
            if mapped.step is not None:
                steps[no].append(mapped.step)
    return Expected(records, versions, dict(steps))


def version_in(record: dict[str, Any]) -> int | None:
    """The version a pushed record came from: sample notes carry "(phiên bản N)" (None where a length
    limit cut it off)."""
    note = record.get("GhiChu", "")
    marker = "(phiên bản "
    start = note.rfind(marker)
    if start < 0:
        return None
    return int(note[start + len(marker):].split(")", 1)[0])


def first_occurrences(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for step in steps:
        if step not in seen:
            seen.append(step)
    return seen


async def assert_portal_holds_newest(portal_url: str, messages: list[Any], *, resent_steps_allowed: bool = False,
                                     replayed_versions_allowed: bool = False) -> Expected:
    """The portal holds exactly the dossiers of ``messages``, each at its newest version, with every step
    once and in order, and no older version was ever pushed after a newer one. ``resent_steps_allowed``:
    after ambiguous timeouts a step may arrive again (the adapter has no idempotency key for steps); then
    every step must still arrive, and first arrive in order. ``replayed_versions_allowed``: after a crash
    the events that were in flight are delivered again, and one of them may be pushed after a newer version
    that reached the portal but was not yet recorded as synced; the dossier must still end at its newest
    version (the caller counts and bounds such replays, see ``pushed_versions``)."""
    expected = expected_portal_state(messages, load_mappings(DEFAULT_MAPPINGS_DIR))
    portal = await portal_dossiers(portal_url)
    assert set(portal) == set(expected.records)
    for no, record in expected.records.items():
        assert portal[no]["record"] == record, f"{no}: not at its newest version"
        steps = first_occurrences(portal[no]["steps"]) if resent_steps_allowed else portal[no]["steps"]
        assert steps == expected.steps.get(no, []), f"{no}: a step was lost, repeated or reordered"
        if not replayed_versions_allowed:
            versions = pushed_versions(portal[no]["history"])
            assert versions == sorted(versions), f"{no}: an older version was pushed after a newer one"
    return expected


def pushed_versions(history: list[dict[str, Any]]) -> list[int]:
    """The versions of a dossier's pushed records, in arrival order (records whose note was cut are left out)."""
    return [v for v in map(version_in, history) if v is not None]
