"""``UpdateStatistic`` against the real simulator on loopback, over its JSON face and its SOAP face: reports kept
per agency × month and read back at ``GET /_sim/statistics``, a re-push replacing the report, bad reports refused
naming the field, and the fault knobs applying to the service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import pytest
from lxml import etree

from connector.config import PortalSettings
from connector.dev.simulator.app import start_simulator
from connector.portal.client import PortalClient
from connector.portal.errors import PortalRejected, PortalUnavailable
from connector.portal.soap import SOAP11
from tests.integration.pipeline_harness import SIM, TRANSPORTS, portal_config

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
CALL_SECONDS = 15.0  # any one await on the network
SERVICE = "UpdateStatistic"
AGENCY = "000.00.01.G12"
MESSAGES_NS = "urn:portal-sync:dvcqg:v1"
TYPES_NS = "urn:portal-sync:dvcqg:types:v1"

over_both_faces = pytest.mark.parametrize("transport", TRANSPORTS)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A fresh simulator on a free loopback port (it serves both faces)."""
    runner, base = await asyncio.wait_for(start_simulator("127.0.0.1", 0, SIM), CALL_SECONDS)
    yield base
    await asyncio.wait_for(runner.cleanup(), CALL_SECONDS)


async def within(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, CALL_SECONDS)


def client_for(url: str, transport: str) -> PortalClient:
    return PortalClient(PortalSettings(**portal_config(url, transport)))


def report(transport: str = "rest", **changes: Any) -> dict[str, Any]:
    """An ``UpdateStatistic`` report as each face's client would naturally write it: JSON numbers and the "True"
    string over REST, a boolean and decimal texts over SOAP (``madonvi`` comes from the settings)."""
    soap = transport == "soap"
    params: dict[str, Any] = {
        "Month": 3, "Year": 2024, "IsMonthStatistic": True if soap else "True",
        "NewReception": 10, "PreExtisting": 2, "Total": 12, "TotalSolved": 8,
        "SolvedInTime": "87.50" if soap else 87.5, "SolvedLate": "12.5" if soap else 12.5,
        "TotalPending": 4, "Pending": 3, "PendingLate": "25" if soap else 25,
        "PendingPercent": "33.33" if soap else 33.33, "Note": "tháng 3",
        "OrganizationInchargeIdlevel1": AGENCY, "OrganizationInchargeName": "Cục Quản lý hoạt động xây dựng",
    }  # fmt: skip
    params.update(changes)
    return params


KEPT = {
    "madonvi": AGENCY, "Month": 3, "Year": 2024, "IsMonthStatistic": True,
    "NewReception": 10, "PreExtisting": 2, "Total": 12, "TotalSolved": 8,
    "SolvedInTime": 87.5, "SolvedLate": 12.5, "TotalPending": 4, "Pending": 3,
    "PendingLate": 25, "PendingPercent": 33.33, "Note": "tháng 3",
    "OrganizationInchargeIdlevel1": AGENCY, "OrganizationInchargeName": "Cục Quản lý hoạt động xây dựng",
}  # fmt: skip


