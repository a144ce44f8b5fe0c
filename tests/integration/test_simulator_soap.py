"""The SOAP transport end to end: the real simulator on loopback (its SOAP face), the real ``PortalClient``
configured as a deployment would be: login, pushes, re-login on expiry, WS-Security, refusals as faults, the
XSD enforced on the simulator's side, and another platform's single-file WSDL swapped in by configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree
from structlog.testing import capture_logs

from connector.config import DEFAULT_MAPPINGS_DIR, SCHEMAS_DIR, SOAP_SERVICES, PortalSettings, SoapSettings
from connector.dev.simulator.app import SimulatorConfig, start_simulator
from connector.errors import SyncError
from connector.portal.client import USERNAME_TOKEN, CallRecord, PortalClient
from connector.portal.errors import AlreadyExists, LoginFailed, PortalRejected, PortalUnavailable
from connector.portal.soap import SOAP11, WSA, load_contract
from connector.push.events import event_from_document
from connector.push.mapping import load_mappings, map_event
from tests.factories import event_dict, step_dict
from tests.integration.pipeline_harness import SIM, portal_config

OTHER_WSDL = Path(__file__).resolve().parents[1] / "data" / "soap" / "other-platform.wsdl"
OTHER_TYPES_NS = "http://lgsp.example.gov.vn/dvcqg/2025/types"
SHIPPED_WSDL = SCHEMAS_DIR / "soap" / "portal.wsdl"
MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
CALL_SECONDS = 15.0  # any one await on the network, the client's own retries included


Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def simulator() -> AsyncIterator[Start]:
    """Starts simulators on free loopback ports (``await simulator(SimulatorConfig(...))`` gives the URL); every
    one started is stopped at teardown."""
    runners: list[Any] = []

    async def start(config: SimulatorConfig = SIM) -> str:
        runner, url = await asyncio.wait_for(start_simulator("127.0.0.1", 0, config), CALL_SECONDS)
        runners.append(runner)
        return url

    yield start
    for runner in reversed(runners):
        await asyncio.wait_for(runner.cleanup(), CALL_SECONDS)


def soap_settings(url: str, *, password: str | None = None, **soap: Any) -> PortalSettings:
    config = portal_config(url, "soap")
    config["soap"] = {**config["soap"], **soap}
    if password is not None:
        config["password"] = password
    return PortalSettings(**config)


def dossier(no: str = "000.00.01.G12-240301-0101", **changes: Any) -> dict[str, Any]:
    """A DongBoHoSoMC record as the mapping makes it from a one-stop event (lists included)."""
    return map_event(event_from_document(event_dict(no=no, **changes)), MAPPINGS).record


def step(no: str) -> dict[str, Any]:
    data = event_dict(no=no)
    data["event_type"], data["step"] = "dossier.step", step_dict()
    mapped = map_event(event_from_document(data), MAPPINGS).step
    assert mapped is not None
    return mapped


async def within(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, CALL_SECONDS)


async def sim_get(url: str, path: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{url}{path}", params=params) as r:
        return r.status, (await r.json()) if r.content_type == "application/json" else await r.read()


async def stored(url: str, no: str) -> dict[str, Any] | None:
    status, body = await sim_get(url, f"/_sim/dossiers/{no}")
    if status == 404:
        return None
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def stats(url: str) -> dict[str, Any]:
    status, body = await sim_get(url, "/_sim/stats")
    assert status == 200
    result: dict[str, Any] = body
    return result


async def post_soap(url: str, body: bytes, action: str = "") -> tuple[int, etree._Element]:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            f"{url}{SIM.soap_path}", data=body, headers=headers) as reply:
        return reply.status, etree.fromstring(await reply.read())


def fault_of(envelope: etree._Element) -> etree._Element:
    fault = envelope.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, etree.tostring(envelope)
    return fault


# --- the shipped contract: login, push, lookup ------------------------------------------------------------


async def test_login_and_a_push_land_on_the_simulator(simulator: Start) -> None:
    url = await simulator()
    record = dossier()
    audit: list[CallRecord] = []
    async with PortalClient(soap_settings(url), auditor=audit.append) as client:
        assert await within(client.push_dossiers([record], updating=False)) is False
        assert client.session_token
        await within(client.push_progress([step(record["MaHoSo"])]))
        assert await within(client.lookup(record["MaHoSo"])) == record
    held = await stored(url, record["MaHoSo"])
    assert held is not None
    assert held["record"] == record  # every field, the lists through their wrappers, back as JSON
    assert held["pushes"] == 1
    assert [s["NguoiXuLy"] for s in held["steps"]] == [step_dict()["actor"]]
    counters = await stats(url)
    assert counters["logins"] == {"ok": 1}
    assert counters["calls"] == {"DongBoHoSoMC": {"ok": 1}, "CapNhatTienDoHoSoMC": {"ok": 1},
                                 "TraCuuHoSo": {"ok": 1}}
    assert [(a.service, a.result, a.transport) for a in audit] == [
        ("login", "ok", "soap"), ("DongBoHoSoMC", "ok", "soap"), ("CapNhatTienDoHoSoMC", "ok", "soap"),
        ("TraCuuHoSo", "ok", "soap")]
    assert all(a.message_id.startswith("urn:uuid:") for a in audit)
    assert len({a.message_id for a in audit}) == len(audit)
    assert audit[1].dossiers == (record["MaHoSo"],)
    assert audit[0].request_sha256 == ""  # the login's body holds the password


async def test_a_lookup_of_an_unknown_dossier_is_none(simulator: Start) -> None:
    url = await simulator()
    async with PortalClient(soap_settings(url)) as client:
        assert await within(client.lookup("000.00.01.G12-000000-0000")) is None


# --- the simulator enforces the XSD -------------------------------------------------------------------------

ENVELOPE = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:portal-sync:dvcqg:v1"
            xmlns:t="urn:portal-sync:dvcqg:types:v1">
  <s:Header><t:Session>not-checked-before-the-schema</t:Session></s:Header>
  <s:Body>
    <m:DongBoHoSoMC>
      <m:madonvi>000.00.01.G12</m:madonvi>
      <m:isUpdating>True</m:isUpdating>
      <m:data>
        <t:HoSo>
          <t:MaHoSo>000.00.01.G12-240301-0999</t:MaHoSo><t:MaTTHC>1.009972.000.00.00.G12</t:MaTTHC>
          <t:TenTTHC>Cấp phép</t:TenTTHC><t:MaLinhVuc>G12-HDXD</t:MaLinhVuc><t:TenLinhVuc>Xây dựng</t:TenLinhVuc>
          <t:LoaiDoiTuong>1</t:LoaiDoiTuong><t:NgayTiepNhan>{received}</t:NgayTiepNhan>
          <t:NgayHenTra>20240315170000</t:NgayHenTra><t:TrangThaiHoSo>{status}</t:TrangThaiHoSo>
          <t:HinhThuc>0</t:HinhThuc><t:DonViXuLy>Cục Quản lý hoạt động xây dựng</t:DonViXuLy>{extra}
        </t:HoSo>
      </m:data>
    </m:DongBoHoSoMC>
  </s:Body>
</s:Envelope>"""


