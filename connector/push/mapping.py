"""Deployment mappings (``mappings/*.yaml``) and the pure mapping of events to portal records.

Loading validates everything once, at start-up; mapping an event never touches the disk.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from connector.errors import ConfigError, InvalidInput
from connector.national_time import portal_time
from connector.push.events import Dossier, DossierEvent, InvalidEvent, Step, vocabulary
from connector.stats.calendar import DEFAULT_CALENDAR_DIR, DEFAULT_SESSIONS, WorkCalendar, load_calendar
from connector.stats.deadlines import TimeLimit, due_from_limit

NATIONAL_PROCEDURE_CODE = re.compile(r"^\d\.\d{6}\.\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")

# National dossier statuses (PORTAL.md §2): fixed by the national side, not per deployment.
NATIONAL_STATUS_NAMES: dict[int, str] = {
    1: "Mới đăng ký",
    2: "Được tiếp nhận",
    3: "Không được tiếp nhận",
    4: "Đang xử lý",
    5: "Yêu cầu bổ sung giấy tờ",
    6: "Yêu cầu thực hiện nghĩa vụ tài chính",
    7: "Công dân yêu cầu rút hồ sơ",
    8: "Dừng xử lý",
    9: "Đã xử lý xong",
    10: "Đã trả kết quả",
}

RECORD_FIELDS = frozenset({
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "LoaiDoiTuong", "NgayTiepNhan", "NgayHenTra",
    "TrangThaiHoSo", "HinhThuc", "DonViXuLy", "SoBienNhan", "ChuHoSo", "MaDoiTuong", "ThongTinKhac", "Email",
    "Fax", "SoDienThoai", "TrichYeuHoSo", "NgayTra", "ThongTinTra", "NgayKetThucXuLy", "GhiChu",
    "KenhThucHien", "TenTepDinhKem", "TenGiayTo", "TenPhiLePhi",
})
STEP_FIELDS = frozenset({
    "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai", "NgayBatDau",
    "NgayKetThucTheoQuyDinh",
})
# DongBoTrangThaiHoSo (PORTAL.md §1): the status of a dossier that started on the national portal, sent back as
# one object with these fields, in this order (``map_status_back`` fills them).
STATUS_BACK_FIELDS = ("MaHoSo", "MaHoSoDonVi", "TrangThaiHoSo", "NgayCapNhat", "NgayHenTra", "NgayKetThucXuLy",
                      "NgayTra", "GhiChu")
ELLIPSIS = "…"


class MappingError(InvalidInput):
    """An event the current mappings cannot translate (unmapped status, procedure, code)."""


class MappingsInvalid(ConfigError):
    """The mappings directory itself is wrong; the message lists every problem with file and field."""


# ---------------------------------------------------------------------------------------------------------
# The mappings, as validated data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusTable(_Strict):
    by_sub_status: dict[str, int] = Field(default_factory=dict)
    by_status: dict[str, int]

    @field_validator("by_sub_status", "by_status")
    @classmethod
    def _national_codes(cls, table: dict[str, int]) -> dict[str, int]:
        wrong = [f"{k}={v}" for k, v in table.items() if v not in NATIONAL_STATUS_NAMES]
        if wrong:
            raise ValueError(f"national status codes are 1..10; got {', '.join(wrong)}")
        return table


class Procedure(_Strict):
    national_code: str
    name: str = Field(min_length=1)
    field_code: str = Field(min_length=1)
    field_name: str = Field(min_length=1)
    # The statutory time limit: the due time of a dossier whose events carry none (due_at null).
    time_limit: TimeLimit | None = None

    @field_validator("national_code")
    @classmethod
    def _national_code_shape(cls, value: str) -> str:
        if not NATIONAL_PROCEDURE_CODE.match(value):
            raise ValueError("must look like 1.003560.000.00.00.H56 (MaTTHC)")
        return value


class Codes(_Strict):
    applicant_types: dict[str, str]
    result_delivery: dict[str, str]
    channels: dict[str, str]
    fee_kinds: dict[str, str]
    identity_types: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> Codes:
        required = vocabulary()
        problems = [
            f"{table}: missing {', '.join(sorted(keys - getattr(self, table).keys()))}"
            for table, keys in required.items()
            if keys - getattr(self, table).keys()
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WorkSession(_Strict):
    start: time
    end: time


class Mappings(_Strict):
    status: StatusTable
    procedures: dict[str, Procedure]
    codes: Codes
    limits: dict[str, int] = Field(default_factory=dict)
    # The working day's sessions (deadlines in working hours and days count only inside them).
    work_sessions: tuple[WorkSession, ...] = tuple(WorkSession(start=a, end=b) for a, b in DEFAULT_SESSIONS)
    # Loaded from the directory's calendar/<year>.yaml beside the sections (``load_mappings``).
    _calendar: WorkCalendar = PrivateAttr(default_factory=WorkCalendar)

    @property
    def calendar(self) -> WorkCalendar:
        return self._calendar

    @field_validator("work_sessions")
    @classmethod
    def _sessions_in_order(cls, sessions: tuple[WorkSession, ...]) -> tuple[WorkSession, ...]:
        WorkCalendar(sessions=[(s.start, s.end) for s in sessions])  # raises ValueError naming the rule
        return sessions

    @field_validator("limits")
    @classmethod
    def _known_fields(cls, limits: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(limits) - RECORD_FIELDS - STEP_FIELDS - set(STATUS_BACK_FIELDS))
        if unknown:
            raise ValueError(f"no portal field named {', '.join(unknown)}")
        small = [f"{k}={v}" for k, v in limits.items() if v < 2]
        if small:
            raise ValueError(f"a limit must be at least 2 characters: {', '.join(small)}")
        return limits


def load_mappings(directory: Path) -> Mappings:
    """Read every ``*.yaml`` in ``directory``; each top-level key is one section. Raise MappingsInvalid."""
    if not directory.is_dir():
        raise MappingsInvalid(f"{directory}: not a directory")
    sections: dict[str, Any] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path.name}: cannot be read as YAML ({exc})")
            continue
        if content is None:
            continue
        if not isinstance(content, dict):
            problems.append(f"{path.name}: the top level must be a mapping of sections")
            continue
        for section, body in content.items():
            if section in sections:
                problems.append(f"{path.name}: section '{section}' is also defined in {origin[section]}")
                continue
            sections[section] = body
            origin[section] = path.name
    if not problems:
        try:
            mappings = Mappings.model_validate(sections)
            # A deployment without calendar files of its own keeps the shipped ones (2024-2026).
            calendar_dir = directory / "calendar" if (directory / "calendar").is_dir() else DEFAULT_CALENDAR_DIR
            mappings._calendar = load_calendar(calendar_dir,
                                               sessions=[(s.start, s.end) for s in mappings.work_sessions])
            return mappings
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = [str(p) for p in err["loc"]]
                where = origin.get(loc[0], "(missing file)") if loc else "?"
                problems.append(f"{where}: {'.'.join(loc) or '(top level)'}: {err['msg']}")
    raise MappingsInvalid(f"{directory}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


# ---------------------------------------------------------------------------------------------------------
# Events → portal records


@dataclass(frozen=True, slots=True)  # slots: one is built per event and thousands are held in flight
class MappedEvent:
    """What one event becomes on the national side."""

    dossier_no: str
    version: int
    record: dict[str, Any]  # a DongBoHoSoMC record; with status_back, the DongBoTrangThaiHoSo data object
    step: dict[str, Any] | None  # a CapNhatTienDoHoSoMC step, for dossier.step events
    truncated: tuple[str, ...] = field(default=())  # fields cut to their declared limit
    # Local codes and the reception time, kept in the ledger for operators' filters (backfill).
    agency_code: str = ""
    procedure_code: str = ""
    received_at: datetime | None = None
    # A dossier that started on the national portal: its state goes back with DongBoTrangThaiHoSo, not
    # DongBoHoSoMC (its steps still go with CapNhatTienDoHoSoMC: the dossier exists there).
    status_back: bool = False
    national_status: int = 0
    due_at: datetime | None = None  # NgayHenTra as sent
    due_from_limit: bool = False  # the event had none: from the procedure's time limit


def due_time(dossier: Dossier, mappings: Mappings) -> tuple[datetime, bool]:
    """The dossier's due time (NgayHenTra), and whether it came from the procedure's time limit (``due_at``
    null). Raise MappingError when the event has none and its procedure no time limit."""
    if dossier.due_at is not None:
        return dossier.due_at, False
    procedure = mappings.procedures.get(dossier.procedure_code)
    if procedure is None or procedure.time_limit is None:
        raise MappingError(f"is null, and procedure '{dossier.procedure_code}' has no time_limit in mappings "
                           "procedures to take the due time from", reason="no_due_time", field="dossier.due_at")
    return due_from_limit(dossier.received_at, procedure.time_limit, mappings.calendar), True


def national_status(status: str, sub_status: str | None, table: StatusTable) -> int:
    """By sub-status first, then status; raise MappingError naming both when neither is mapped."""
    if sub_status is not None and sub_status in table.by_sub_status:
        return table.by_sub_status[sub_status]
    if status in table.by_status:
        return table.by_status[status]
    shown = f"status '{status}'" + (f" / sub-status '{sub_status}'" if sub_status else "")
    raise MappingError(f"{shown} has no national status in mappings (status.by_sub_status / status.by_status)",
                       reason="unmapped_status", field="dossier.status")


def _code(table: Mapping[str, str], key: str, table_name: str, field_name: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise MappingError(f"'{key}' is not in mappings codes.{table_name}", reason="unmapped_code",
                           field=field_name) from None


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + ELLIPSIS


def apply_limits(data: dict[str, Any], limits: Mapping[str, int], cut: list[str], prefix: str = "") -> None:
    """NFC-normalise every string (the adapter counts code points: decomposed Vietnamese text is longer),
    then cut fields to their declared limit, wherever they appear; record each cut in ``cut``."""
    for key, value in data.items():
        if isinstance(value, str):
            value = data[key] = unicodedata.normalize("NFC", value)
            if key in limits and len(value) > limits[key]:
                data[key] = _cut(value, limits[key])
                cut.append(prefix + key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    apply_limits(item, limits, cut, f"{prefix}{key}[{index}].")


def map_dossier(dossier: Dossier, mappings: Mappings) -> dict[str, Any]:
    """The DongBoHoSoMC record for the dossier's current state, before length limits."""
    if not dossier.no.startswith(dossier.agency_code):
        raise MappingError("must begin with the agency code (dossier.agency_code); the portal rejects it otherwise",
                           reason="dossier_no_without_agency", field="dossier.no")
    procedure = mappings.procedures.get(dossier.procedure_code)
    if procedure is None:
        raise MappingError(f"procedure '{dossier.procedure_code}' is not in mappings procedures",
                           reason="unmapped_procedure", field="dossier.procedure_code")
    codes = mappings.codes
    applicant = dossier.applicant
    record: dict[str, Any] = {
        "MaHoSo": dossier.no,
        "MaTTHC": procedure.national_code,
        "TenTTHC": procedure.name,
        "MaLinhVuc": procedure.field_code,
        "TenLinhVuc": procedure.field_name,
        "LoaiDoiTuong": _code(codes.applicant_types, applicant.type, "applicant_types", "dossier.applicant.type"),
        "NgayTiepNhan": portal_time(dossier.received_at),
        "NgayHenTra": portal_time(due_time(dossier, mappings)[0]),
        "TrangThaiHoSo": str(national_status(dossier.status, dossier.sub_status, mappings.status)),
        "HinhThuc": _code(codes.result_delivery, dossier.result_delivery, "result_delivery",
                          "dossier.result_delivery"),
        "DonViXuLy": dossier.agency_name,
        "SoBienNhan": dossier.receipt_no or "",
        "ChuHoSo": applicant.name,
        "MaDoiTuong": applicant.portal_account_id or "",
        "ThongTinKhac": "",
        "Email": applicant.email or "",
        "Fax": "",
        "SoDienThoai": applicant.phone or "",
        "TrichYeuHoSo": dossier.summary or "",
        "NgayTra": portal_time(dossier.returned_at),
        "ThongTinTra": "",
        "NgayKetThucXuLy": portal_time(dossier.finished_at),
        "GhiChu": dossier.note or "",
        "KenhThucHien": _code(codes.channels, dossier.channel, "channels", "dossier.channel"),
        "TaiLieuNop": [
            {
                "TepDinhKemId": doc.id,
                "TenTepDinhKem": doc.name,
                "IsDeleted": "True" if doc.deleted else "False",
                "MaThanhPhanHoSo": doc.component_code or "",
                "DuongDanTaiTepTin": doc.url,
            }
            for doc in dossier.documents
        ],
        "DanhSachGiayToKetQua": [
            {
                "TenGiayTo": res.name,
                "MaThanhPhanHoSo": res.component_code or "",
                "GiayToId": res.id,
                "DuongDanTepTinKetQua": res.url,
            }
            for res in dossier.results
        ],
        "DanhSachLePhi": [
            {
                "TenPhiLePhi": fee.name,
                "MaPhiLePhi": fee.code,
                "HinhThucThu": fee.method or "",
                "Gia": str(fee.amount),
                "LoaiPhiLePhi": _code(codes.fee_kinds, fee.kind, "fee_kinds", "dossier.fees.kind"),
            }
            for fee in dossier.fees
        ],
    }
    identity_type = codes.identity_types.get(applicant.type)
    if identity_type is not None and applicant.id_number:
        record["DinhDanhCHS"] = [{"LoaiDinhDanh": identity_type, "SoDinhDanh": applicant.id_number}]
    return record


