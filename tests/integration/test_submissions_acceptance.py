"""Citizen submissions from the national portal into Kafka, exactly once, through three SIGKILLs.

1,000 submissions arrive on the simulated portal over time: some late (submitted the day before, listed only
after that day was polled), some with a file above the inline limit; once the first hundred have been taken
in, their citizens amend them (revision 2). The daemon polls them, and is killed without warning three times
on the way. Afterwards ``portal.submissions`` holds exactly one record per submission revision, every file
the records name is verifiable by sha256 (inline or in the attachments directory), and the portal has been
told about every revision.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.config import KafkaSettings
from connector.kafka import read_topic
from connector.outbox.relay import MESSAGE_ID_HEADER
from tests.integration.pipeline_harness import (
    SIM,
    Topics,
    daemon_config,
    over_both_transports,
    unique_group,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.broker, over_both_transports]

AGENCY = "000.00.01.G12"
SUBMISSIONS = 1_000
AMENDED = 100
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
INLINE_LIMIT = 512 * 1024


async def _sim(portal_url: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.request(
            method, portal_url + path, json=body) as response:
        assert response.status < 300, f"{method} {path}: {response.status} {await response.text()}"
        return await response.json()


async def _acknowledged(portal_url: str) -> dict[str, set[int]]:
    views = await _sim(portal_url, "GET", "/_sim/submissions")
    return {no: {int(r) for r in view["acknowledged"]} for no, view in views.items()}


async def _progress(portal_url: str, at_least: int, daemon: asyncio.subprocess.Process, log: Path) -> bool:
    if daemon.returncode is not None:
        raise AssertionError(f"the daemon exited on its own ({daemon.returncode}):\n{_tail(log)}")
    return sum(len(revisions) for revisions in (await _acknowledged(portal_url)).values()) >= at_least


async def _everything_acknowledged(portal_url: str, expected: dict[str, set[int]],
                                   daemon: asyncio.subprocess.Process, log: Path) -> bool:
    if daemon.returncode is not None:
        raise AssertionError(f"the daemon exited on its own ({daemon.returncode}):\n{_tail(log)}")
    acknowledged = await _acknowledged(portal_url)
    return all(expected[no] <= acknowledged.get(no, set()) for no in expected)


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


async def _amend(portal_url: str, numbers: list[str]) -> None:
    """Revision 2 of each: another summary, one new file, registered as the citizen's amendment."""
    from connector.config import PortalSettings
    from connector.portal.client import PortalClient

    settings = PortalSettings(adapter_url=portal_url, username=SIM.username, password=SIM.password,
                              madonvi=AGENCY)
    amendments = []
    async with PortalClient(settings) as portal:
        for no in numbers:
            record = await asyncio.wait_for(portal.submission(no), 10)
            content = f"Bản bổ sung của hồ sơ {no}".encode() * 20
            amendments.append({
                **{k: v for k, v in record.items() if k != "TaiLieuNop"}, "PhienBan": "2",
                "TrichYeuHoSo": f"{record.get('TrichYeuHoSo', '')} (bổ sung)",
                "TaiLieuNop": [{"TepDinhKemId": f"{no}-bs", "TenTepDinhKem": "Văn bản giải trình bổ sung.pdf",
                                "MaThanhPhanHoSo": "TPHS-BS", "Base64": base64.b64encode(content).decode()}]})
    await _sim(portal_url, "POST", "/_sim/submissions", {"submissions": amendments})


async def _published(settings: KafkaSettings, topic: str) -> list[Any]:
    records: list[Any] = []
    async for batch in read_topic(settings, topic, wait_seconds=30):
        records.extend(batch)
    return records


