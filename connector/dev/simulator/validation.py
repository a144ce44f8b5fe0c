"""The checks the adapter applies to pushed records and progress steps (PORTAL.md section 1).

Pure functions over decoded JSON. The rules are declared as pydantic models in strict mode (a number
where a string is expected is an error, as on the real adapter); problems come back as stable
``"<path>: <rule>"`` strings such as ``"TaiLieuNop[0].IsDeleted: must be one of 'True' or 'False'"``.
Unknown extra fields are accepted: newer adapters take more than this list.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

DOSSIER_NO = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}-.+")
_DATE_DIGITS = re.compile(r"^[0-9]{14}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
_AMOUNT = re.compile(r"^[0-9]+$")

DATE_RULE = "must be yyyyMMddHHmmss and a real date"


def _real_date(value: str) -> str:
    if not _DATE_DIGITS.fullmatch(value):
        raise PydanticCustomError("date", DATE_RULE)
    try:
        datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[8:10]), int(value[10:12]), int(value[12:14]),
        )  # fmt: skip
    except ValueError:
        raise PydanticCustomError("date", DATE_RULE) from None
    return value


def _empty_or_real_date(value: str) -> str:
    return value if value == "" else _real_date(value)


def _dossier_no(value: str) -> str:
    if not DOSSIER_NO.match(value):
        raise PydanticCustomError("dossier_no", "must start with the agency code, like 000.00.01.H22-")
    return value


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise PydanticCustomError("url", "must be an http(s) URL")
    return value


def _amount(value: str) -> str:
    if not _AMOUNT.match(value):
        raise PydanticCustomError("amount", "must be a whole number of dong, digits only")
    return value


Required = Annotated[str, StringConstraints(min_length=1)]
RequiredName2000 = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
RequiredName4000 = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Text50 = Annotated[str, StringConstraints(max_length=50)]
Text1000 = Annotated[str, StringConstraints(max_length=1000)]
Text2000 = Annotated[str, StringConstraints(max_length=2000)]
Date = Annotated[str, AfterValidator(_real_date)]
OptionalDate = Annotated[str, AfterValidator(_empty_or_real_date)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Status = Literal["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
TrueFalse = Literal["True", "False"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class SubmittedFile(_Strict):
    TepDinhKemId: Required
    TenTepDinhKem: RequiredName4000
    IsDeleted: TrueFalse
    MaThanhPhanHoSo: str
    DuongDanTaiTepTin: HttpUrl  # the portal downloads the file from here


class ResultDocument(_Strict):
    TenGiayTo: RequiredName2000
    MaThanhPhanHoSo: str
    GiayToId: Required
    DuongDanTepTinKetQua: HttpUrl


class Fee(_Strict):
    TenPhiLePhi: Required
    MaPhiLePhi: str
    HinhThucThu: str
    Gia: Annotated[str, AfterValidator(_amount)]
    LoaiPhiLePhi: str


class OtherAttachment(_Strict):
    TenGiayTo: RequiredName2000
    SoLuong: int = Field(ge=0)
    LoaiGiayTo: int


class SupplementRound(_Strict):
    HoSoBoSungId: str = ""
    NguoiYeuCauBoSung: str = ""
    NoiDungBoSung: str = ""
    NgayBoSung: OptionalDate = ""
    NguoiTiepNhanBoSung: str = ""
    ThongTinTiepNhan: str = ""
    NgayTiepNhanBoSung: OptionalDate = ""
    TrangThaiBoSung: str = ""
    DanhSachGiayToBoSung: list[dict[str, Any]] = Field(default_factory=list)
    DanhSachLePhiBoSung: list[dict[str, Any]] = Field(default_factory=list)
    NgayHenTraTruoc: OptionalDate = ""
    NgayHenTraMoi: OptionalDate = ""


class ApplicantIdentity(_Strict):
    LoaiDinhDanh: Required
    SoDinhDanh: Required


class DossierRecord(_Strict):
    """One ``DongBoHoSoMC`` record. Optional fields may be absent or ""; never null."""

    MaHoSo: Annotated[str, AfterValidator(_dossier_no)]
    MaTTHC: Required
    TenTTHC: Required
    MaLinhVuc: Required
    TenLinhVuc: Required
    LoaiDoiTuong: Literal["1", "2", "3", "4"]
    NgayTiepNhan: Date
    NgayHenTra: Date
    TrangThaiHoSo: Status
    HinhThuc: Literal["0", "1"]
    DonViXuLy: Required

    SoBienNhan: str = ""
    ChuHoSo: str = ""
    MaDoiTuong: str = ""
    ThongTinKhac: str = ""
    Email: str = ""
    Fax: str = ""
    SoDienThoai: str = ""
    TrichYeuHoSo: Text1000 = ""
    NgayTra: OptionalDate = ""
    ThongTinTra: str = ""
    NgayKetThucXuLy: OptionalDate = ""
    GhiChu: Text2000 = ""
    TaiLieuNop: list[SubmittedFile] = Field(default_factory=list)
    DanhSachGiayToKetQua: list[ResultDocument] = Field(default_factory=list)
    DanhSachLePhi: list[Fee] = Field(default_factory=list)
    DanhSachTepDinhKemKhac: list[OtherAttachment] = Field(default_factory=list)
    DanhSachHoSoBoSung: list[SupplementRound] = Field(default_factory=list)
    KenhThucHien: Literal["", "1", "2", "3"] = ""
    NgayNopHoSo: OptionalDate = ""
    NgayTuChoi: OptionalDate = ""
    DuocThanhToanTrucTuyen: str = ""
    DinhDanhCHS: list[ApplicantIdentity] = Field(default_factory=list)


class ProgressStep(_Strict):
    """One ``CapNhatTienDoHoSoMC`` step: all nine fields present."""

    MaHoSo: Required
    NguoiXuLy: Text50
    ChucDanh: str
    ThoiDiemXuLy: Date
    PhongBanXuLy: str
    NoiDungXuLy: Required  # a null or empty one broke progress updates in production
    TrangThai: Status
    NgayBatDau: OptionalDate
    NgayKetThucTheoQuyDinh: OptionalDate


def record_problems(record: Any) -> list[str]:
    """Every rule ``record`` breaks, as ``"<Field>: <rule>"``; empty when it is acceptable."""
    return [_describe(loc, rule) for loc, rule in _issues(DossierRecord, record)]


def step_problems(step: Any) -> list[str]:
    return [_describe(loc, rule) for loc, rule in _issues(ProgressStep, step)]


def push_problem(data: Any, is_updating: Any) -> str | None:
    """The first reason a ``DongBoHoSoMC`` call is refused as a whole, or None."""
    if is_updating not in ("True", "False"):  # the string, not a JSON boolean
        return 'isUpdating: must be the string "True" or "False"'
    return _first_item_problem(DossierRecord, data)


def steps_problem(data: Any) -> str | None:
    """The first reason a ``CapNhatTienDoHoSoMC`` call is refused as a whole, or None."""
    return _first_item_problem(ProgressStep, data)


Loc = tuple[int | str, ...]


def _first_item_problem(model: type[BaseModel], data: Any) -> str | None:
    if not isinstance(data, list) or not data:
        return "data: must be a non-empty list"
    for index, item in enumerate(data):
        issues = _issues(model, item)
        if issues:
            loc, rule = issues[0]
            return _describe(("data", index, *loc), rule)
    return None


def _issues(model: type[BaseModel], value: Any) -> list[tuple[Loc, str]]:
    try:
        model.model_validate(value)
    except ValidationError as exc:
        return [(error["loc"], _rule(error)) for error in exc.errors(include_url=False, include_input=False)]
    return []


_RULES = {
    "missing": "required",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
}


def _rule(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "string_too_long":
        return f"longer than {ctx['max_length']} characters"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    return _RULES.get(kind, error["msg"])


def _describe(loc: Loc, rule: str) -> str:
    """``("data", 0, "TaiLieuNop", 1, "IsDeleted")`` → ``data[0].TaiLieuNop[1].IsDeleted: <rule>``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return f"{path}: {rule}" if path else rule
