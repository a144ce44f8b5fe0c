"""The SOAP transport without a network: the contract read from a WSDL (the shipped one and another platform's
single-file one), the requests built from it (validation, headers, WS-Security), the simulator's side of the
UsernameToken, and the shapes that turn JSON records into elements and back."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from structlog.testing import capture_logs

from connector.config import SCHEMAS_DIR, SOAP_SERVICES, PortalSettings, SoapSettings
from connector.dev.simulator.soap_face import WSSE, WSU, SoapCodec
from connector.errors import ConfigError
from connector.portal.errors import AlreadyExists, LoginFailed, PortalRejected
from connector.portal.soap import (
    LOGIN_SERVICE,
    SOAP11,
    WSA,
    RequestInvalid,
    Shape,
    SoapWire,
    build_element,
    from_xml,
    load_contract,
    password_digest,
    shape_of,
)
from tests.factories import portal_record

SHIPPED_DIR = SCHEMAS_DIR / "soap"
OTHER_WSDL = Path(__file__).resolve().parents[1] / "data" / "soap" / "other-platform.wsdl"
OTHER_NS = "http://lgsp.example.gov.vn/dvcqg/2025"
OTHER_TYPES_NS = f"{OTHER_NS}/types"
OTHER_ACTION = f"{OTHER_NS}/ILgspDvcqgService/{{}}"
SHIPPED_NS = "urn:portal-sync:dvcqg:v1"
SHIPPED_TYPES_NS = "urn:portal-sync:dvcqg:types:v1"
SHIPPED_ACTION = f"{SHIPPED_NS}/IDVCQGAdapter/{{}}"
ADDRESS = "http://127.0.0.1:8099/soap"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"

USERNAME = "portal-sync"
PASSWORD = "pw-3b7f1c-never-logged"  # a test credential, looked for in the logs
TOKEN = "session-9e2d4a-never-logged"
MADONVI = "000.00.01.G12"
USERNAME_TOKEN = "username-token"  # what PortalClient hands the wire when every call is signed
PASSWORD_TEXT = "#PasswordText"
PASSWORD_DIGEST = "#PasswordDigest"



def soap_portal(**soap: Any) -> PortalSettings:
    return PortalSettings(transport="soap", username=USERNAME, password=PASSWORD, madonvi=MADONVI, soap=soap)


def other_portal(**soap: Any) -> PortalSettings:
    return soap_portal(wsdl=OTHER_WSDL, address=ADDRESS, **soap)


def parsed(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    assert root.tag == f"{{{SOAP11}}}Envelope"
    return root


def header_children(envelope: etree._Element) -> list[etree._Element]:
    header = envelope.find(f"{{{SOAP11}}}Header")
    return [] if header is None else [e for e in header if isinstance(e.tag, str)]


def payload(envelope: etree._Element) -> etree._Element:
    (element,) = [e for e in envelope.find(f"{{{SOAP11}}}Body") if isinstance(e.tag, str)]
    return element


def push_params(*records: dict[str, Any], updating: bool = False) -> dict[str, Any]:
    return {"data": list(records), "isUpdating": str(updating)}


def full_record(number: str = "000.00.01.G12-240301-0007") -> dict[str, Any]:
    """A dossier record with every list the types declare, as mapping gives it (text) and as the XSD reads it
    (``KichThuoc``, ``SoLuong`` and ``LoaiGiayTo`` are integers)."""
    return portal_record(
        number,
        SoBienNhan="BN-2024-0007",
        ChuHoSo="Nguyễn Thị Hoa",
        Email="hoa.nguyen@example.vn",
        SoDienThoai="0987654321",
        TrichYeuHoSo="Đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ",
        NgayTra="",
        NgayKetThucXuLy="",
        GhiChu="Hồ sơ bổ sung lần 1",
        KenhThucHien="2",
        TaiLieuNop=[
            {"TepDinhKemId": "doc-1", "TenTepDinhKem": "Đơn đề nghị.pdf", "IsDeleted": "False",
             "MaThanhPhanHoSo": "TP1", "DuongDanTaiTepTin": "https://motcua.example.vn/files/doc-1",
             "KichThuoc": 183_204, "MaBam": "9f86d081884c7d659a2feaa0c55ad015"},
            {"TepDinhKemId": "doc-2", "TenTepDinhKem": "Bản vẽ thiết kế.dwg", "IsDeleted": "True"},
        ],
        DanhSachGiayToKetQua=[{"TenGiayTo": "Giấy phép xây dựng", "GiayToId": "kq-1",
                               "DuongDanTepTinKetQua": "https://motcua.example.vn/files/kq-1"}],
        DanhSachLePhi=[{"TenPhiLePhi": "Lệ phí cấp phép", "MaPhiLePhi": "LP01", "HinhThucThu": "Chuyển khoản",
                        "Gia": "150000", "LoaiPhiLePhi": "2"}],
        DanhSachTepDinhKemKhac=[{"TenGiayTo": "Bản sao sổ đỏ", "SoLuong": 2, "LoaiGiayTo": 1}],
        DanhSachHoSoBoSung=[{"HoSoBoSungId": "bs-1", "NguoiYeuCauBoSung": "Trần Văn Nam",
                             "NoiDungBoSung": "Bổ sung bản vẽ mặt bằng", "NgayBoSung": "20240305090000",
                             "NgayHenTraMoi": "20240320170000"}],
        DinhDanhCHS=[{"LoaiDinhDanh": "1", "SoDinhDanh": "001089012345"}],
    )


# --- the contract ------------------------------------------------------------------------------------------


def test_the_shipped_contract_lists_every_operation_with_its_action_and_result() -> None:
    contract = load_contract(SoapSettings())
    assert list(contract.operations) == list(SOAP_SERVICES)
    for name, operation in contract.operations.items():
        assert operation.name == name
        assert operation.soap_action == SHIPPED_ACTION.format(name)
        assert operation.request.qname == f"{{{SHIPPED_NS}}}{name}"
        assert operation.reply.qname == f"{{{SHIPPED_NS}}}{name}Response"
        assert operation.result == f"{name}Result"
    assert contract.address == "http://lgsp.example.invalid/dvcqg/adapter.svc"
    assert contract.session_header == f"{{{SHIPPED_TYPES_NS}}}Session"
    assert contract.dossier_header == f"{{{SHIPPED_TYPES_NS}}}HoSoLienQuan"
    assert contract.fault_detail == f"{{{SHIPPED_TYPES_NS}}}PortalFault"


def test_the_shipped_record_type_declares_every_list_as_a_wrapper() -> None:
    record = load_contract(SoapSettings()).operation("DongBoHoSoMC").request.children["data"].children["HoSo"]
    wrappers = {name: child.item for name, child in record.children.items() if child.item is not None}
    assert wrappers == {"TaiLieuNop": "TaiLieu", "DanhSachGiayToKetQua": "GiayToKetQua", "DanhSachLePhi": "LePhi",
                        "DanhSachTepDinhKemKhac": "TepDinhKemKhac", "DanhSachHoSoBoSung": "HoSoBoSung",
                        "DinhDanhCHS": "DinhDanh"}


def test_the_single_file_wsdl_is_a_static_file_with_inline_schemas_and_no_schema_location() -> None:
    root = etree.parse(str(OTHER_WSDL)).getroot()
    xsd = "http://www.w3.org/2001/XMLSchema"
    schemas = root.findall(f"{{{WSDL_NS}}}types/{{{xsd}}}schema")
    assert [s.get("targetNamespace") for s in schemas] == [OTHER_TYPES_NS, OTHER_NS]
    imports = root.findall(f".//{{{xsd}}}import")
    assert [(i.get("namespace"), i.get("schemaLocation")) for i in imports] == [(OTHER_TYPES_NS, None)]
    assert not root.findall(f".//{{{xsd}}}include")



def test_the_single_file_wsdl_loads_by_config_alone() -> None:
    contract = load_contract(SoapSettings(wsdl=OTHER_WSDL, address=ADDRESS))
    assert list(contract.operations) == list(SOAP_SERVICES)
    for name, operation in contract.operations.items():
        assert operation.soap_action == OTHER_ACTION.format(name)
        assert operation.request.qname == f"{{{OTHER_NS}}}{name}"
        assert operation.reply.qname == f"{{{OTHER_NS}}}{name}Response"
        assert operation.result == f"{name}Result"
    assert contract.address == ADDRESS
    # The headers and the fault detail are found by local name in the types' namespace.
    assert contract.session_header == f"{{{OTHER_TYPES_NS}}}Session"
    assert contract.dossier_header == f"{{{OTHER_TYPES_NS}}}HoSoLienQuan"
    assert contract.fault_detail == f"{{{OTHER_TYPES_NS}}}PortalFault"
    # The records are the same shape as the shipped contract's, in the other namespace.
    shipped = load_contract(SoapSettings()).operation("DongBoHoSoMC").request.children["data"].children["HoSo"]
    other = contract.operation("DongBoHoSoMC").request.children["data"].children["HoSo"]
    assert list(other.children) == list(shipped.children)
    assert other.qname == f"{{{OTHER_TYPES_NS}}}HoSo"


def test_the_single_file_wsdl_without_an_address_calls_its_own_endpoint() -> None:
    contract = load_contract(SoapSettings(wsdl=OTHER_WSDL))
    assert contract.address == "https://lgsp.example.gov.vn/dvcqg/LgspDvcqgService.svc"


def test_the_single_file_wsdl_names_its_service_and_port() -> None:
    named = SoapSettings(wsdl=OTHER_WSDL, service="LgspDvcqgService", port="BasicHttpsBinding_ILgspDvcqgService_Port")
    assert list(load_contract(named).operations) == list(SOAP_SERVICES)
    with pytest.raises(ConfigError, match="LgspDvcqgService"):
        load_contract(SoapSettings(wsdl=OTHER_WSDL, service="DVCQGAdapter"))
    with pytest.raises(ConfigError, match=r"portal\.soap\.port"):
        load_contract(SoapSettings(wsdl=OTHER_WSDL, port="BasicHttpBinding_IDVCQGAdapter"))


@pytest.mark.parametrize(("service", "params"), [
    ("DongBoHoSoMC", push_params(portal_record())),
    ("TraCuuHoSo", {"mahoso": "000.00.01.H22-240101-0001"}),
    ("CapNhatDaNhanHoSo", {"maHoSo": "000.00.01.H22-240101-0001", "phienBan": "3", "daNhan": True}),
])
def test_single_file_requests_carry_its_namespace_and_soap_action(service: str, params: dict[str, Any]) -> None:
    wire = SoapWire(other_portal())
    url, body, headers, _ = wire.request(service, TOKEN, params, ())
    assert url == ADDRESS
    assert headers["SOAPAction"] == f'"{OTHER_ACTION.format(service)}"'
    element = payload(parsed(body))
    assert element.tag == f"{{{OTHER_NS}}}{service}"
    assert all(etree.QName(child).namespace == OTHER_NS for child in element)
    assert SHIPPED_NS.encode() not in body


def test_single_file_login_is_its_dang_nhap() -> None:
    url, body, headers, _ = SoapWire(other_portal()).login(USERNAME, PASSWORD)
    assert url == ADDRESS
    assert headers["SOAPAction"] == f'"{OTHER_ACTION.format(LOGIN_SERVICE)}"'
    assert payload(parsed(body)).tag == f"{{{OTHER_NS}}}DangNhap"


def test_single_file_records_are_in_its_types_namespace() -> None:
    _, body, _, _ = SoapWire(other_portal()).request("DongBoHoSoMC", TOKEN, push_params(full_record()), ())
    data = payload(parsed(body)).find(f"{{{OTHER_NS}}}data")
    (record,) = data
    assert record.tag == f"{{{OTHER_TYPES_NS}}}HoSo"
    assert record.find(f"{{{OTHER_TYPES_NS}}}TaiLieuNop/{{{OTHER_TYPES_NS}}}TaiLieu") is not None


def test_the_single_file_validator_refuses_what_its_schema_refuses() -> None:
    """Whatever the resolution of its inline schemas, a record out of bounds never passes."""
    wire = SoapWire(other_portal())
    with pytest.raises(RequestInvalid):
        wire.request("DongBoHoSoMC", TOKEN, push_params(portal_record(TrangThaiHoSo="11")), ())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection attempt is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _shipped_copy(directory: Path) -> Path:
    for name in ("portal.wsdl", "portal-messages.xsd", "portal-types.xsd"):
        shutil.copy(SHIPPED_DIR / name, directory / name)
    return directory / "portal.wsdl"


REMOTE_TYPES = "http://schemas.example.test/dvcqg/portal-types.xsd"


def _wsdl_importing_over_http(directory: Path, how: str) -> Path:
    wsdl = _shipped_copy(directory)
    if how == "wsdl_imports_the_schema":
        wsdl.write_text(wsdl.read_text(encoding="utf-8").replace(
            'schemaLocation="portal-types.xsd"', f'schemaLocation="{REMOTE_TYPES}"'), encoding="utf-8")
    elif how == "a_local_schema_imports_it":
        messages = directory / "portal-messages.xsd"
        messages.write_text(messages.read_text(encoding="utf-8").replace(
            'schemaLocation="portal-types.xsd"', f'schemaLocation="{REMOTE_TYPES}"'), encoding="utf-8")
        wsdl.write_text(wsdl.read_text(encoding="utf-8").replace(
            '<xs:import namespace="urn:portal-sync:dvcqg:types:v1" schemaLocation="portal-types.xsd"/>', ""),
            encoding="utf-8")
    elif how == "single_file_with_a_located_import":
        wsdl = directory / "single.wsdl"
        wsdl.write_text(OTHER_WSDL.read_text(encoding="utf-8").replace(
            f'<xs:import namespace="{OTHER_TYPES_NS}"/>',
            f'<xs:import namespace="{OTHER_TYPES_NS}" schemaLocation="https://lgsp.example.gov.vn/svc?xsd=xsd0"/>'),
            encoding="utf-8")
    elif how == "wsdl_imports_a_wsdl":
        text = wsdl.read_text(encoding="utf-8")
        wsdl.write_text(text.replace(
            "<wsdl:types>", '<wsdl:import namespace="urn:other" location="http://lgsp.example.test/other?wsdl"/>'
            "\n  <wsdl:types>", 1), encoding="utf-8")
    return wsdl


@pytest.mark.parametrize("how", ["wsdl_imports_the_schema", "a_local_schema_imports_it",
                                 "single_file_with_a_located_import", "wsdl_imports_a_wsdl"])
def test_a_wsdl_that_imports_over_http_is_refused_at_load_and_nothing_is_fetched(
        tmp_path: Path, no_network: list[Any], how: str) -> None:
    wsdl = _wsdl_importing_over_http(tmp_path, how)
    with pytest.raises(ConfigError, match=r"portal\.soap\.wsdl") as refused:
        load_contract(SoapSettings(wsdl=wsdl))
    assert "http" in str(refused.value)
    assert no_network == []


def test_a_missing_wsdl_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"portal\.soap\.wsdl"):
        load_contract(SoapSettings(wsdl=tmp_path / "absent.wsdl"))


# --- requests: the XSD, checked before sending ------------------------------------------------------------


@pytest.mark.parametrize(("change", "field", "rule"), [
    ({"TenTTHC": "x" * 2001}, "TenTTHC", "maxLength"),
    ({"ChuHoSo": "Nguyễn " * 100}, "ChuHoSo", "maxLength"),
    ({"NgayTiepNhan": "2024-01-01 08:00:00"}, "NgayTiepNhan", "pattern"),
    ({"NgayHenTra": "2024011517"}, "NgayHenTra", "pattern"),
    ({"TrangThaiHoSo": "11"}, "TrangThaiHoSo", "enumeration"),
    ({"TaiLieuNop": [{"TepDinhKemId": "d", "TenTepDinhKem": "n", "IsDeleted": "false"}]}, "IsDeleted",
     "enumeration"),
])
def test_a_record_the_xsd_refuses_raises_request_invalid_naming_the_field(
        change: dict[str, Any], field: str, rule: str) -> None:
    wire = SoapWire(soap_portal())
    with pytest.raises(RequestInvalid) as refused:
        wire.request("DongBoHoSoMC", TOKEN, push_params(portal_record(**change)), ("000.00.01.H22-240101-0001",))
    error = refused.value
    assert error.reason == "request_invalid"
    assert error.message.startswith("DongBoHoSoMC: ")
    assert re.search(rf"/ns\d+:{field}\b", error.message), error.message
    assert rule in error.message
    assert error.quotes_remote_text  # the message quotes the record: failure table, not logs


def test_is_updating_other_than_true_or_false_is_refused() -> None:
    with pytest.raises(RequestInvalid, match="isUpdating"):
        SoapWire(soap_portal()).request("DongBoHoSoMC", TOKEN, {"data": [portal_record()], "isUpdating": "yes"}, ())


def test_a_step_too_long_names_its_field() -> None:
    step = {"MaHoSo": "000.00.01.H22-240101-0001", "NguoiXuLy": "Trần " * 20, "ThoiDiemXuLy": "20240102080000",
            "NoiDungXuLy": "Thẩm định", "TrangThai": "3"}
    with pytest.raises(RequestInvalid, match="NguoiXuLy"):
        SoapWire(soap_portal()).request("CapNhatTienDoHoSoMC", TOKEN, {"data": [step]}, ())


def test_a_valid_record_passes_and_keeps_the_wsdl_order() -> None:
    shuffled = dict(reversed(list(full_record().items())))
    _, body, _, _ = SoapWire(soap_portal()).request("DongBoHoSoMC", TOKEN, push_params(shuffled), ())
    (record,) = payload(parsed(body)).find(f"{{{SHIPPED_NS}}}data")
    names = [etree.QName(e).localname for e in record]
    shape = load_contract(SoapSettings()).operation("DongBoHoSoMC").request.children["data"].children["HoSo"]
    assert names == [name for name in shape.children if name in shuffled]


def test_a_field_the_wsdl_does_not_declare_is_dropped_and_logged_once() -> None:
    wire = SoapWire(soap_portal())
    with capture_logs() as logs:
        _, first, _, _ = wire.request("DongBoHoSoMC", TOKEN, push_params(portal_record(MaBuuChinh="100000")), ())
        _, again, _, _ = wire.request("DongBoHoSoMC", TOKEN, push_params(portal_record(MaBuuChinh="100001")), ())
        wire.request("DongBoHoSoMC", TOKEN, push_params(portal_record(MaBuuChinh="1", NguoiKy="B")), ())
    assert b"MaBuuChinh" not in first and b"100000" not in first
    assert b"MaBuuChinh" not in again
    dropped = [e for e in logs if e["event"] == "soap.fields_not_in_wsdl"]
    assert dropped == [
        {"event": "soap.fields_not_in_wsdl", "log_level": "warning", "service": "DongBoHoSoMC",
         "fields": ["data[].MaBuuChinh"]},
        {"event": "soap.fields_not_in_wsdl", "log_level": "warning", "service": "DongBoHoSoMC",
         "fields": ["data[].NguoiKy"]},
    ]


# --- requests: headers -------------------------------------------------------------------------------------


def test_a_call_carries_the_session_ws_addressing_and_the_dossiers() -> None:
    wire = SoapWire(soap_portal(address=ADDRESS))
    numbers = ("000.00.01.H22-240101-0001", "000.00.01.H22-240101-0002")
    records = [portal_record(n) for n in numbers]
    url, body, headers, message_id = wire.request("DongBoHoSoMC", TOKEN, push_params(*records), numbers)
    assert url == ADDRESS
    assert headers["SOAPAction"] == f'"{SHIPPED_ACTION.format("DongBoHoSoMC")}"'
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert "dstcode" not in headers
    children = header_children(parsed(body))
    by_name = {e.tag: e for e in children}
    assert len(by_name) == len(children) == 5  # each once
    assert by_name[f"{{{SHIPPED_TYPES_NS}}}Session"].text == TOKEN
    assert message_id.startswith("urn:uuid:")
    assert uuid.UUID(message_id.removeprefix("urn:uuid:")).version == 4
    assert by_name[f"{{{WSA}}}MessageID"].text == message_id
    assert by_name[f"{{{WSA}}}Action"].text == SHIPPED_ACTION.format("DongBoHoSoMC")
    assert by_name[f"{{{WSA}}}To"].text == ADDRESS
    listed = by_name[f"{{{SHIPPED_TYPES_NS}}}HoSoLienQuan"]
    assert [e.text for e in listed] == list(numbers)
    assert all(e.tag == f"{{{SHIPPED_TYPES_NS}}}MaHoSo" for e in listed)
    assert f"{{{WSSE}}}Security" not in by_name


def test_every_call_has_its_own_message_id() -> None:
    wire = SoapWire(soap_portal())
    ids = {wire.request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ("X-1",))[3] for _ in range(20)}
    assert len(ids) == 20


def test_the_login_carries_no_session_and_no_dossier_header() -> None:
    _, body, _, message_id = SoapWire(soap_portal()).login(USERNAME, PASSWORD)
    children = {e.tag for e in header_children(parsed(body))}
    assert f"{{{SHIPPED_TYPES_NS}}}Session" not in children
    assert f"{{{SHIPPED_TYPES_NS}}}HoSoLienQuan" not in children
    assert f"{{{WSA}}}MessageID" in children
    assert message_id
    element = payload(parsed(body))
    assert element.tag == f"{{{SHIPPED_NS}}}DangNhap"
    assert element.findtext(f"{{{SHIPPED_NS}}}username") == USERNAME


def test_without_addressing_or_dossier_header_neither_is_sent() -> None:
    wire = SoapWire(soap_portal(addressing=False, dossier_header=None))
    _, body, _, message_id = wire.request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ("X-1",))
    assert message_id == ""
    assert [e.tag for e in header_children(parsed(body))] == [f"{{{SHIPPED_TYPES_NS}}}Session"]


def test_dstcode_is_an_http_header_only_when_set() -> None:
    settings = soap_portal().model_copy(update={"dstcode": "G12"})
    _, _, headers, _ = SoapWire(settings).request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ())
    assert headers["dstcode"] == "G12"


def _with_wsam_actions(directory: Path) -> Path:
    """The shipped WSDL as WCF writes a portType: every input and output with its wsam:Action."""
    wsdl = _shipped_copy(directory)
    text = wsdl.read_text(encoding="utf-8").replace(
        'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"',
        'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:wsam="http://www.w3.org/2007/05/addressing/metadata"')
    for name in SOAP_SERVICES:
        text = text.replace(f'<wsdl:input message="tns:{name}Request"/>',
                            f'<wsdl:input wsam:Action="{SHIPPED_ACTION.format(name)}" message="tns:{name}Request"/>')
    wsdl.write_text(text, encoding="utf-8")
    return wsdl


def test_a_wsdl_declaring_wsam_action_still_gets_one_set_of_ws_addressing_headers(tmp_path: Path) -> None:
    wire = SoapWire(soap_portal(wsdl=_with_wsam_actions(tmp_path), address=ADDRESS))
    _, body, _, message_id = wire.request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ("X-1",))
    addressing = [(etree.QName(e).localname, e.text) for e in header_children(parsed(body))
                  if etree.QName(e).namespace == WSA]
    assert sorted(addressing) == sorted([("MessageID", message_id), ("Action", SHIPPED_ACTION.format("TraCuuHoSo")),
                                         ("To", ADDRESS)])


def test_single_file_headers_are_in_its_namespaces_and_each_sent_once() -> None:
    wire = SoapWire(other_portal())
    _, body, _, message_id = wire.request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ("X-1",))
    children = header_children(parsed(body))
    assert [(e.tag, e.text) for e in children if e.tag.startswith(f"{{{WSA}}}")] == [
        (f"{{{WSA}}}MessageID", message_id), (f"{{{WSA}}}Action", OTHER_ACTION.format("TraCuuHoSo")),
        (f"{{{WSA}}}To", ADDRESS)]
    assert [e.tag for e in children if not e.tag.startswith(f"{{{WSA}}}")] == [
        f"{{{OTHER_TYPES_NS}}}Session", f"{{{OTHER_TYPES_NS}}}HoSoLienQuan"]


# --- WS-Security UsernameToken ------------------------------------------------------------------------------


def username_token(body: bytes) -> etree._Element:
    security = [e for e in header_children(parsed(body)) if e.tag == f"{{{WSSE}}}Security"]
    assert len(security) == 1
    token = security[0].find(f"{{{WSSE}}}UsernameToken")
    assert token is not None
    return token


def signed_request(password_type: str, password: str = PASSWORD) -> bytes:
    wire = SoapWire(PortalSettings(transport="soap", username=USERNAME, password=password, madonvi=MADONVI,
                                   soap={"auth": "username_token", "password_type": password_type}))
    assert not wire.logs_in
    _, body, _, _ = wire.request("TraCuuHoSo", USERNAME_TOKEN, {"mahoso": "X-1"}, ("X-1",))
    return body


def test_a_username_token_in_text_carries_the_password_and_no_session() -> None:
    body = signed_request("text")
    token = username_token(body)
    assert token.findtext(f"{{{WSSE}}}Username") == USERNAME
    password = token.find(f"{{{WSSE}}}Password")
    assert password.get("Type").endswith(PASSWORD_TEXT)
    assert password.text == PASSWORD
    assert f"{{{SHIPPED_TYPES_NS}}}Session" not in {e.tag for e in header_children(parsed(body))}
    assert all(e.text != USERNAME_TOKEN for e in parsed(body).iter())  # the placeholder is not sent


def test_a_username_token_in_digest_verifies_with_password_digest() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    body = signed_request("digest")
    token = username_token(body)
    password = token.find(f"{{{WSSE}}}Password")
    assert password.get("Type").endswith(PASSWORD_DIGEST)
    nonce_text = token.findtext(f"{{{WSSE}}}Nonce")
    created = token.findtext(f"{{{WSU}}}Created")
    nonce = base64.b64decode(nonce_text, validate=True)
    assert len(nonce) >= 16
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)
    assert before <= datetime.fromisoformat(created) <= datetime.now(UTC)
    assert password.text == password_digest(nonce, created, PASSWORD)
    assert PASSWORD.encode() not in body


def test_every_digest_has_a_fresh_nonce() -> None:
    nonces = {username_token(signed_request("digest")).findtext(f"{{{WSSE}}}Nonce") for _ in range(10)}
    assert len(nonces) == 10


def test_a_username_token_in_text_carries_a_nonce_and_created_too() -> None:
    token = username_token(signed_request("text"))
    assert token.findtext(f"{{{WSSE}}}Nonce")
    assert token.findtext(f"{{{WSU}}}Created")


def test_password_digest_against_a_known_vector() -> None:
    nonce = bytes(range(16))
    created = "2024-03-01T02:03:04Z"
    password = "Mật-khẩu"  # non-ASCII: the password's UTF-8 bytes are hashed
    by_hand = base64.b64encode(hashlib.sha1(nonce + created.encode("utf-8") + password.encode("utf-8")).digest())
    assert password_digest(nonce, created, password) == by_hand.decode("ascii")
    assert password_digest(nonce, created, password) == "/Lv2jgSOjfgGTXjMHRzXZwJGcdI="
    assert password_digest(nonce, created, "other") != by_hand.decode("ascii")


# --- the simulator's side: SoapCodec ----------------------------------------------------------------------


def codec(clock: Callable[[], float] | None = None, password: str = PASSWORD, skew: float = 300) -> SoapCodec:
    if clock is None:
        return SoapCodec(None, USERNAME, password, skew)
    return SoapCodec(None, USERNAME, password, skew, clock=clock)


def refusal_of(answer: Any) -> tuple[str, str]:
    """(faultcode's local part, faultstring) of a fault the codec answered with."""
    assert isinstance(answer, web.Response), answer
    assert answer.status == 500
    fault = payload(parsed(answer.body))
    assert fault.tag == f"{{{SOAP11}}}Fault"
    return fault.findtext("faultcode").rpartition(":")[2], fault.findtext("faultstring")


def with_token(body: bytes, *, password_type: str, password_text: str, nonce: bytes | None,
               created: str | None, username: str = USERNAME) -> bytes:
    """``body`` with its UsernameToken replaced by one written here."""
    envelope = parsed(body)
    token = envelope.find(f".//{{{WSSE}}}UsernameToken")
    for child in list(token):
        token.remove(child)
    etree.SubElement(token, f"{{{WSSE}}}Username").text = username
    profile = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    etree.SubElement(token, f"{{{WSSE}}}Password", Type=profile + password_type).text = password_text
    if nonce is not None:
        etree.SubElement(token, f"{{{WSSE}}}Nonce").text = base64.b64encode(nonce).decode()
    if created is not None:
        etree.SubElement(token, f"{{{WSU}}}Created").text = created
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def created_of(body: bytes) -> float:
    return datetime.fromisoformat(username_token(body).findtext(f"{{{WSU}}}Created")).timestamp()


@pytest.mark.parametrize("password_type", ["text", "digest"])
def test_the_codec_accepts_a_fresh_token_as_signed(password_type: str) -> None:
    decoded = codec().decode(signed_request(password_type))
    assert isinstance(decoded, tuple), decoded
    service, request, signed = decoded
    assert (service, signed) == ("TraCuuHoSo", True)
    assert request == {"madonvi": MADONVI, "mahoso": "X-1"}


@pytest.mark.parametrize("password_type", ["text", "digest"])
def test_the_codec_refuses_a_wrong_password(password_type: str) -> None:
    code, text = refusal_of(codec(password="the-right-one").decode(signed_request(password_type)))
    assert code == "FailedAuthentication"
    assert "wrong password" in text
    assert PASSWORD not in text


def test_the_codec_refuses_an_unknown_user() -> None:
    body = with_token(signed_request("text"), password_type=PASSWORD_TEXT, password_text=PASSWORD, nonce=None,
                      created=None, username="someone-else")
    assert refusal_of(codec().decode(body))[0] == "FailedAuthentication"


def test_the_codec_refuses_a_replayed_digest_nonce() -> None:
    simulator = codec()
    body = signed_request("digest")
    assert isinstance(simulator.decode(body), tuple)
    code, text = refusal_of(simulator.decode(body))
    assert (code, text) == ("FailedAuthentication", "nonce already used")
    # A new token (a new nonce) still passes.
    assert isinstance(simulator.decode(signed_request("digest")), tuple)


@pytest.mark.parametrize("offset", [301, -301, 3600 * 24])
def test_the_codec_refuses_a_digest_created_outside_the_skew(offset: float) -> None:
    body = signed_request("digest")
    at = created_of(body)
    code, text = refusal_of(codec(clock=lambda: at + offset).decode(body))
    assert code == "FailedAuthentication"
    assert "Created" in text


@pytest.mark.parametrize("offset", [299, -299, 0])
def test_the_codec_accepts_a_digest_created_within_the_skew(offset: float) -> None:
    body = signed_request("digest")
    at = created_of(body)
    assert isinstance(codec(clock=lambda: at + offset).decode(body), tuple)


def test_the_codec_refuses_a_digest_of_another_created_or_nonce() -> None:
    body = signed_request("digest")
    token = username_token(body)
    digest = token.findtext(f"{{{WSSE}}}Password")
    nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce"))
    created = token.findtext(f"{{{WSU}}}Created")
    for changed_nonce, changed_created in ((bytes(16), created), (nonce, created.replace("Z", "+00:00"))):
        forged = with_token(body, password_type=PASSWORD_DIGEST, password_text=digest, nonce=changed_nonce,
                            created=changed_created)
        code, text = refusal_of(codec().decode(forged))
        assert (code, text) == ("FailedAuthentication", "wrong password digest")


def test_the_codec_refuses_an_unreadable_nonce_or_created() -> None:
    body = signed_request("digest")
    token = username_token(body)
    digest = token.findtext(f"{{{WSSE}}}Password")
    broken = with_token(body, password_type=PASSWORD_DIGEST, password_text=digest, nonce=b"n", created="yesterday")
    assert refusal_of(codec().decode(broken)) == ("FailedAuthentication", "Nonce or Created unreadable")


@pytest.mark.parametrize("case", ["replayed_nonce", "created_outside_the_skew"])
def test_the_codec_refuses_a_stale_text_token(case: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = with_token(signed_request("text"), password_type=PASSWORD_TEXT, password_text=PASSWORD,
                      nonce=b"0123456789abcdef", created=created)
    if case == "replayed_nonce":
        simulator = codec()
        assert isinstance(simulator.decode(body), tuple)
        assert refusal_of(simulator.decode(body))[0] == "FailedAuthentication"
    else:
        assert refusal_of(codec(clock=lambda: now.timestamp() + 3600).decode(body))[0] == "FailedAuthentication"


def test_the_codec_refuses_a_request_the_xsd_refuses_naming_the_element() -> None:
    body = SoapWire(soap_portal()).request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ())[1]
    broken = body.replace(b"<ns0:mahoso>X-1</ns0:mahoso>", b"<ns0:mahoso>" + b"9" * 101 + b"</ns0:mahoso>")
    assert broken != body
    code, text = refusal_of(codec().decode(broken))
    assert code == "Client"
    assert "mahoso" in text and "maxLength" in text


def test_the_codec_reads_the_session_header() -> None:
    body = SoapWire(soap_portal()).request("TraCuuHoSo", TOKEN, {"mahoso": "X-1"}, ())[1]
    decoded = codec().decode(body)
    assert isinstance(decoded, tuple)
    assert decoded[1]["session"] == TOKEN
    assert decoded[2] is False


# --- replies: what the codec encodes, the wire reads --------------------------------------------------------


def reply_of(response: web.Response) -> tuple[int, dict[str, str], bytes]:
    return response.status, {"Content-Type": response.content_type}, response.body


def test_a_success_reply_reads_back_as_the_rest_fields() -> None:
    record = full_record()
    response = codec().encode("TraCuuHoSo", {"error_code": "0", "message": "Thành công", "result": [record]})
    assert payload(parsed(response.body)).tag == f"{{{SHIPPED_NS}}}TraCuuHoSoResponse"
    fields = SoapWire(soap_portal()).reply("TraCuuHoSo", *reply_of(response))
    assert fields == {"error_code": "0", "message": "Thành công", "result": [record]}


def test_a_fault_with_already_exists_is_already_exists_with_its_code() -> None:
    response = codec().encode("DongBoHoSoMC", {"error_code": "-3", "message": "Hồ sơ X-1 đã tồn tại"})
    with pytest.raises(AlreadyExists) as refused:
        SoapWire(soap_portal()).reply("DongBoHoSoMC", *reply_of(response))
    assert refused.value.error_code == "-3"


def test_a_fault_with_another_code_is_the_records_refusal() -> None:
    response = codec().encode("DongBoHoSoMC", {"error_code": "-1", "message": "MaTTHC không hợp lệ",
                                                "MaHoSo": "X-1"})
    with pytest.raises(PortalRejected) as refused:
        SoapWire(soap_portal()).reply("DongBoHoSoMC", *reply_of(response))
    assert refused.value.error_code == "-1"
    assert not refused.value.affects_every_record
    assert "X-1" in refused.value.message


# --- shapes: JSON records as elements and back --------------------------------------------------------------


def _request_shape() -> Shape:
    return load_contract(SoapSettings()).operation("DongBoHoSoMC").request


def _round_trip(value: dict[str, Any], shape: Shape) -> Any:
    element = build_element(value, shape)
    assert load_contract(SoapSettings()).schema.validate(element), load_contract(SoapSettings()).schema.error_log
    in_memory = from_xml(element, shape)
    reread = from_xml(etree.fromstring(etree.tostring(element, encoding="utf-8")), shape)
    assert in_memory == reread
    return in_memory


def test_a_realistic_dossier_round_trips_through_its_element() -> None:
    value = {"madonvi": MADONVI, "isUpdating": "True", "data": [full_record(), portal_record(TaiLieuNop=[])]}
    assert _round_trip(value, _request_shape()) == value


def test_the_built_element_is_what_zeep_sends() -> None:
    """The simulator's builder and the client's zeep agree: the same record reads back the same from both."""
    record = full_record()
    _, body, _, _ = SoapWire(soap_portal()).request("DongBoHoSoMC", TOKEN, push_params(record), ())
    shape = _request_shape()
    assert from_xml(payload(parsed(body)), shape) == {"madonvi": MADONVI, "isUpdating": "False", "data": [record]}


def test_a_file_reply_round_trips_its_base64() -> None:
    shape = load_contract(SoapSettings()).operation("LayTaiLieuHoSo").reply
    content = base64.b64encode(bytes(range(256)) * 3).decode("ascii")
    value = {"LayTaiLieuHoSoResult": {"error_code": "0", "TepTinDinhKem": [{"TenTep": "đơn.pdf", "Base64": content}]}}
    assert _round_trip(value, shape) == value


def test_a_boolean_round_trips() -> None:
    shape = load_contract(SoapSettings()).operation("CapNhatDaNhanHoSo").request
    for received in (True, False):
        value = {"madonvi": MADONVI, "maHoSo": "X-1", "phienBan": "12", "daNhan": received}
        assert _round_trip(value, shape) == value


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Co")), max_size=40)
_files = st.lists(st.fixed_dictionaries(
    {"TepDinhKemId": _text, "TenTepDinhKem": _text},
    optional={"IsDeleted": st.sampled_from(["True", "False"]), "MaThanhPhanHoSo": _text,
              "KichThuoc": st.integers(0, 2**62), "MaBam": _text}), max_size=4)
_others = st.lists(st.fixed_dictionaries(
    {"TenGiayTo": _text, "SoLuong": st.integers(0, 2**31 - 1), "LoaiGiayTo": st.integers(-(2**31), 2**31 - 1)}),
    max_size=3)
_ids = st.lists(st.fixed_dictionaries({"LoaiDinhDanh": _text, "SoDinhDanh": _text}), max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_files, others=_others, ids=_ids, owner=_text, note=_text,
       status=st.sampled_from([str(n) for n in range(1, 11)]), optional=st.booleans())
def test_any_dossier_round_trips(files: list[Any], others: list[Any], ids: list[Any], owner: str, note: str,
                                 status: str, optional: bool) -> None:
    record = portal_record(TrangThaiHoSo=status, ChuHoSo=owner, GhiChu=note, TaiLieuNop=files,
                           DanhSachTepDinhKemKhac=others, DinhDanhCHS=ids)
    if optional:
        del record["ChuHoSo"], record["DinhDanhCHS"]
    value = {"madonvi": MADONVI, "isUpdating": "False", "data": [record]}
    assert _round_trip(value, _request_shape()) == value


# --- secrets never logged ------------------------------------------------------------------------------------


def test_no_password_or_session_token_in_any_log_event() -> None:
    with capture_logs() as logs:
        session = SoapWire(soap_portal())
        session.login(USERNAME, PASSWORD)
        session.request("DongBoHoSoMC", TOKEN, push_params(portal_record(Unknown=PASSWORD)), ("X-1",))
        for password_type in ("text", "digest"):
            signed_request(password_type)
        with pytest.raises(RequestInvalid):
            session.request("DongBoHoSoMC", TOKEN, push_params(portal_record(TrangThaiHoSo="11")), ())
        login = codec().encode(LOGIN_SERVICE, {"error_code": 0, "message": "ok", "session": TOKEN})
        assert session.login_reply(*reply_of(login)) == TOKEN
        refused = codec().encode(LOGIN_SERVICE, {"error_code": "-1", "message": "sai mật khẩu"})
        with pytest.raises(LoginFailed):
            session.login_reply(*reply_of(refused))
        codec(password="another").decode(signed_request("text"))
    assert logs, "the dropped field is logged"
    for event in logs:
        assert PASSWORD not in repr(event)
        assert TOKEN not in repr(event)


def test_a_type_that_contains_itself_is_refused_at_start_not_recursed_into() -> None:
    class Node:  # what zeep hands over for <Node><Node>…</Node></Node>: an element whose type holds itself
        qname = "{urn:x}Node"
        max_occurs = 1
        type = SimpleNamespace(elements=[])

    Node.type.elements.append(("Node", Node))
    with pytest.raises(ConfigError, match="nests more than"):
        shape_of(Node)


def test_a_password_file_that_cannot_be_read_makes_a_signed_call_a_login_failure(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    settings = PortalSettings(transport="soap", username=USERNAME, password_file=secret, madonvi=MADONVI,
                              soap={"address": ADDRESS, "auth": "username_token"})
    wire = SoapWire(settings)
    wire.request("TraCuuHoSo", USERNAME_TOKEN, {"mahoso": "000.00.01.G12-261204-0001"}, ())
    secret.unlink()  # rotated away, mid-run
    with pytest.raises(LoginFailed, match="cannot read the password"):
        wire.request("TraCuuHoSo", USERNAME_TOKEN, {"mahoso": "000.00.01.G12-261204-0001"}, ())


@pytest.mark.parametrize("text", ["a\x01b", "a\ud800b"])
def test_a_text_no_xml_can_hold_is_the_records_own_error(text: str) -> None:
    wire = SoapWire(soap_portal(address=ADDRESS))
    record = {**portal_record(), "TrichYeuHoSo": text}
    with pytest.raises(RequestInvalid):
        wire.request("DongBoHoSoMC", TOKEN, {"isUpdating": "True", "data": [record]}, ())
