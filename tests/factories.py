"""Small builders of valid local events for tests; override what a test is about."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from typing import Any


def event_dict(
    *, no: str = "000.00.01.G12-201005-0001", version: int = 1, event_type: str = "dossier.received",
    status: str = "received", sub_status: str | None = None, **dossier_overrides: Any,
) -> dict[str, Any]:
    dossier: dict[str, Any] = {
        "no": no,
        "version": version,
        "procedure_code": "BXD-NLHD-01",
        "agency_code": "000.00.01.G12",
        "agency_name": "Cục Quản lý hoạt động xây dựng",
        "receipt_no": "BN-0001",
        "status": status,
        "sub_status": sub_status,
        "channel": "direct",
        "result_delivery": "counter",
        "origin": "local",
        "applicant": {
            "type": "citizen",
            "name": "Nguyễn Văn An",
            "id_number": "001089012345",
            "phone": "0912345678",
            "email": "an.nguyen@example.vn",
            "portal_account_id": None,
        },
        "summary": "Đề nghị cấp chứng chỉ năng lực hoạt động xây dựng hạng I",
        "note": f"Hồ sơ đầy đủ (phiên bản {version})",
        "received_at": "2020-10-05T08:30:00+07:00",
        "due_at": "2020-10-26T17:00:00+07:00",
        "finished_at": None,
        "returned_at": None,
        "documents": [
            {"id": "doc-1", "name": "Đơn đề nghị cấp chứng chỉ", "component_code": "TP1",
             "url": "https://motcua.example.vn/files/doc-1", "deleted": False}
        ],
        "results": [],
        "fees": [{"code": "LP01", "name": "Lệ phí cấp chứng chỉ", "amount": 1000000, "kind": "fee",
                  "method": "Chuyển khoản"}],
    }
    dossier.update(copy.deepcopy(dossier_overrides))
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": "2020-10-05T08:31:00+07:00",
        "source": "motcua-test",
        "dossier": dossier,
    }


def step_dict(**overrides: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "actor": "Trần Thị Bình",
        "title": "Chuyên viên",
        "department": "Phòng Quản lý năng lực hoạt động xây dựng",
        "at": "2020-10-06T09:15:00+07:00",
        "note": "Thẩm định hồ sơ",
        "status": "processing",
        "started_at": "2020-10-06T09:00:00+07:00",
        "due_at": "2020-10-09T17:00:00+07:00",
    }
    step.update(overrides)
    return step


def encode(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as the one-stop system publishes them."""
    return event["dossier"]["no"].encode(), json.dumps(event, ensure_ascii=False).encode()


PORTAL_NUMBER = "000.00.01.H22-240101-0001"


def portal_record(number: str = PORTAL_NUMBER, **changes: Any) -> dict[str, Any]:
    """A minimal DongBoHoSoMC record the adapter accepts: every required field, nothing else."""
    record: dict[str, Any] = {
        "MaHoSo": number,
        "MaTTHC": "1.003560.000.00.00.H56",
        "TenTTHC": "Cấp giấy phép",
        "MaLinhVuc": "LV01",
        "TenLinhVuc": "Y tế",
        "LoaiDoiTuong": "1",
        "NgayTiepNhan": "20240101080000",
        "NgayHenTra": "20240115170000",
        "TrangThaiHoSo": "2",
        "HinhThuc": "0",
        "DonViXuLy": "000.00.01.H22",
    }
    record.update(changes)
    return record


def raw(document: Any, *, ascii_only: bool = True) -> bytes:
    """``document`` as a record value; a lone surrogate in it is written as its escape (or, with
    ``ascii_only=False``, as the bytes UTF-8 forbids)."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def raw_with(document: dict[str, Any], path: str, value: Any) -> bytes:
    """``raw(document)`` with the value at ``path`` (``dossier.procedure_code``) replaced; ``document`` is
    changed in place (pass a fresh one)."""
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    node[last] = value
    return raw(document)


@dataclass
class ConsumedRecord:
    """What a consumer hands over, for code that takes records without a broker."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
