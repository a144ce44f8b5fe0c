"""The checks the adapter applies to pushed records and progress steps (PORTAL.md section 1), and to the
statistics report of ``UpdateStatistic`` (section 3, ``StatisticReport``).

Pure functions over decoded JSON. The rules are declared as pydantic models in strict mode (a number
where a string is expected is an error, as on the real adapter); problems come back as stable
``"<path>: <rule>"`` strings such as ``"TaiLieuNop[0].IsDeleted: must be one of 'True' or 'False'"``.
Unknown extra fields are accepted: newer adapters take more than this list.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, ValidationError
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


# --- UpdateStatistic (PORTAL.md section 3) -----------------------------------------------------------------

XSD_INT_MAX = 2**31 - 1  # xs:int, the base of the XSD's Month, Year and Count
_XSD_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
PERCENT_TYPE_RULE = 'must be a number, or a decimal string like "95.50"'
IS_MONTH_RULE = 'must be true or false (or the string "True" or "False")'
IDENTITY_RULE = "must equal TotalSolved + TotalPending"


def _percent(value: Any) -> float:
    """The XSD's ``Percent`` (xs:decimal, 0 to 100, at most 2 fraction digits): a JSON number, or the text an
    xs:decimal is written as (what the SOAP face reads), as a float."""
    if isinstance(value, str) and _XSD_DECIMAL.fullmatch(value.strip()):
        number = Decimal(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))  # the shortest text of the float: 95.55, not 95.5499999…
    else:
        raise PydanticCustomError("percent_type", PERCENT_TYPE_RULE)
    if not 0 <= number <= 100:
        raise PydanticCustomError("percent_range", "must be from 0 to 100")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise PydanticCustomError("percent_decimals", "must have at most 2 decimals")
    return float(number)


def _is_month(value: Any) -> bool:
    """xs:boolean as the SOAP face reads it (a bool), a JSON boolean, or the adapter's "True"/"False" strings."""
    if isinstance(value, bool):
        return value
    if value in ("True", "False"):
        return bool(value == "True")
    raise PydanticCustomError("bool", IS_MONTH_RULE)


Count = Annotated[int, Field(ge=0, le=XSD_INT_MAX)]
Percent = Annotated[float, PlainValidator(_percent)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
RequiredName500 = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class StatisticReport(BaseModel):
    """One ``UpdateStatistic`` call's report, in the XSD's order. Its fields sit at the top of the JSON envelope,
    next to ``session`` and ``service`` (ignored here); over SOAP they are the children of ``UpdateStatistic``.

    Strict as the other records, but for the two fields whose JSON form is open: ``IsMonthStatistic`` (a boolean or
    "True"/"False", kept as a boolean) and the percentages (a number or a decimal string, kept as numbers). The
    codes and the agency's name must not be empty (the XSD's ``Code`` and ``Text500`` allow it); ``Note`` may be
    absent or "", never null.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    madonvi: Code
    Month: Annotated[int, Field(ge=1, le=12)]
    Year: Annotated[int, Field(ge=2000, le=2099)]
    IsMonthStatistic: Annotated[bool, PlainValidator(_is_month)]
    NewReception: Count
    PreExtisting: Count  # sic: the portal's spelling
    Total: Count
    TotalSolved: Count
    SolvedInTime: Percent
    SolvedLate: Percent
    TotalPending: Count
    Pending: Count
    PendingLate: Percent
    PendingPercent: Percent
    Note: Text2000 = ""
    OrganizationInchargeIdlevel1: Code
    OrganizationInchargeName: RequiredName500


def statistic_problem(params: Any) -> str | None:
    """The first reason an ``UpdateStatistic`` report is refused (its fields in the XSD's order, then the identity
    ``Total == TotalSolved + TotalPending``), or None."""
    issues = _issues(StatisticReport, params)
    if issues:
        loc, rule = issues[0]
        return _describe(loc, rule)
    total, solved, pending = params["Total"], params["TotalSolved"], params["TotalPending"]
    if total != solved + pending:
        return f"Total: {IDENTITY_RULE} ({total} ≠ {solved} + {pending})"
    return None


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
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    return _RULES.get(kind, error["msg"])


def _describe(loc: Loc, rule: str) -> str:
    """``("data", 0, "TaiLieuNop", 1, "IsDeleted")`` → ``data[0].TaiLieuNop[1].IsDeleted: <rule>``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return f"{path}: {rule}" if path else rule