@pytest.mark.parametrize(("values", "element", "rule"), [
    ({"status": "11"}, "TrangThaiHoSo", "enumeration"),
    ({"received": "01/03/2024 08:00"}, "NgayTiepNhan", "pattern"),
    ({"extra": "<t:SoBienNhan>" + "9" * 201 + "</t:SoBienNhan>"}, "SoBienNhan", "maxLength"),
    ({"extra": "<t:MaBuuChinh>100000</t:MaBuuChinh>"}, "MaBuuChinh", "not expected"),
])
async def test_the_simulator_refuses_an_envelope_the_xsd_refuses(
        simulator: Start, values: dict[str, str], element: str, rule: str) -> None:
    url = await simulator()
    body = ENVELOPE.format(**{"received": "20240301080000", "status": "2", "extra": "", **values})
    status, envelope = await within(post_soap(url, body.encode("utf-8"),
                                              "urn:portal-sync:dvcqg:v1/IDVCQGAdapter/DongBoHoSoMC"))
    assert status == 500
    fault = fault_of(envelope)
    assert fault.findtext("faultcode").rpartition(":")[2] == "Client"
    text = fault.findtext("faultstring")
    assert text.startswith("DongBoHoSoMC: ")
    assert element in text and rule in text, text
    assert await stored(url, "000.00.01.G12-240301-0999") is None


async def test_the_same_envelope_within_the_xsd_gets_past_the_schema(simulator: Start) -> None:
    """The hand-made envelope is valid but for what each case changes: refused then for its session only."""
    url = await simulator()
    body = ENVELOPE.format(received="20240301080000", status="2", extra="")
    status, envelope = await within(post_soap(url, body.encode("utf-8")))
    assert status == 500
    detail = fault_of(envelope).find("detail/{urn:portal-sync:dvcqg:types:v1}PortalFault")
    assert detail is not None
    assert detail.findtext("{urn:portal-sync:dvcqg:types:v1}error_code") == "-2"  # the session, not the schema


