"""Hostile Payment Platform QUERY replies, through the real client against a loopback server: each ends as a
``PlatformRefused``, never a crash; a reply in one-byte chunks is read whole; a "paid" the checksum does not
cover, or that comes with an error code, never settles a payment. (The adapter's replies: test_adapter_reply.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connector.config import PaymentSettings
from connector.payments.checksum import NOTIFICATION_FIELDS, QUERY_REPLY_FIELDS, ChecksumRefused, signed, verify
from connector.payments.messages import InvalidPaymentMessage, parse_query_reply, settlement_of
from connector.payments.platform import PaymentPlatformClient, PlatformRefused


def chunked_server(body: Callable[[], bytes], *, chunk: int, status: int = 200) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        data = body()
        for start in range(0, len(data), chunk):
            await response.write(data[start:start + chunk])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    return app


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Any]]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


SECRET = "pp-s3cret"
REF = "BXD.2026-000123"


def payment_settings(url: str) -> PaymentSettings:
    return PaymentSettings(enabled=True, platform_url=url, partner_code="BXD", secret=SecretStr(SECRET),
                           timeout_seconds=30)


def query_reply(**changes: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"LoaiBanTin": "QUERY", "MaLoi": "00", "MaDoiTac": "BXD", "MaThamChieu": REF,
                             "SoTien": "150000", "MaTienTe": "VND", "MaGiaoDich": "GD1", "MaNganHang": "NH",
                             "ThoiGianGD": "20261202101500", "ThongTinGiaoDich": "", "TrangThaiGD": "1"}
    reply.update(changes)
    return signed(reply, QUERY_REPLY_FIELDS, SECRET)


async def query_with(serve, body: bytes, *, chunk: int = 65_536) -> dict[str, Any]:
    url = await serve(chunked_server(lambda: body, chunk=chunk))
    async with PaymentPlatformClient(payment_settings(url)) as client:
        result: dict[str, Any] = await asyncio.wait_for(client.query(REF, datetime.now(UTC)), 30)
        return result


async def test_a_query_reply_in_one_byte_chunks_is_read_whole_and_settles(serve) -> None:
    reply = await query_with(serve, json.dumps(query_reply()).encode(), chunk=1)
    settlement = settlement_of(parse_query_reply(reply), "query")
    assert settlement is not None and settlement.outcome == "confirmed"


async def test_a_numeric_reference_in_a_query_reply_is_the_same_reference(serve) -> None:
    reply = query_reply(MaThamChieu=2026000123)
    url = await serve(chunked_server(lambda: json.dumps(reply).encode(), chunk=64))
    async with PaymentPlatformClient(payment_settings(url)) as client:
        answer = await asyncio.wait_for(client.query("2026000123", datetime.now(UTC)), 30)
    assert answer["MaThamChieu"] == 2026000123


def test_paid_with_an_error_code_is_not_trusted_the_payment_stays_pending() -> None:
    assert settlement_of(parse_query_reply(query_reply(MaLoi="99")), "query") is None
    failed = settlement_of(parse_query_reply(query_reply(MaLoi="51", TrangThaiGD="4")), "query")
    assert failed is not None and failed.outcome == "failed"


def test_a_status_changed_after_signing_fails_the_checksum() -> None:
    """The checksum covers TrangThaiGD: a "pending" turned "paid" on the way is refused, whatever the transport."""
    with pytest.raises(ChecksumRefused):
        verify({**query_reply(TrangThaiGD="3"), "TrangThaiGD": "1"}, QUERY_REPLY_FIELDS, SECRET)
    verify(query_reply(TrangThaiGD="3"), QUERY_REPLY_FIELDS, SECRET)  # the control: as signed, it holds


HOSTILE_QUERY_REPLIES: dict[str, bytes] = {
    "depth 10,000": b'{"MaLoi": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "duplicate MaLoi": json.dumps(query_reply())[:-1].encode() + b', "MaLoi": "99"}',
    "lone surrogate": json.dumps(query_reply(ThongTinGiaoDich="ok")).replace('"ok"', '"\\ud800"').encode(),
    "NaN amount": json.dumps(query_reply())[:-1].encode() + b', "x": NaN}',
    "BOM": b"\xef\xbb\xbf" + json.dumps(query_reply()).encode(),
    "HTML": b"<html><body>502 Bad Gateway</body></html>",
    "100 KB": b'{"a": "' + b"x" * 100_000 + b'"}',
    "forged checksum": json.dumps({**query_reply(), "SoTien": "1"}).encode(),
    "status changed after signing": json.dumps({**query_reply(TrangThaiGD="3"), "TrangThaiGD": "1"}).encode(),
    "status signed like a notification": json.dumps(
        signed({k: v for k, v in query_reply().items() if k != "MaXacThuc"}, NOTIFICATION_FIELDS, SECRET)).encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_QUERY_REPLIES))
async def test_a_hostile_query_reply_is_a_refusal_never_a_crash(serve, name: str) -> None:
    with pytest.raises(PlatformRefused):
        await query_with(serve, HOSTILE_QUERY_REPLIES[name], chunk=7)


# --- the verified reply's fields: parse_query_reply ----------------------------------------------------------

# name -> (changes to a valid paid reply, the field named). Each is signed: the checksum holds, the content not.
HOSTILE_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "status 2 (not a state)": ({"TrangThaiGD": "2"}, "TrangThaiGD"),
    "status with a space": ({"TrangThaiGD": "1 "}, "TrangThaiGD"),
    "status empty": ({"TrangThaiGD": ""}, "TrangThaiGD"),
    "status true": ({"TrangThaiGD": True}, "TrangThaiGD"),
    "status a float": ({"TrangThaiGD": 1.0}, "TrangThaiGD"),
    "status a list": ({"TrangThaiGD": ["1"]}, "TrangThaiGD"),
    "status in fullwidth digits": ({"TrangThaiGD": "１"}, "TrangThaiGD"),
    "paid without an amount": ({"SoTien": ""}, "SoTien"),
    "paid without a time": ({"ThoiGianGD": ""}, "ThoiGianGD"),
    "amount negative": ({"SoTien": "-150000"}, "SoTien"),
    "amount a negative number": ({"SoTien": -1}, "SoTien"),
    "amount with a decimal point": ({"SoTien": "150000.5"}, "SoTien"),
    "amount 1e400 as text": ({"SoTien": "1e400"}, "SoTien"),
    "amount a float": ({"SoTien": 150000.0}, "SoTien"),
    "amount of 40 digits": ({"SoTien": 10 ** 40}, "SoTien"),
    "time at hour 25": ({"ThoiGianGD": "20261202251500"}, "ThoiGianGD"),
    "time a leap second": ({"ThoiGianGD": "20261231235960"}, "ThoiGianGD"),
    "time on 31 November": ({"ThoiGianGD": "20261131101500"}, "ThoiGianGD"),
    "time in RFC 3339 with an odd offset": ({"ThoiGianGD": "2026-12-02T10:15:00+25:00"}, "ThoiGianGD"),
    "time a number": ({"ThoiGianGD": 20261202101500.5}, "ThoiGianGD"),
    "a NUL in the details": ({"ThongTinGiaoDich": "a\x00b"}, "ThongTinGiaoDich"),
    "an ESC in the bank code": ({"MaNganHang": "N\x1bH"}, "MaNganHang"),
    "a CR LF in the transaction id": ({"MaGiaoDich": "GD1\r\nX-Injected: 1"}, "MaGiaoDich"),
    "a C1 control in the details": ({"ThongTinGiaoDich": "a\x85b"}, "ThongTinGiaoDich"),
    "details of 10,000 characters": ({"ThongTinGiaoDich": "x" * 10_000}, "ThongTinGiaoDich"),
    "currency an object": ({"MaTienTe": {"v": "VND"}}, "MaTienTe"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FIELDS))
def test_a_signed_query_reply_with_a_hostile_field_is_malformed_naming_the_field(name: str) -> None:
    changes, field = HOSTILE_FIELDS[name]
    with pytest.raises(InvalidPaymentMessage) as caught:
        parse_query_reply({**query_reply(), **changes})
    assert (caught.value.reason, caught.value.field) == ("malformed_reply", field)


REPLY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["1", "3", "4", "00", "99", "20261202101500", "150000", "\ud800", "\x00", "|", REF]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
REPLY_FIELDS_ANY = st.dictionaries(
    st.sampled_from([*NOTIFICATION_FIELDS, "TrangThaiGD", "MaXacThuc"]) | st.text(max_size=8), REPLY_VALUES,
    max_size=14)


@settings(max_examples=400, deadline=None)
@given(st.one_of(REPLY_FIELDS_ANY, st.builds(lambda changes: {**query_reply(), **changes}, REPLY_FIELDS_ANY)))
def test_any_reply_object_parses_into_a_result_or_is_malformed_never_anything_else(reply: dict[str, Any]) -> None:
    refusal: InvalidPaymentMessage | None = None
    try:
        result = parse_query_reply(reply)
    except InvalidPaymentMessage as error:
        refusal = error
    if refusal is not None:
        assert refusal.reason == "malformed_reply" and isinstance(refusal.field, str)
        return
    assert result.status in ("1", "3", "4")
    settlement = settlement_of(result, "query")
    if settlement is not None and settlement.outcome == "confirmed":
        assert result.error_code == "00" and result.amount is not None