def local_number(dossier: Dossier) -> str:
    """The one-stop system's own number of a dossier that started on the national portal (MaHoSoDonVi):
    ``local_no``, or else ``receipt_no``. Raise InvalidEvent when the event carries neither."""
    if dossier.local_no:
        return dossier.local_no
    if dossier.receipt_no and dossier.receipt_no.strip():
        return dossier.receipt_no
    raise InvalidEvent("a dossier that started on the national portal needs its local number to send its status "
                       "back (DongBoTrangThaiHoSo MaHoSoDonVi): dossier.local_no, or else dossier.receipt_no",
                       reason="local_no_missing", field="dossier.local_no")


def map_status_back(event: DossierEvent, mappings: Mappings) -> dict[str, Any]:
    """The DongBoTrangThaiHoSo data object for a dossier that started on the national portal, before length
    limits: its national number and ours, its national status (the same table as DongBoHoSoMC), when it
    changed (the event's time) and its dates. Raises MappingError or InvalidEvent."""
    dossier = event.dossier
    values = (
        dossier.no,  # the national number: the dossier started there
        local_number(dossier),
        str(national_status(dossier.status, dossier.sub_status, mappings.status)),
        portal_time(event.occurred_at),
        portal_time(due_time(dossier, mappings)[0]),
        portal_time(dossier.finished_at),
        portal_time(dossier.returned_at),
        dossier.note or "",
    )
    return dict(zip(STATUS_BACK_FIELDS, values, strict=True))


