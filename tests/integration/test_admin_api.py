"""The operators' scenario through the admin API of a running daemon: bearer token or 401, list the
failures, fix the mapping, dry-run (nothing sent), replay, and the portal holds every dossier at its
newest version; plus readiness, discard and the API's JSON errors."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.service import Service
from tests.integration.pipeline_harness import (
    HTTP_TIMEOUT,
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    daemon_settings,
    portal_stats,
    records_pushed,
    unique_group,
)
from tests.integration.replay_scenario import FAILING, UNMAPPED, mappings_without, numbered, scenario_events
from tests.kafkatools import produce, wait_for_committed

pytestmark = pytest.mark.broker

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def daemon(topics, kafka_bootstrap, portal_url, tmp_path) -> AsyncIterator[tuple[Service, Topics, Path, list]]:
    """A running daemon with the unmapped-procedure scenario consumed and committed."""
    stream = Topics(await topics.create("dossier.events", partitions=3),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    mappings_dir = mappings_without(UNMAPPED, tmp_path / "mappings")
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    config["mappings"] = {"dir": str(mappings_dir)}
    config["admin"] = {"listen": "127.0.0.1:0", "token_file": str(token_file)}
    settings = load_settings(None, **config)
    messages = scenario_events()
    ends = await produce(kafka_bootstrap, stream.events, messages)
    async with Service(settings) as service:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        try:
            await wait_for_committed(kafka_bootstrap, stream.group, stream.events, ends, timeout=120)
            yield service, stream, mappings_dir, messages
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)


async def call(http: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str] | None = None,
               **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, headers=AUTH if headers is None else headers, **kwargs) as response:
        return response.status, await response.json()


async def test_the_replay_scenario_through_the_admin_api(daemon, portal_url) -> None:
    service, _stream, mappings_dir, messages = daemon
    api = service.admin_url
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        # Without the token, or with a wrong one: 401, with a JSON reason. Probes need none.
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            status, body = await call(http, "GET", f"{api}/api/failures", headers=headers)
            assert status == 401 and "token" in body["error"]
        assert (await call(http, "GET", f"{api}/healthz", headers={}))[0] == 200
        status, ready = await call(http, "GET", f"{api}/readyz", headers={})
        assert (status, ready["checks"]) == (200, {"broker": "ok", "state_store": "ok", "portal": "ok"})

        status, listed = await call(http, "GET", f"{api}/api/failures", params={"reason": "unmapped_procedure"})
        assert status == 200 and listed["total"] == FAILING
        assert {f["dossier_no"] for f in listed["failures"]} == {numbered(i) for i in range(1, FAILING + 1)}
        status, page = await call(http, "GET", f"{api}/api/failures", params={"limit": "20"})
        assert (len(page["failures"]), page["next_after_id"]) == (20, page["failures"][-1]["id"])
        first = listed["failures"][0]["id"]
        status, shown = await call(http, "GET", f"{api}/api/failures/{first}")
        assert status == 200 and shown["attempts_history"][0]["reason"] == "unmapped_procedure"

        shutil.copy(DEFAULT_MAPPINGS_DIR / "procedures.yaml", mappings_dir / "procedures.yaml")
        pushed_before, calls_before = await records_pushed(portal_url), await portal_stats(portal_url)
        status, planned = await call(http, "POST", f"{api}/api/replay", json={"all": True, "dry_run": True})
        assert status == 200 and len(planned["failures"]) == FAILING
        assert (planned["dry_run"], planned["counts"]) == (True, {"send": FAILING - 1, "superseded": 1})
        assert {item["failure_id"] for item in planned["failures"]} == {f["id"] for f in listed["failures"]}
        actions = {item["dossier_no"]: item["action"] for item in planned["failures"]}
        assert actions.pop(numbered(1)) == "superseded"
        assert set(actions.values()) == {"send"}
        assert (await records_pushed(portal_url), await portal_stats(portal_url)) == (pushed_before, calls_before)

        status, replayed = await call(http, "POST", f"{api}/api/replay", json={"all": True, "by": "an operator"})
        assert status == 200 and replayed["counts"] == {"replayed": FAILING - 1, "resolved": 1}
        assert replayed["dry_run"] is False and set(replayed) == set(planned)
        done = {item["dossier_no"]: (item["action"], item["state"]) for item in replayed["failures"]}
        assert done.pop(numbered(1)) == ("superseded", "resolved")
        assert set(done.values()) == {("send", "replayed")}
        await assert_portal_holds_newest(portal_url, messages)
        await service.audit.flush()  # the audit trail names the replayed dossier's push
        audited = await service.store.portal_calls(dossier_no=numbered(2))
        assert any(row["service"] == "DongBoHoSoMC" and row["result"] == "ok" for row in audited)
        status, left = await call(http, "GET", f"{api}/api/failures")
        assert left["total"] == 0
        status, one = await call(http, "GET", f"{api}/api/failures/{first}")
        assert one["state"] in ("replayed", "resolved") and one["state_changed_by"] == "an operator (admin api)"

        # Discarding what is not open is refused; unknown ids and bad input are clear JSON errors.
        status, body = await call(http, "POST", f"{api}/api/failures/{first}/discard", json={"reason": "dup"})
        assert status == 409 and "not open" in body["error"]
        status, body = await call(http, "GET", f"{api}/api/failures/999999")
        assert status == 404 and body["error"] == "no failure 999999"
        status, body = await call(http, "POST", f"{api}/api/failures/{first}/discard", json={})
        assert status == 400 and body["error"].startswith("reason:")
        status, body = await call(http, "POST", f"{api}/api/replay", json={"dry_run": True})
        assert status == 400 and "select failures" in body["error"]
        status, body = await call(http, "GET", f"{api}/api/failures", params={"state": "lost"})
        assert status == 400 and body["error"].startswith("state:")
        status, body = await call(http, "POST", f"{api}/api/replay", json={"all": True, "colour": "red"})
        assert status == 400 and body["error"].startswith("colour:")


async def test_without_a_configured_token_the_api_refuses_everyone(topics, kafka_bootstrap, portal_url,
                                                                   tmp_path) -> None:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    unique_group())
    async with Service(daemon_settings(kafka_bootstrap, portal_url, stream, tmp_path)) as service, \
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        status, body = await call(http, "GET", f"{service.admin_url}/api/failures")
        assert status == 401 and "no admin token is configured" in body["error"]
        assert (await call(http, "GET", f"{service.admin_url}/healthz", headers={}))[0] == 200


async def test_readiness_names_the_part_that_does_not_answer_and_only_its_class(topics, kafka_bootstrap,
                                                                                 tmp_path) -> None:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    unique_group())
    closed_port = "http://127.0.0.1:9"  # discard: nothing listens there
    async with Service(daemon_settings(kafka_bootstrap, closed_port, stream, tmp_path)) as service, \
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        status, body = await readiness_once_known(http, service)
        assert status == 503 and body["status"] == "not ready"
        assert body["checks"] == {"broker": "ok", "state_store": "ok", "portal": "PortalUnavailable (network)"}


async def readiness_once_known(http: aiohttp.ClientSession, service: Service, *, timeout: float = 30.0
                               ) -> tuple[int, Any]:
    """/readyz once the adapter's state is known (readiness reads the last known state and does not wait)."""
    await asyncio.wait_for(service.portal_state_known(), timeout)
    return await call(http, "GET", f"{service.admin_url}/readyz", headers={})


@pytest.mark.parametrize(("password", "portal", "logins"), [
    (None, "ok", {"ok": 1}),
    ("not-the-password", "LoginFailed (login_failed)", {"rejected": 1}),
])
async def test_readiness_reports_the_last_known_state_and_never_logs_in_itself(
        topics, kafka_bootstrap, portal_url, tmp_path, password: str | None, portal: str,
        logins: dict[str, int]) -> None:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"),
                    unique_group())
    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    if password is not None:
        config["portal"]["password"] = password
    async with Service(load_settings(None, **config)) as service, \
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        await readiness_once_known(http, service)
        for _ in range(20):  # a probe every second, for a while
            status, body = await call(http, "GET", f"{service.admin_url}/readyz", headers={})
            assert (status == 200, body["checks"]["portal"]) == (portal == "ok", portal)
        # One login, the start-up one, whatever the probes; a refused one is not tried again at once.
        assert (await portal_stats(portal_url))["logins"] == logins
