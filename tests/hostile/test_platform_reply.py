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
from pydantic import SecretStr

from connector.config import PaymentSettings
from connector.payment_events import parse_query_reply, settlement_of
from connector.portal.payments import NOTIFICATION_FIELDS, QUERY_REPLY_FIELDS, signed
from connector.portal.platform import PaymentPlatformClient, PlatformRefused


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