async def test_a_thousand_submissions_reach_kafka_exactly_once_per_revision_through_three_sigkills(
        kafka_bootstrap, topics, portal_url, tmp_path, start_daemon) -> None:
    began = time.monotonic()
    stream = Topics(await topics.create("dossier.events", partitions=1),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    submissions_topic = await topics.create("portal.submissions", partitions=3)
    settings = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    settings["kafka"]["topics"]["submissions"] = submissions_topic
    settings["portal"]["madonvi"] = AGENCY
    settings["portal"]["rate_limit"] = {"requests_per_second": 2000, "max_concurrent_requests": 16}
    attachments = tmp_path / "attachments"
    settings["submissions"] = {"poll": True, "poll_interval_seconds": 0.3, "overlap_days": 1, "concurrency": 8,
                               "agencies": [AGENCY], "attachments_dir": str(attachments),
                               "max_inline_bytes": INLINE_LIMIT}
    settings["log"] = {"level": "info", "format": "json"}
    config = write_config(tmp_path / "config.yaml", settings)
    log = tmp_path / "daemon.log"

    generated = await _sim(portal_url, "POST", "/_sim/submissions/generate", {
        "count": SUBMISSIONS, "agency": AGENCY, "seed": 11, "late_ratio": 0.1, "amend_ratio": 0.0,
        "large_file_ratio": 0.05, "large_file_bytes": 700_000, "spread_seconds": 8})
    assert generated["generated"] == SUBMISSIONS
    expected = {no: {1} for no in await _sim(portal_url, "GET", "/_sim/submissions")}

    amended: list[str] = []
    for kill, target in enumerate((150, 450, 800), start=1):
        daemon = await start_daemon(config, log)
        await wait_until(functools.partial(_progress, portal_url, target, daemon, log), timeout=120,
                         what=f"run {kill} to have {target} revisions acknowledged", interval=0.2)
        daemon.kill()
        assert await asyncio.wait_for(daemon.wait(), timeout=10) == -signal.SIGKILL
        print(f"kill {kill}: {time.monotonic() - began:.1f} s after the start, {target}+ revisions acknowledged")
        if kill == 1:  # citizens amend what the agency has received
            acknowledged = await _acknowledged(portal_url)
            amended = sorted(no for no, revisions in acknowledged.items() if revisions)[:AMENDED]
            await _amend(portal_url, amended)
            for no in amended:
                expected[no] = {1, 2}

    final = await start_daemon(config, log)
    try:
        await wait_until(functools.partial(_everything_acknowledged, portal_url, expected, final, log),
                         timeout=180, what="every submission revision acknowledged", interval=0.2)
    finally:
        if final.returncode is None:
            final.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(final.wait(), timeout=60) == 0, _tail(log)
    print(f"everything acknowledged {time.monotonic() - began:.1f} s after the start")

    records = await _published(KafkaSettings(bootstrap_servers=kafka_bootstrap), submissions_topic)
    ids = collections.Counter(
        next(v.decode() for k, v in r.headers if k == MESSAGE_ID_HEADER) for r in records)
    twice = {i: n for i, n in ids.items() if n > 1}
    assert not twice, f"published more than once: {dict(list(twice.items())[:5])}"
    wanted = {f"submission:{no}:{rev}" for no, revisions in expected.items() for rev in revisions}
    assert set(ids) == wanted, (f"missing {sorted(wanted - set(ids))[:5]}, unexpected {sorted(set(ids) - wanted)[:5]}")

    stored_apart = inline = 0
    for record in records:
        assert record.key.decode() == json.loads(record.value)["submission"]["no"]
        for document in json.loads(record.value)["submission"]["documents"]:
            if "content_base64" in document:
                content = base64.b64decode(document["content_base64"])
                inline += 1
                assert len(content) <= INLINE_LIMIT
            else:
                path = Path(document["path"])
                assert path.parent == attachments and path.name == document["sha256"]
                content = path.read_bytes()  # noqa: ASYNC240 - a test reading what it checks
                stored_apart += 1
            assert len(content) == document["size"]
            assert hashlib.sha256(content).hexdigest() == document["sha256"]
    assert stored_apart > 0, "no file went to the attachments directory: the size rule went untested"
    late = sum(1 for r in records if json.loads(r.value)["submission"]["submitted_at"][:10]
               < max(json.loads(x.value)["submission"]["submitted_at"][:10] for x in records[:1]))
    print(f"{len(records)} records for {len(expected)} submissions ({len(amended)} amended), {inline} files inline, "
          f"{stored_apart} in the attachments directory; {late} or more submitted the day before")