async def test_a_body_that_is_not_xml_is_a_client_fault(simulator: Start) -> None:
    url = await simulator()
    status, envelope = await within(post_soap(url, b"<s:Envelope><unclosed>"))
    assert status == 500
    assert fault_of(envelope).findtext("faultcode").endswith("Client")


# --- sessions ---------------------------------------------------------------------------------------------


async def test_an_expired_session_is_renewed_transparently(simulator: Start) -> None:
    url = await simulator(SimulatorConfig(session_max_uses=1))
    first, second = dossier("000.00.01.G12-240301-0201"), dossier("000.00.01.G12-240301-0202")
    tokens = []
    async with PortalClient(soap_settings(url)) as client:
        await within(client.push_dossiers([first], updating=False))
        tokens.append(client.session_token)
        await within(client.push_dossiers([second], updating=False))
        tokens.append(client.session_token)
        assert await within(client.lookup(first["MaHoSo"])) == first
        tokens.append(client.session_token)
    assert len(set(tokens)) == 3
    assert (await stored(url, first["MaHoSo"]))["record"] == first
    assert (await stored(url, second["MaHoSo"]))["record"] == second
    counters = await stats(url)
    assert counters["logins"] == {"ok": 3}
    assert counters["calls"]["DongBoHoSoMC"] == {"ok": 2, "session_expired": 1}
    assert counters["calls"]["TraCuuHoSo"] == {"ok": 1, "session_expired": 1}


async def test_a_wrong_password_for_dang_nhap_is_login_failed(simulator: Start) -> None:
    url = await simulator()
    async with PortalClient(soap_settings(url, password="not-the-password")) as client:
        with pytest.raises(LoginFailed) as refused:
            await within(client.push_dossiers([dossier()], updating=False))
    assert refused.value.affects_every_record
    assert (await stats(url))["logins"] == {"rejected": 1}


# --- WS-Security UsernameToken ------------------------------------------------------------------------------


@pytest.mark.parametrize("password_type", ["text", "digest"])
async def test_a_username_token_needs_no_login(simulator: Start, password_type: str) -> None:
    url = await simulator()
    record = dossier()
    settings = soap_settings(url, auth="username_token", password_type=password_type)
    async with PortalClient(settings) as client:
        await within(client.push_dossiers([record], updating=False))
        assert await within(client.lookup(record["MaHoSo"])) == record
        assert client.session_token == USERNAME_TOKEN
    assert (await stored(url, record["MaHoSo"]))["record"] == record
    counters = await stats(url)
    assert counters["logins"] == {}
    assert counters["calls"] == {"DongBoHoSoMC": {"ok": 1}, "TraCuuHoSo": {"ok": 1}}


@pytest.mark.parametrize("password_type", ["text", "digest"])
async def test_a_username_token_with_a_wrong_password_is_login_failed(simulator: Start, password_type: str) -> None:
    """A refused credential is the operator's to fix, like a refused DangNhap: LoginFailed, every record's, not
    retried; not a transient fault."""
    url = await simulator()
    settings = soap_settings(url, auth="username_token", password_type=password_type, password="wrong")
    async with PortalClient(settings) as client:
        with pytest.raises(LoginFailed) as refused:
            await within(client.push_dossiers([dossier()], updating=False))
    assert refused.value.affects_every_record
    assert "FailedAuthentication" in refused.value.message
    assert await stored(url, dossier()["MaHoSo"]) is None
    assert (await stats(url))["calls"] == {}  # refused before it was served


# --- refusals: faults whose code reaches the client --------------------------------------------------------


async def test_a_create_of_an_existing_dossier_is_a_fault_whose_code_reaches_the_client(simulator: Start) -> None:
    url = await simulator()
    record = dossier()
    async with PortalClient(soap_settings(url)) as client:
        await within(client.push_dossiers([record], updating=False))
        with pytest.raises(AlreadyExists) as refused:
            await within(client.call("DongBoHoSoMC", {"data": [record], "isUpdating": "False"}))
        assert refused.value.error_code == "-3"
        # What the client sends then: the same record as an update.
        assert await within(client.push_dossiers([record], updating=False)) is True
        # On the wire: HTTP 500, a Client fault with the PortalFault detail.
        assert client.session_token is not None
        target, body, headers, _ = client.wire.request(
            "DongBoHoSoMC", client.session_token, {"data": [record], "isUpdating": "False"}, (record["MaHoSo"],))
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            target, data=body, headers=headers) as reply:
        assert reply.status == 500
        fault = fault_of(etree.fromstring(await reply.read()))
    types = "{urn:portal-sync:dvcqg:types:v1}"
    assert fault.findtext("faultcode").endswith("Client")
    assert fault.findtext(f"detail/{types}PortalFault/{types}error_code") == "-3"
    assert (await stored(url, record["MaHoSo"]))["pushes"] == 2


