"""Statistics end to end: events through the broker and the daemon become dossier facts (written with the
ledger), the month's UpdateStatistic record reaches the simulator with the numbers worked out by hand below, over
REST and over SOAP; pushing again changes nothing; a push killed half-way loses nothing.

March 2026, agency 000.00.01.G12, judged after the month closed (times Asia/Ho_Chi_Minh; 2/3 is a Monday):

| dossier | story | March |
|---|---|---|
| D01 | online, received 2/3, due Fri 20/3 17:00, processed 18/3 | early |
| D02 | received 2/3, due 20/3 17:00, processed 20/3 15:00 | on time |
| D03 | received 2/3, due 20/3 17:00, processed Mon 23/3 | late |
| D04 | supplement asked 9/3 10:00, supplied 13/3 10:00 (versions 3 and 4), processed 24/3 10:00; |  |
|  | less the 4-day pause: 20/3 10:00 | on time |
| D05 | two supplement requests, processed 12/3 | late |
| D06 | online, received 25/3, due 10/4, in process | pending within |
| D07 | received 3/3, due 25/3, in process | pending overdue |
| D08 | withdrawn 10/3 (withdrawn_at), due 20/3 | early, withdrawn |
| D09 | refused at the desk | nowhere |
| D10 | received 20/2, due 10/3, processed 5/3 | carried over, early |
| D11 | no due date: BXD-NLHD-01's 20 working days from Mon 2/3 08:00 = Mon 30/3 08:00; processed 27/3 | early |

received 9 (2 online), carried over 1, total 10; resolved 8 = early 4 + on time 2 + late 2 (withdrawn 1);
pending 2 = within 1 + overdue 1. In time 6 of 8 = 75 %, late 25 %; pending overdue 1 of 2 = 50 %.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

import pytest

from connector.national_time import PORTAL_TZ
from connector.stats.publisher import StatisticsPublisher
from tests.factories import encode, event_dict
from tests.integration.pipeline_harness import (
    Topics,
    clear_faults,
    daemon_config,
    daemon_settings,
    inject_fault,
    over_both_transports,
    portal_stats,
    run_until_committed,
    simulator_call,
    unique_group,
    wait_until,
    write_config,
)
from tests.kafkatools import produce

AGENCY = "000.00.01.G12"
NAME = "Cục Quản lý hoạt động xây dựng"
DUE = "2026-03-20T17:00:00+07:00"
EXPECTED = {
    "madonvi": AGENCY, "Month": 3, "Year": 2026, "IsMonthStatistic": True, "NewReception": 9, "PreExtisting": 1,
    "Total": 10, "TotalSolved": 8, "SolvedInTime": 75.0, "SolvedLate": 25.0, "TotalPending": 2, "Pending": 1,
    "PendingLate": 50.0, "PendingPercent": 50.0, "OrganizationInchargeIdlevel1": AGENCY,
    "OrganizationInchargeName": NAME,
}


def dossier_events(n: int, *steps: tuple[str, str, dict[str, Any]], received: str = "2026-03-02T08:00:00+07:00",
                   due: str | None = DUE, channel: str = "direct") -> list[dict[str, Any]]:
    """One dossier's events: each step is (status, when, more dossier fields), versions 1, 2, ..."""
    no = f"{AGENCY}-260302-{n:04d}"
    found = []
    for version, (status, when, more) in enumerate(steps, start=1):
        fields = {"received_at": received, "due_at": due, "channel": channel, **more}
        document = event_dict(no=no, version=version, status=status, event_type="dossier.updated", **fields)
        document["occurred_at"] = when
        found.append(document)
    return found


def march() -> list[dict[str, Any]]:
    asked = {"sub_status": "supplement_requested"}
    return [
        *dossier_events(1, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("done", "2026-03-18T10:00:00+07:00", {"finished_at": "2026-03-18T10:00:00+07:00"}),
                        channel="online"),
        *dossier_events(2, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("done", "2026-03-20T15:00:00+07:00", {"finished_at": "2026-03-20T15:00:00+07:00"})),
        *dossier_events(3, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("done", "2026-03-23T09:00:00+07:00", {"finished_at": "2026-03-23T09:00:00+07:00"})),
        *dossier_events(4, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("processing", "2026-03-03T08:00:00+07:00", {}),
                        ("waiting", "2026-03-09T10:00:00+07:00", asked),
                        ("processing", "2026-03-13T10:00:00+07:00", {}),
                        ("done", "2026-03-24T10:00:00+07:00", {"finished_at": "2026-03-24T10:00:00+07:00"})),
        *dossier_events(5, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("waiting", "2026-03-04T10:00:00+07:00", asked),
                        ("processing", "2026-03-05T10:00:00+07:00", {}),
                        ("waiting", "2026-03-06T10:00:00+07:00", asked),
                        ("processing", "2026-03-09T10:00:00+07:00", {}),
                        ("done", "2026-03-12T10:00:00+07:00", {"finished_at": "2026-03-12T10:00:00+07:00"})),
        *dossier_events(6, ("received", "2026-03-25T08:00:00+07:00", {}),
                        ("processing", "2026-03-26T08:00:00+07:00", {}),
                        received="2026-03-25T08:00:00+07:00", due="2026-04-10T17:00:00+07:00", channel="online"),
        *dossier_events(7, ("processing", "2026-03-03T08:00:00+07:00", {}),
                        received="2026-03-03T08:00:00+07:00", due="2026-03-25T17:00:00+07:00"),
        *dossier_events(8, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("withdrawn", "2026-03-11T08:00:00+07:00",
                         {"withdrawn_at": "2026-03-10T09:00:00+07:00", "finished_at": "2026-03-11T08:00:00+07:00"})),
        *dossier_events(9, ("new", "2026-03-02T08:00:00+07:00", {}),
                        ("refused", "2026-03-02T08:30:00+07:00", {"refusal": "at_desk"})),
        *dossier_events(10, ("received", "2026-02-20T08:00:00+07:00", {}),
                        ("done", "2026-03-05T10:00:00+07:00", {"finished_at": "2026-03-05T10:00:00+07:00"}),
                        received="2026-02-20T08:00:00+07:00", due="2026-03-10T17:00:00+07:00"),
        *dossier_events(11, ("received", "2026-03-02T08:00:00+07:00", {}),
                        ("done", "2026-03-27T10:00:00+07:00", {"finished_at": "2026-03-27T10:00:00+07:00"}),
                        due=None),
    ]


