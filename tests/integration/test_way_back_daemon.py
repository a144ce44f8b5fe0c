"""The daemon as assembled: its public listener takes a dossier pushed by the national side (with its bearer
token) and the Payment Platform's result notification for a payment the one-stop system requested on Kafka,
both reach their topics once, and the pushed revision is acknowledged to the portal (the daemon does not
poll here)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from connector.config import load_settings
from connector.kafka import read_topic
from connector.national_time import PORTAL_TZ
from connector.service import Service
from connector.store.way_back import InboundStore
from tests.integration.pipeline_harness import SIM, Topics, daemon_config, unique_group, wait_until
from tests.kafkatools import produce

pytestmark = pytest.mark.broker

AGENCY = "000.00.01.G12"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=20)
TOKEN = "inbound-token-for-tests"


async def _records(settings: Any, topic: str) -> list[Any]:
    found: list[Any] = []
    async for batch in read_topic(settings.kafka, topic, wait_seconds=20):
        found.extend(batch)
    return found


async def test_the_daemon_publishes_a_pushed_dossier_and_a_notified_payment_once(
        kafka_bootstrap, topics, portal_url, tmp_path) -> None:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"), unique_group())
    names = {base: await topics.create(base) for base in ("portal.submissions", "portal.payments",
                                                           "payment.requests")}
    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    config["kafka"]["topics"].update(submissions=names["portal.submissions"], payments=names["portal.payments"],
                                     payment_requests=names["payment.requests"])
    config["payments"] = {"enabled": True, "platform_url": portal_url, "partner_code": SIM.pp_partner_code,
                          "secret": SIM.pp_secret, "query_initial_seconds": 60, "scan_interval_seconds": 0.2}
    config["public"] = {"listen": "127.0.0.1:0", "inbound_token": TOKEN}
    config["submissions"] = {"attachments_dir": str(tmp_path / "attachments")}
    settings = load_settings(None, **config)
    reference, dossier = "BXD-PAY-0001", f"{AGENCY}-261124-0501"

    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        async with http.post(f"{portal_url}/_sim/payments", json={"payments": [
                {"MaThamChieu": reference, "SoTien": 500_000, "outcome": "paid"}]}) as response:
            assert response.status == 201
        requested = datetime.now(UTC).isoformat()
        await produce(kafka_bootstrap, names["payment.requests"], [(dossier.encode(), json.dumps({
            "schema_version": 1, "event_id": str(uuid.uuid4()), "event_type": "payment.requested",
            "occurred_at": requested, "source": "motcua", "payment": {
                "dossier_no": dossier, "reference": reference, "amount": 500_000, "currency": "VND",
                "requested_at": requested}}).encode())])

        stop = asyncio.Event()
        async with Service(settings) as service:
            running = asyncio.create_task(service.run(stop))
            try:
                inbound = InboundStore(service.store)

                async def registered() -> bool:
                    return await inbound.payment(reference) is not None

                await wait_until(registered, timeout=60, what="the payment request registered")
                async with http.post(f"{portal_url}/_sim/payments/{reference}/callback", json={
                        "url": service.public_url + settings.public.payments_path}) as response:
                    callback = await response.json()
                assert (callback["status"], callback["reply"]["MaLoi"]) == (200, "00"), callback

                pushed = {"MaHoSo": dossier, "PhienBan": "1", "MaTTHC": "1.009972.000.00.00.G12",
                          "DonViXuLy": AGENCY, "NgayNopHoSo": datetime.now(PORTAL_TZ).strftime("%Y%m%d%H%M%S"),
                          "TrangThaiHoSo": "1", "ChuHoSo": "Trần Thị Bình",
                          "TaiLieuNop": [{"TepDinhKemId": "1", "TenTepDinhKem": "Đơn đề nghị.pdf",
                                          "MaThanhPhanHoSo": "TPHS-01",
                                          "Base64": base64.b64encode(b"%PDF-1.7 don").decode()}]}
                async with http.post(f"{portal_url}/_sim/submissions", json={"submissions": [pushed]}) as response:
                    assert response.status == 201  # the portal holds what it pushes: it can be acknowledged
                async with http.post(service.public_url + settings.public.submissions_path, json=pushed) as response:
                    assert (response.status, (await response.json())["error_code"]) == (401, -1)  # no token
                for expected in (0, 1):
                    async with http.post(service.public_url + settings.public.submissions_path, json=pushed,
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                        assert (await response.json())["error_code"] == expected

                async def published() -> bool:
                    return await inbound.outbox_backlog() == 0 and (await inbound.payment(reference)).state != "pending"

                await wait_until(published, timeout=30, what="both messages published")

                async def acknowledged() -> bool:
                    async with http.get(f"{portal_url}/_sim/submissions/{dossier}") as response:
                        return bool((await response.json())["acknowledged"] == {"1": 1})

                await wait_until(acknowledged, timeout=30, what="the pushed revision acknowledged to the portal")
            finally:
                stop.set()
                await asyncio.wait_for(running, 60)

    payments = await _records(settings, names["portal.payments"])
    submissions = await _records(settings, names["portal.submissions"])
    assert [json.loads(r.value)["event_type"] for r in payments] == ["payment.confirmed"]
    assert json.loads(payments[0].value)["payment"]["learnt_via"] == "callback"
    assert [json.loads(r.value)["submission"]["no"] for r in submissions] == [dossier]