async def test_another_refusal_is_portal_rejected_with_its_code(simulator: Start) -> None:
    url = await simulator()
    async with PortalClient(soap_settings(url)) as client:
        with pytest.raises(PortalRejected) as refused:
            await within(client.push_progress([step("000.00.01.G12-240301-0404")]))
    assert refused.value.error_code == "-1"
    assert not refused.value.affects_every_record  # that record's refusal, not the service's
    assert "000.00.01.G12-240301-0404" in refused.value.message


BUSY_FAULT = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
  <faultcode>s:Server</faultcode><faultstring>Hệ thống đang bận</faultstring>
  <detail><t:PortalFault xmlns:t="urn:portal-sync:dvcqg:types:v1"><t:error_code>BUSY</t:error_code>
  <t:message>Hệ thống đang bận, thử lại sau</t:message></t:PortalFault></detail>
</s:Fault></s:Body></s:Envelope>"""


async def test_a_fault_code_listed_as_retryable_is_retried_later(simulator: Start) -> None:
    """A fault whose detail code is in retryable_fault_codes is the platform's trouble: retryable, nothing stored,
    and the next try goes through."""
    url = await simulator()
    fault = {"status": 500, "times": 1, "service": "DongBoHoSoMC", "body": BUSY_FAULT, "content_type": "text/xml",
             "retry_after": "2"}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(f"{url}/_sim/faults", json=fault) as r:
        assert r.status == 201, await r.text()
    record = dossier()
    async with PortalClient(soap_settings(url)) as client:
        with pytest.raises(PortalUnavailable) as refused:
            await within(client.push_dossiers([record], updating=False))
        assert refused.value.reason == "soap_fault_retryable"
        assert refused.value.retry_after == 2.0
        assert await stored(url, record["MaHoSo"]) is None
        await within(client.push_dossiers([record], updating=False))
    assert (await stored(url, record["MaHoSo"]))["pushes"] == 1


# --- the documents ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("wsdl", [None, OTHER_WSDL])
@pytest.mark.parametrize("query", ["wsdl", "singleWsdl"])
async def test_the_soap_path_serves_the_wsdl(simulator: Start, wsdl: Path | None, query: str) -> None:
    url = await simulator(SimulatorConfig(soap_wsdl=wsdl))
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{url}{SIM.soap_path}?{query}") as r:
        assert r.status == 200
        assert r.content_type == "text/xml"
        served = await r.read()
    assert served == (wsdl or SHIPPED_WSDL).read_bytes()


async def test_the_soap_path_serves_the_schemas_beside_the_wsdl_and_nothing_else(simulator: Start) -> None:
    url = await simulator()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        async with http.get(f"{url}{SIM.soap_path}", params={"xsd": "portal-types.xsd"}) as r:
            assert r.status == 200
            assert await r.read() == (SHIPPED_WSDL.parent / "portal-types.xsd").read_bytes()
        for name in ("../soap/portal-types.xsd", "portal.wsdl", "absent.xsd"):
            async with http.get(f"{url}{SIM.soap_path}", params={"xsd": name}) as r:
                assert r.status == 404, name


async def test_a_served_single_file_wsdl_saved_as_is_loads_by_config(simulator: Start, tmp_path: Path) -> None:
    """What a deployment does with a platform's ``?singleWsdl``: save it, point portal.soap.wsdl at it."""
    url = await simulator(SimulatorConfig(soap_wsdl=OTHER_WSDL))
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(f"{url}{SIM.soap_path}?singleWsdl") as r:
        saved = tmp_path / "platform.wsdl"
        saved.write_bytes(await r.read())
    contract = load_contract(SoapSettings(wsdl=saved, address=f"{url}{SIM.soap_path}"))
    assert list(contract.operations) == list(SOAP_SERVICES)
    assert contract.session_header == f"{{{OTHER_TYPES_NS}}}Session"


# --- another platform's WSDL, swapped in by configuration alone ---------------------------------------------


def other_platform(url: str, **soap: Any) -> PortalSettings:
    return soap_settings(url, wsdl=str(OTHER_WSDL), address=f"{url}{SIM.soap_path}", **soap)