def after_march() -> datetime:
    return datetime(2026, 4, 2, 9, 0, tzinfo=PORTAL_TZ)  # within the days March's final figures are pushed


async def kept(portal_url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await simulator_call(
        "GET", f"{portal_url}/_sim/statistics?agency={AGENCY}&year=2026&month=3")
    return found


async def drained_daemon(kafka_bootstrap: str, topics: Any, portal_url: str, tmp_path: Any,
                         while_running: Any) -> Any:
    stream = Topics(await topics.create("dossier.events", partitions=2),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    ends = await produce(kafka_bootstrap, stream.events, [encode(e) for e in march()])
    settings = daemon_settings(kafka_bootstrap, portal_url, stream, tmp_path)
    # The daemon's own schedule is left on: with the real clock (after March) it pushes nothing for March.
    return await run_until_committed(settings, kafka_bootstrap, stream, ends, while_running=while_running)


@pytest.mark.broker
@over_both_transports
async def test_the_month_reaches_the_portal_with_the_hand_worked_numbers_and_a_second_run_sends_nothing(
    kafka_bootstrap, topics, portal_url, tmp_path
) -> None:
    async def push_twice(service: Any) -> tuple[Any, Any]:
        publisher = StatisticsPublisher(service.settings, service.store, service.gateway, service.metrics,
                                        clock=after_march)
        first = await asyncio.wait_for(publisher.run_once(), 60)
        second = await asyncio.wait_for(publisher.run_once(), 60)
        return first, second

    _, (first, second) = await drained_daemon(kafka_bootstrap, topics, portal_url, tmp_path, push_twice)

    # March as final, and April (the current month for this clock) as provisional: D06 and D07 carried into it.
    assert [(r.agency_code, str(r.period), r.final, r.outcome) for r in first] == [
        (AGENCY, "2026-03", True, "pushed"), (AGENCY, "2026-04", False, "pushed")]
    assert [r.outcome for r in second] == ["unchanged", "unchanged"]
    [held] = await kept(portal_url)
    record = {k: v for k, v in held["record"].items() if k != "Note"}
    assert record == EXPECTED
    assert "chốt tháng" in held["record"]["Note"]
    assert held["pushes"] == 1
    [april] = await simulator_call("GET", f"{portal_url}/_sim/statistics?agency={AGENCY}&year=2026&month=4")
    assert {k: april["record"][k] for k in ("NewReception", "PreExtisting", "Total", "TotalPending")} == {
        "NewReception": 0, "PreExtisting": 2, "Total": 2, "TotalPending": 2}


@pytest.mark.broker
@pytest.mark.parametrize("how", ["refused while the portal is down", "applied but never answered"])
async def test_a_push_killed_half_way_loses_nothing(kafka_bootstrap, topics, portal_url, tmp_path, how) -> None:
    await drained_daemon(kafka_bootstrap, topics, portal_url, tmp_path, None)
    stream = Topics("unused", "unused", unique_group())
    config = write_config(tmp_path / "config.yaml", {
        **daemon_config(kafka_bootstrap, portal_url, stream, tmp_path), "admin": {"listen": "127.0.0.1:0"}})
    if how == "refused while the portal is down":
        await inject_fault(portal_url, service="UpdateStatistic", status=503, times=100_000)
    else:
        await inject_fault(portal_url, service="UpdateStatistic", status=None, delay_seconds=3600, times=1)
    args = [sys.executable, "-m", "connector", "stats", "push", "--month", "2026-03", "--config", str(config),
            "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SYNC__")}
    pushing = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        async def portal_met_the_push() -> bool:
            calls = (await portal_stats(portal_url))["calls"].get("UpdateStatistic", {})
            return sum(calls.values()) >= 1

        await wait_until(portal_met_the_push, timeout=60, what="the push to reach the portal")
    finally:
        pushing.kill()  # a crash mid-push: nothing it held in memory survives
        await asyncio.wait_for(pushing.wait(), 30)
    await clear_faults(portal_url)

    again = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0, err.decode()[-2000:]
    assert [r["outcome"] for r in json.loads(out)] == ["pushed"]
    [held] = await kept(portal_url)
    assert {k: v for k, v in held["record"].items() if k != "Note"} == EXPECTED
    # Down: nothing had arrived, now it has, once. Applied but unanswered: sent again, the same record.
    assert held["pushes"] == (1 if how == "refused while the portal is down" else 2)
    assert held["duplicate_pushes"] == (0 if how == "refused while the portal is down" else 1)
