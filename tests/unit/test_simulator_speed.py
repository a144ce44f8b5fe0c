"""Full 100-record batches of realistic records through the simulated adapter's validation and store.

As a test this checks what the batch path does, never how fast. For figures, run it as a module:

    .venv/bin/python -m tests.unit.test_simulator_speed [--runs 5]

which prints the median records/s of validation + apply in this process, and of 100-record
``DongBoHoSoMC`` calls over loopback HTTP to ``portal-sync simulate-portal`` in its own process, and how
long ``GET /_sim/dossiers`` takes with 20,000 dossiers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import sys
import time
from typing import Any

import aiohttp

from connector.dev.simulator.state import SimulatorConfig, SimulatorState
from tests.factories import portal_record

AGENCY = "000.00.01.H22"
BATCH = 100


def realistic_record(i: int, version: int = 1) -> dict[str, Any]:
    """About what the mapping sends: every list a dossier usually has, Vietnamese text, ~1.5 kB of JSON."""
    number = f"{AGENCY}-240101-{i:06d}"
    files = [
        {"TepDinhKemId": f"doc-{i}-{k}", "TenTepDinhKem": f"Đơn đề nghị cấp chứng chỉ {k}.pdf", "IsDeleted": "False",
         "MaThanhPhanHoSo": f"TP{k}", "DuongDanTaiTepTin": f"https://motcua.example.vn/files/doc-{i}-{k}"}
        for k in range(2)
    ]  # fmt: skip
    fees = [{"TenPhiLePhi": "Lệ phí cấp chứng chỉ", "MaPhiLePhi": "LP01", "HinhThucThu": "Chuyển khoản",
             "Gia": "1000000", "LoaiPhiLePhi": "1"}]  # fmt: skip
    return portal_record(
        number, SoBienNhan=f"BN-{i}", ChuHoSo="Nguyễn Văn An", MaDoiTuong="", Email="an.nguyen@example.vn",
        SoDienThoai="0912345678", TrichYeuHoSo="Đề nghị cấp chứng chỉ năng lực hoạt động xây dựng hạng I",
        NgayTra="", NgayKetThucXuLy="", GhiChu=f"Hồ sơ đầy đủ (phiên bản {version})", TaiLieuNop=files,
        DanhSachLePhi=fees, DanhSachGiayToKetQua=[], KenhThucHien="1", NgayNopHoSo="20240101080000",
    )  # fmt: skip


def batches(dossiers: int, version: int = 1) -> list[list[dict[str, Any]]]:
    records = [realistic_record(i, version) for i in range(dossiers)]
    return [records[start : start + BATCH] for start in range(0, dossiers, BATCH)]


def test_full_batches_are_validated_stored_and_re_sends_counted() -> None:
    state = SimulatorState(SimulatorConfig(keep_history=0))
    first, newer = batches(2000), batches(2000, version=2)
    for batch in first + newer + newer:
        reply = state.apply_push(batch, "True")
        assert reply["error_code"] == "0", reply
        assert len(reply["result"]) == BATCH
    assert len(state.dossiers) == 2000
    assert all(d.pushes == 3 and d.record["GhiChu"].endswith("(phiên bản 2)") for d in state.dossiers.values())
    assert state.stats(["duplicate_pushes"]) == {"duplicate_pushes": 2000}


def test_one_bad_record_refuses_a_full_batch() -> None:
    state = SimulatorState(SimulatorConfig(keep_history=0))
    batch = batches(BATCH)[0]
    batch[BATCH - 1] = {**batch[BATCH - 1], "NgayHenTra": "20240230170000"}
    reply = state.apply_push(batch, "True")
    assert reply == {"error_code": "-1", "message": "data[99].NgayHenTra: must be yyyyMMddHHmmss and a real date"}
    assert state.dossiers == {}


# --- figures (not collected by pytest) ------------------------------------------------------------


def _in_process(runs: int, dossiers: int) -> list[float]:
    rates = []
    prepared = batches(dossiers)
    for _ in range(runs):
        state = SimulatorState(SimulatorConfig(keep_history=0))
        started = time.perf_counter()
        for batch in prepared:
            state.apply_push(batch, "True")
        rates.append(dossiers / (time.perf_counter() - started))
    return rates


async def _send(http: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> None:
    for body in bodies:
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            reply = await response.read()
            assert response.status == 200, reply[:200]
            assert b'"error_code": "0"' in reply, reply[:200]


async def _over_http(runs: int, calls: int, concurrency: int) -> tuple[list[float], float, float, int]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "simulate-portal", "--listen", "127.0.0.1:0", "--keep-history", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert child.stdout is not None
    line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
    found = re.search(r"listening on (http://\S+)", line)
    assert found, line
    url = found.group(1)
    credentials = {"username": "portal-sync", "password": "secret"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
            rates = []
            for run in range(runs):
                await http.post(url + "/_sim/reset")
                async with http.post(url + "/api/auth", json=credentials) as response:
                    token = (await response.json())["session"]
                bodies = [
                    json.dumps({"session": token, "madonvi": AGENCY, "service": "DongBoHoSoMC", "isUpdating": "True",
                                "data": batch}).encode()
                    for batch in batches(20_000, version=run + 1)
                ]  # fmt: skip
                queue = [bodies[k % len(bodies)] for k in range(calls)]
                started = time.perf_counter()
                await asyncio.gather(*(_send(http, url + "/api/integration", queue[k::concurrency])
                                       for k in range(concurrency)))  # fmt: skip
                rates.append(calls * BATCH / (time.perf_counter() - started))
            started = time.perf_counter()
            async with http.get(url + "/_sim/dossiers") as response:
                size = len(await response.read())
            default_seconds = time.perf_counter() - started
            started = time.perf_counter()
            async with http.get(url + "/_sim/dossiers?fields=record,first_received_at,last_received_at") as response:
                await response.read()
            receipts_seconds = time.perf_counter() - started
        return rates, default_seconds, receipts_seconds, size
    finally:
        child.send_signal(signal.SIGTERM)
        await asyncio.wait_for(child.wait(), 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="100-record calls per HTTP run")
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    local = _in_process(options.runs, 20_000)
    print(f"validation + apply, in process: median {statistics.median(local):,.0f} records/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in local)})")  # fmt: skip
    rates, plain, receipts, size = asyncio.run(_over_http(options.runs, options.calls, options.concurrency))
    print(f"DongBoHoSoMC over HTTP, {BATCH} records/call, {options.concurrency} connections: "
          f"median {statistics.median(rates):,.0f} records/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"GET /_sim/dossiers with 20,000 dossiers: {plain:.2f} s ({size / 1e6:.1f} MB); "
          f"?fields=record,first_received_at,last_received_at: {receipts:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