async def test_the_swapped_wsdl_pushes_and_looks_up_by_config_alone(simulator: Start) -> None:
    url = await simulator(SimulatorConfig(soap_wsdl=OTHER_WSDL))
    record = dossier()
    audit: list[CallRecord] = []
    async with PortalClient(other_platform(url), auditor=audit.append) as client:
        assert await within(client.push_dossiers([record], updating=False)) is False
        await within(client.push_progress([step(record["MaHoSo"])]))
        assert await within(client.lookup(record["MaHoSo"])) == record
        with pytest.raises(AlreadyExists) as refused:
            await within(client.call("DongBoHoSoMC", {"data": [record], "isUpdating": "False"}))
        assert refused.value.error_code == "-3"
    held = await stored(url, record["MaHoSo"])
    assert held["record"] == record
    assert len(held["steps"]) == 1
    assert (await stats(url))["logins"] == {"ok": 1}
    assert [a.result for a in audit] == ["ok", "ok", "ok", "ok", "already_exists"]


@pytest.mark.parametrize("password_type", ["text", "digest"])
async def test_the_swapped_wsdl_with_a_username_token(simulator: Start, password_type: str) -> None:
    url = await simulator(SimulatorConfig(soap_wsdl=OTHER_WSDL))
    record = dossier()
    async with PortalClient(other_platform(url, auth="username_token", password_type=password_type)) as client:
        await within(client.push_dossiers([record], updating=False))
        assert await within(client.lookup(record["MaHoSo"])) == record
    assert (await stats(url))["logins"] == {}


async def test_the_swapped_wsdl_speaks_its_own_namespaces_on_the_wire(simulator: Start) -> None:
    url = await simulator(SimulatorConfig(soap_wsdl=OTHER_WSDL))
    async with PortalClient(other_platform(url)) as client:
        await within(client.ensure_session())
        assert client.session_token is not None
        target, body, headers, message_id = client.wire.request(
            "TraCuuHoSo", client.session_token, {"mahoso": "X-1"}, ("X-1",))
    assert target == f"{url}{SIM.soap_path}"
    assert headers["SOAPAction"] == '"http://lgsp.example.gov.vn/dvcqg/2025/ILgspDvcqgService/TraCuuHoSo"'
    envelope = etree.fromstring(body)
    assert envelope.find(f"{{{SOAP11}}}Header/{{{OTHER_TYPES_NS}}}Session") is not None
    assert envelope.findtext(f"{{{SOAP11}}}Header/{{{WSA}}}MessageID") == message_id
    status, answer = await within(post_soap(url, body, headers["SOAPAction"].strip('"')))
    assert status == 200
    assert answer.find(f"{{{SOAP11}}}Body/{{http://lgsp.example.gov.vn/dvcqg/2025}}TraCuuHoSoResponse") is not None


async def test_a_shipped_contract_client_is_refused_by_the_swapped_simulator(simulator: Start) -> None:
    """The namespaces are the contract: a request in the shipped namespace is no operation of the other WSDL."""
    url = await simulator(SimulatorConfig(soap_wsdl=OTHER_WSDL))
    async with PortalClient(soap_settings(url)) as client:
        with pytest.raises(SyncError) as refused:
            await within(client.push_dossiers([dossier()], updating=False))
    assert "no operation" in refused.value.message


# --- secrets never logged ------------------------------------------------------------------------------------


async def test_no_password_or_session_token_in_the_logs_of_a_soap_run(simulator: Start) -> None:
    url = await simulator(SimulatorConfig(session_max_uses=1))
    tokens: set[str] = set()
    with capture_logs() as logs:
        async with PortalClient(soap_settings(url)) as client:
            for n in range(3):
                await within(client.push_dossiers([dossier(f"000.00.01.G12-240301-03{n:02d}")], updating=False))
                tokens.add(client.session_token or "")
        for password_type in ("text", "digest"):
            async with PortalClient(soap_settings(url, auth="username_token", password_type=password_type,
                                                  password=SIM.password + "-wrong")) as client:
                with pytest.raises(SyncError):
                    await within(client.lookup("000.00.01.G12-240301-0300"))
        async with PortalClient(soap_settings(url, password=SIM.password + "-wrong")) as client:
            with pytest.raises(LoginFailed):
                await within(client.lookup("000.00.01.G12-240301-0300"))
    assert len(tokens) == 3 and all(tokens)
    assert logs
    for event in logs:
        text = repr(event)
        assert SIM.password not in text
        assert not any(token in text for token in tokens)