async def sim_get(url: str, path: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{url}{path}", params=params) as r:
        return r.status, await r.json()


async def sim_post(url: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(f"{url}{path}", json=body) as r:
        return r.status, await r.json()


async def kept(url: str, **filters: str) -> list[dict[str, Any]]:
    status, body = await within(sim_get(url, "/_sim/statistics", **filters))
    assert status == 200, body
    assert isinstance(body, list)
    return body


async def calls(url: str) -> dict[str, Any]:
    status, body = await within(sim_get(url, "/_sim/stats"))
    assert status == 200
    counted: dict[str, Any] = body["calls"].get(SERVICE, {})
    return counted


# --- accepted and kept -------------------------------------------------------------------------------------


@over_both_faces
async def test_a_report_is_accepted_and_kept(url: str, transport: str) -> None:
    async with client_for(url, transport) as client:
        reply = await within(client.call(SERVICE, report(transport)))
    assert reply["error_code"] == "0"
    [stored] = await kept(url)
    assert stored["record"] == KEPT  # the same normal form whichever face it came through
    assert (stored["pushes"], stored["duplicate_pushes"]) == (1, 0)
    assert stored["first_received_at"] == stored["last_received_at"] > 0
    assert await calls(url) == {"ok": 1}


@over_both_faces
async def test_a_report_pushed_twice_is_kept_once_with_two_pushes(url: str, transport: str) -> None:
    async with client_for(url, transport) as client:
        await within(client.call(SERVICE, report(transport)))
        await within(client.call(SERVICE, report(transport)))
        corrected = report(transport, NewReception=11, Total=13, TotalPending=5, Pending=4)
        await within(client.call(SERVICE, corrected))
    [stored] = await kept(url)
    assert stored["record"] == {**KEPT, "NewReception": 11, "Total": 13, "TotalPending": 5, "Pending": 4}
    assert (stored["pushes"], stored["duplicate_pushes"]) == (3, 1)
    assert stored["first_received_at"] <= stored["last_received_at"]
    assert await calls(url) == {"ok": 3}


async def test_the_same_report_over_each_face_is_one_report(url: str) -> None:
    for transport in TRANSPORTS:
        async with client_for(url, transport) as client:
            await within(client.call(SERVICE, report(transport)))
    [stored] = await kept(url)
    assert stored["record"] == KEPT
    assert (stored["pushes"], stored["duplicate_pushes"]) == (2, 1)


async def test_the_read_back_filters_and_the_reset_forgets(url: str) -> None:
    async with client_for(url, "rest") as client:
        for changes in ({}, {"Month": 4}, {"Year": 2023}, {"IsMonthStatistic": "False"},
                        {"OrganizationInchargeIdlevel1": "000.00.02.G12"}):
            await within(client.call(SERVICE, report(**changes)))

    def keys(views: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [tuple(v["record"][name] for name in ("OrganizationInchargeIdlevel1", "Year", "Month",
                                                     "IsMonthStatistic")) for v in views]

    assert keys(await kept(url)) == [(AGENCY, 2023, 3, True), (AGENCY, 2024, 3, True), (AGENCY, 2024, 3, False),
                                     (AGENCY, 2024, 4, True), ("000.00.02.G12", 2024, 3, True)]
    assert keys(await kept(url, agency="000.00.02.G12")) == [("000.00.02.G12", 2024, 3, True)]
    assert keys(await kept(url, agency=AGENCY, year="2024", month="4")) == [(AGENCY, 2024, 4, True)]
    assert len(await kept(url, month="3")) == 4
    for name, value in (("year", "twenty"), ("month", "-1"), ("month", "³")):
        status, body = await within(sim_get(url, "/_sim/statistics", **{name: value}))
        assert status == 400
        assert body["error"].startswith(f"{name}: must be a whole number")
    assert await within(sim_post(url, "/_sim/reset")) == (200, {"reset": True})
    assert await kept(url) == []


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "message"), [
    ({"Month": 13}, "Month: must be at most 12"),
    ({"NewReception": -1}, "NewReception: must be at least 0"),
    ({"SolvedLate": 12.345}, "SolvedLate: must have at most 2 decimals"),
    ({"IsMonthStatistic": "yes"}, 'IsMonthStatistic: must be true or false (or the string "True" or "False")'),
    ({"OrganizationInchargeName": None}, "OrganizationInchargeName: required"),
])  # fmt: skip
async def test_a_bad_report_over_json_is_refused_naming_the_field(
        url: str, changes: dict[str, Any], message: str) -> None:
    params = {key: value for key, value in report(**changes).items() if value is not None}
    async with client_for(url, "rest") as client:
        with pytest.raises(PortalRejected) as refused:
            await within(client.call(SERVICE, params))
    assert refused.value.error_code == "-1"
    assert message in refused.value.message
    assert await kept(url) == []
    assert await calls(url) == {"rejected": 1}


async def test_a_rule_beyond_the_xsd_is_refused_over_soap_like_over_json(url: str) -> None:
    """An empty agency name passes the XSD (``Text500``) and the client's check; the simulator refuses it with the
    adapter's code, which reaches the client through the SOAP fault's detail."""
    async with client_for(url, "soap") as client:
        with pytest.raises(PortalRejected) as refused:
            await within(client.call(SERVICE, report("soap", OrganizationInchargeName="")))
    assert refused.value.error_code == "-1"
    assert "OrganizationInchargeName: must not be empty" in refused.value.message
    assert await kept(url) == []


@pytest.mark.parametrize(("element", "value", "rule"), [
    ("Month", "13", "maxInclusive"),
    ("SolvedInTime", "87.555", "fractionDigits"),
    ("Total", "-1", "minInclusive"),
    ("IsMonthStatistic", "yes", "boolean"),
])
async def test_an_envelope_the_xsd_refuses_is_a_client_fault_naming_the_element(
        url: str, element: str, value: str, rule: str) -> None:
    """Built by the project's own ``SoapWire`` (valid), then one element spoiled: the simulator's schema check
    refuses it before serving, naming the element and the facet."""
    async with client_for(url, "soap") as client:
        await within(client.ensure_session())
        assert client.session_token is not None
        target, body, headers, _ = client.wire.request(SERVICE, client.session_token, report("soap"), ())
    envelope = etree.fromstring(body)
    spoiled = envelope.find(f"{{{SOAP11}}}Body/{{{MESSAGES_NS}}}{SERVICE}/{{{MESSAGES_NS}}}{element}")
    assert spoiled is not None
    spoiled.text = value
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            target, data=etree.tostring(envelope), headers=headers) as reply:
        status, answer = reply.status, etree.fromstring(await within(reply.read()))
    assert status == 500
    fault = answer.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None
    assert (fault.findtext("faultcode") or "").endswith("Client")
    text = fault.findtext("faultstring") or ""
    assert text.startswith(f"{SERVICE}: ") and element in text and rule in text, text
    assert await kept(url) == []


@over_both_faces
async def test_a_report_breaking_the_identity_is_refused_naming_the_rule(url: str, transport: str) -> None:
    async with client_for(url, transport) as client:
        with pytest.raises(PortalRejected) as refused:
            await within(client.call(SERVICE, report(transport, Total=13)))
    assert refused.value.error_code == "-1"
    assert "Total: must equal TotalSolved + TotalPending (13 ≠ 8 + 4)" in refused.value.message
    assert await kept(url) == []
    assert await calls(url) == {"rejected": 1}


# --- the fault knobs ---------------------------------------------------------------------------------------


@over_both_faces
async def test_an_injected_503_for_update_statistic_fails_it_and_only_it(url: str, transport: str) -> None:
    fault = {"status": 503, "times": 1, "service": SERVICE, "retry_after": "1"}
    status, armed = await within(sim_post(url, "/_sim/faults", fault))
    assert status == 201, armed
    async with client_for(url, transport) as client:
        assert await within(client.lookup("000.00.01.G12-240301-0001")) is None  # another service: untouched
        with pytest.raises(PortalUnavailable) as failed:
            await within(client.call(SERVICE, report(transport)))
        assert failed.value.reason == "http_503"
        assert failed.value.retry_after == 1.0
        assert await kept(url) == []  # a fault answers instead of serving: nothing kept
        await within(client.call(SERVICE, report(transport)))  # used up: the next one goes through
    [stored] = await kept(url)
    assert stored["pushes"] == 1
    assert await calls(url) == {"fault_503": 1, "ok": 1}