def is_status_back(record: Mapping[str, Any]) -> bool:
    """Whether a record as sent (kept in the ledger) is a DongBoTrangThaiHoSo data object rather than a
    DongBoHoSoMC record: only the former has MaHoSoDonVi, and every DongBoHoSoMC record has MaTTHC."""
    return "MaHoSoDonVi" in record and "MaTTHC" not in record


def map_step(dossier_no: str, step: Step, mappings: Mappings) -> dict[str, Any]:
    """The CapNhatTienDoHoSoMC step. A null note broke progress updates in production: fall back to the
    national name of the step's status, so NoiDungXuLy is never empty."""
    status = national_status(step.status, None, mappings.status)
    content = step.note if step.note and step.note.strip() else NATIONAL_STATUS_NAMES[status]
    return {
        "MaHoSo": dossier_no,
        "NguoiXuLy": step.actor,
        "ChucDanh": step.title,
        "ThoiDiemXuLy": portal_time(step.at),
        "PhongBanXuLy": step.department,
        "NoiDungXuLy": content,
        "TrangThai": str(status),
        "NgayBatDau": portal_time(step.started_at),
        "NgayKetThucTheoQuyDinh": portal_time(step.due_at),
    }


def map_event(event: DossierEvent, mappings: Mappings) -> MappedEvent:
    """Everything the portal needs for one event, length limits applied. Raises MappingError, or InvalidEvent
    for a dossier from the national portal without its local number."""
    dossier = event.dossier
    status_back = dossier.origin == "portal"
    record = map_status_back(event, mappings) if status_back else map_dossier(dossier, mappings)
    step = map_step(dossier.no, event.step, mappings) if event.step is not None else None
    cut: list[str] = []
    apply_limits(record, mappings.limits, cut)
    if step is not None:
        apply_limits(step, mappings.limits, cut, "step.")
    due, from_limit = due_time(dossier, mappings)
    return MappedEvent(dossier.no, dossier.version, record, step, tuple(cut), dossier.agency_code,
                       dossier.procedure_code, dossier.received_at, status_back,
                       int(record["TrangThaiHoSo"]), due, from_limit)
