"""Realistic sample dossier events, as the Ministry of Construction's one-stop system would publish them.

Pure: values in, values out. The same seed gives the same events; times derive from ``start``, never
from the clock. Used by ``portal-sync demo``, the simulator and the tests.

Every dossier gets a plausible lifecycle (received → processing steps → done → returned, or withdrawn,
refused, or still pending), each event carrying the full current state with ``dossier.version`` 1, 2, 3…
The applicants' names, ID numbers, phones and e-mails are fake but look real on purpose: they are
personal data as far as the service is concerned and must never reach a log.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

from connector.stats.calendar import DEFAULT_CALENDAR_DIR, WorkCalendar, load_calendar

__all__ = [
    "AGENCIES",
    "DEFAULT_START",
    "ICT",
    "PROCEDURES",
    "SOURCE",
    "SampleMessage",
    "bad_events",
    "generate_events",
    "own_dossiers",
]

ICT: Final = timezone(timedelta(hours=7), "ICT")
DEFAULT_START: Final = datetime(2020, 10, 5, 8, 0, tzinfo=ICT)
SOURCE: Final = "motcua-bxd"
FILES_URL: Final = "https://motcua.moc.gov.vn/files/"

Label = Literal["valid", "malformed-json", "schema-invalid", "unmapped-status"]
Outcome = Literal["returned", "withdrawn", "refused", "pending"]
Channel = Literal["direct", "online", "postal"]
ApplicantKind = Literal["citizen", "business", "any"]
Json = dict[str, Any]


@dataclass(frozen=True)
class SampleMessage:
    """One Kafka record to publish on the dossier events topic, with what the test needs to know about it."""

    key: bytes | None
    value: bytes
    dossier_no: str | None
    version: int | None
    label: str


# --------------------------------------------------------------------------------------------------
# Reference data: agencies, their staff, procedures. Hard-coded so this module stays pure; the codes
# must exist in connector/mappings/procedures.yaml (a unit test checks).


@dataclass(frozen=True)
class Official:
    name: str
    title: str
    department: str


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    desk: Official  # the one-stop desk officer (Bộ phận Tiếp nhận và Trả kết quả)
    experts: tuple[Official, ...]
    head: Official  # lãnh đạo phòng
    leader: Official  # lãnh đạo Cục / Vụ who signs
    clerk: Official  # văn thư who issues the result


_DESK = "Bộ phận Tiếp nhận và Trả kết quả"
_CAPABILITY = "Phòng Quản lý năng lực hoạt động xây dựng"
_HOUSING = "Phòng Quản lý nhà công sở và nhà ở công vụ"

AGENCIES: Final[dict[str, Agency]] = {
    agency.code: agency
    for agency in (
        Agency(
            code="000.00.01.G12",
            name="Cục Quản lý hoạt động xây dựng",
            desk=Official("Nguyễn Thị Thu Hà", "Chuyên viên", _DESK),
            experts=(
                Official("Trần Quang Huy", "Chuyên viên", _CAPABILITY),
                Official("Lê Minh Tuấn", "Chuyên viên chính", _CAPABILITY),
                # Long on purpose: the portal accepts 50 characters for NguoiXuLy.
                Official(
                    "Tôn Nữ Hoàng Thị Phương Thảo - Tổ thẩm định hồ sơ năng lực hạng I",
                    "Tổ trưởng Tổ thẩm định",
                    _CAPABILITY,
                ),
            ),
            head=Official("Phạm Thị Lan Anh", "Phó Trưởng phòng", _CAPABILITY),
            leader=Official("Hoàng Văn Thắng", "Phó Cục trưởng", "Lãnh đạo Cục"),
            clerk=Official("Bùi Thị Hồng Nhung", "Văn thư", "Văn phòng Cục"),
        ),
        Agency(
            code="000.00.02.G12",
            name="Cục Quản lý nhà và thị trường bất động sản",
            desk=Official("Lương Thị Mai", "Chuyên viên", _DESK),
            experts=(
                Official("Đặng Thanh Tùng", "Chuyên viên", _HOUSING),
                Official("Vũ Thị Minh Nguyệt", "Chuyên viên chính", _HOUSING),
            ),
            head=Official("Nguyễn Hữu Phúc", "Trưởng phòng", _HOUSING),
            leader=Official("Trịnh Văn Bình", "Phó Cục trưởng", "Lãnh đạo Cục"),
            clerk=Official("Đỗ Thị Ngọc Lan", "Văn thư", "Văn phòng Cục"),
        ),
        Agency(
            code="000.00.03.G12",
            name="Vụ Khoa học công nghệ và môi trường",
            desk=Official("Cao Thị Thanh Hương", "Chuyên viên", _DESK),
            experts=(
                Official("Phạm Đức Nam", "Chuyên viên chính", "Bộ phận Tiêu chuẩn, quy chuẩn và chất lượng"),
                Official("Lê Thị Hải Yến", "Chuyên viên", "Bộ phận Vật liệu xây dựng và thí nghiệm"),
            ),
            head=Official("Đinh Công Sơn", "Phó Vụ trưởng", "Lãnh đạo Vụ"),
            leader=Official("Ngô Quốc Việt", "Vụ trưởng", "Lãnh đạo Vụ"),
            clerk=Official("Hà Thị Kim Oanh", "Văn thư", "Văn phòng Bộ"),
        ),
        Agency(
            code="000.00.04.G12",
            name="Cục Giám định nhà nước về chất lượng công trình xây dựng",
            desk=Official("Mai Thị Ngọc Ánh", "Chuyên viên", _DESK),
            experts=(
                Official("Nguyễn Đức Thịnh", "Chuyên viên", "Phòng Giám định tư pháp xây dựng"),
                Official(
                    "Nguyễn Phước Bửu Long Tôn Thất Minh Quân (kiêm nhiệm Tổ giám định tư pháp)",
                    "Chuyên viên chính",
                    "Phòng Giám định tư pháp xây dựng",
                ),
            ),
            head=Official("Trương Văn Hiếu", "Trưởng phòng", "Phòng Giám định tư pháp xây dựng"),
            leader=Official("Lê Quang Vinh", "Phó Cục trưởng", "Lãnh đạo Cục"),
            clerk=Official("Kiều Thị Thu Trang", "Văn thư", "Văn phòng Cục"),
        ),
    )
}


@dataclass(frozen=True)
class FeeSpec:
    code: str
    name: str
    amount: int
    kind: Literal["fee", "charge"]


@dataclass(frozen=True)
class Procedure:
    code: str
    agency_code: str
    applicant: ApplicantKind
    purpose: str  # completes "Đề nghị …" in the summary
    documents: tuple[str, ...]  # thành phần hồ sơ; the first is always the application form
    result: str
    working_days: int  # time limit in working days
    fees: tuple[FeeSpec, ...] = ()


PROCEDURES: Final[tuple[Procedure, ...]] = (
    Procedure(
        code="BXD-NLHD-01",
        agency_code="000.00.01.G12",
        applicant="business",
        purpose="cấp chứng chỉ năng lực hoạt động xây dựng hạng I",
        documents=(
            "Đơn đề nghị cấp chứng chỉ năng lực hoạt động xây dựng",
            "Giấy chứng nhận đăng ký doanh nghiệp",
            "Danh sách cá nhân chủ chốt kèm văn bằng, chứng chỉ hành nghề",
            "Hợp đồng và biên bản nghiệm thu công việc đã thực hiện",
        ),
        result="Chứng chỉ năng lực hoạt động xây dựng hạng I",
        working_days=20,
        fees=(FeeSpec("LP-NLHD", "Lệ phí cấp chứng chỉ năng lực hoạt động xây dựng", 1_000_000, "fee"),),
    ),
    Procedure(
        code="BXD-CCHN-02",
        agency_code="000.00.01.G12",
        applicant="citizen",
        purpose="cấp nâng hạng chứng chỉ hành nghề hoạt động xây dựng hạng I",
        documents=(
            "Đơn đề nghị cấp chứng chỉ hành nghề hoạt động xây dựng",
            "Bản sao văn bằng đào tạo chuyên môn",
            "Bản khai kinh nghiệm công tác chuyên môn",
            "Ảnh màu cỡ 4x6 cm chụp trong thời hạn 6 tháng",
        ),
        result="Chứng chỉ hành nghề hoạt động xây dựng hạng I",
        working_days=20,
        fees=(
            FeeSpec("LP-CCHN", "Lệ phí cấp chứng chỉ hành nghề hoạt động xây dựng", 300_000, "fee"),
            FeeSpec("PHI-SH", "Phí sát hạch cấp chứng chỉ hành nghề", 500_000, "charge"),
        ),
    ),
    Procedure(
        code="BXD-NOCV-01",
        agency_code="000.00.02.G12",
        applicant="citizen",
        purpose="thuê nhà ở công vụ thuộc thẩm quyền quản lý của Chính phủ",
        documents=(
            "Đơn đề nghị thuê nhà ở công vụ",
            "Quyết định điều động, luân chuyển công tác",
            "Giấy xác nhận chưa có nhà ở thuộc sở hữu tại địa phương nơi đến công tác",
        ),
        result="Quyết định cho thuê nhà ở công vụ",
        working_days=20,
    ),
    Procedure(
        code="BXD-NOCV-02",
        agency_code="000.00.02.G12",
        applicant="citizen",
        purpose="thuê nhà ở công vụ thuộc thẩm quyền quản lý của Bộ Xây dựng",
        documents=(
            "Đơn đề nghị thuê nhà ở công vụ",
            "Quyết định điều động, luân chuyển công tác",
            "Văn bản đề nghị của cơ quan đang trực tiếp quản lý cán bộ",
        ),
        result="Quyết định cho thuê nhà ở công vụ",
        working_days=15,
    ),
    Procedure(
        code="BXD-GDTP-01",
        agency_code="000.00.04.G12",
        applicant="any",
        purpose="điều chỉnh, thay đổi thông tin giám định tư pháp xây dựng đã được công bố",
        documents=(
            "Văn bản đề nghị điều chỉnh, thay đổi thông tin",
            "Tài liệu chứng minh nội dung thay đổi",
        ),
        result="Văn bản công bố điều chỉnh thông tin giám định tư pháp xây dựng",
        working_days=10,
    ),
    Procedure(
        code="BXD-LAS-01",
        agency_code="000.00.03.G12",
        applicant="business",
        purpose="cấp Giấy chứng nhận đủ điều kiện hoạt động thí nghiệm chuyên ngành xây dựng",
        documents=(
            "Đơn đăng ký cấp Giấy chứng nhận đủ điều kiện hoạt động thí nghiệm chuyên ngành xây dựng",
            "Danh mục thiết bị thí nghiệm kèm giấy chứng nhận hiệu chuẩn",
            "Danh sách cán bộ quản lý, thí nghiệm viên kèm chứng chỉ đào tạo",
            "Quy trình quản lý chất lượng của phòng thí nghiệm",
        ),
        result="Giấy chứng nhận đủ điều kiện hoạt động thí nghiệm chuyên ngành xây dựng",
        working_days=15,
        fees=(FeeSpec("PHI-LAS", "Phí thẩm định điều kiện hoạt động thí nghiệm", 150_000, "charge"),),
    ),
    Procedure(
        code="BXD-VLXD-01",
        agency_code="000.00.03.G12",
        applicant="business",
        purpose="cấp mới Giấy chứng nhận đăng ký hoạt động thử nghiệm chất lượng vật liệu xây dựng",
        documents=(
            "Đơn đăng ký hoạt động thử nghiệm",
            "Danh sách thử nghiệm viên của tổ chức",
            "Danh mục tài liệu kỹ thuật, phương pháp thử",
        ),
        result="Giấy chứng nhận đăng ký hoạt động thử nghiệm",
        working_days=10,
    ),
    Procedure(
        code="BXD-VLXD-02",
        agency_code="000.00.03.G12",
        applicant="business",
        purpose="cấp lại Giấy chứng nhận đăng ký hoạt động chứng nhận chất lượng vật liệu xây dựng",
        documents=(
            "Đơn đề nghị cấp lại Giấy chứng nhận đăng ký",
            "Bản gốc Giấy chứng nhận đã được cấp",
        ),
        result="Giấy chứng nhận đăng ký hoạt động chứng nhận (cấp lại)",
        working_days=10,
    ),
    Procedure(
        code="BXD-DGPH-01",
        agency_code="000.00.03.G12",
        applicant="business",
        purpose="cấp lại quyết định chỉ định tổ chức đánh giá sự phù hợp",
        documents=(
            "Văn bản đề nghị cấp lại quyết định chỉ định",
            "Bản sao quyết định chỉ định đã được cấp",
        ),
        result="Quyết định chỉ định tổ chức đánh giá sự phù hợp (cấp lại)",
        working_days=10,
    ),
)

# --------------------------------------------------------------------------------------------------
# Applicants

_FAMILY_NAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô", "Dương", "Lý")
_MIDDLE_NAMES = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang", "Thu", "Xuân", "Hoài")
_GIVEN_NAMES = (
    "An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hùng", "Hương", "Khoa", "Lan",
    "Linh", "Long", "Mai", "Nam", "Nga", "Phong", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang",
    "Tuấn", "Việt", "Yến",
)
_COMPANY_FORMS = (
    "Công ty Cổ phần Xây dựng",
    "Công ty TNHH Tư vấn Thiết kế",
    "Công ty Cổ phần Tư vấn Đầu tư và Xây dựng",
    "Công ty TNHH Kiểm định và Thí nghiệm Xây dựng",
    "Công ty Cổ phần Vật liệu Xây dựng",
)
_COMPANY_NAMES = (
    "Hòa Bình", "Sông Đà", "Thăng Long", "Đông Á", "Phú Mỹ", "Hưng Thịnh", "Việt Tiến", "An Phát",
    "Trường Sơn", "Bạch Đằng", "Miền Trung", "Tây Hồ", "Hồng Hà", "Sao Việt", "Nam Việt",
)
_PROVINCE_CODES = ("001", "031", "036", "038", "040", "048", "079", "092")  # first digits of a CCCD
_MAIL_HOSTS = ("gmail.com", "yahoo.com", "outlook.com")


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum()).lower()


def _citizen(rng: random.Random) -> Json:
    family, middle, given = rng.choice(_FAMILY_NAMES), rng.choice(_MIDDLE_NAMES), rng.choice(_GIVEN_NAMES)
    name = f"{family} {middle} {given}"
    birth_year = rng.randint(1960, 1998)
    century_sex = rng.choice("01")  # 0 male / 1 female, born in the 1900s
    id_number = f"{rng.choice(_PROVINCE_CODES)}{century_sex}{birth_year % 100:02d}{rng.randrange(10**6):06d}"
    return {
        "type": "citizen",
        "name": name,
        "id_number": id_number,
        "phone": f"09{rng.randrange(10**8):08d}",
        "email": f"{_ascii_slug(family + middle + given)}{birth_year % 100:02d}@{rng.choice(_MAIL_HOSTS)}",
        "portal_account_id": None,
    }


def _business(rng: random.Random) -> Json:
    brand = rng.choice(_COMPANY_NAMES)
    name = f"{rng.choice(_COMPANY_FORMS)} {brand}"
    return {
        "type": "business",
        "name": name,
        "id_number": f"0{rng.randint(100, 899)}{rng.randrange(10**6):06d}",  # mã số doanh nghiệp
        "phone": f"024{rng.randrange(10**8):08d}",
        "email": f"vanphong@{_ascii_slug(brand)}-xd.com.vn",
        "portal_account_id": None,
    }


def _applicant(rng: random.Random, kind: ApplicantKind) -> Json:
    if kind == "any":
        kind = "citizen" if rng.random() < 0.5 else "business"
    return _citizen(rng) if kind == "citizen" else _business(rng)


# --------------------------------------------------------------------------------------------------
# Time: events happen in office hours (08:00–17:00, Monday–Friday), deadlines count working days.

_OPEN_HOUR, _CLOSE_HOUR = 8, 17


def _office_time(moment: datetime, rng: random.Random) -> datetime:
    """The first office-hours moment at or after ``moment`` (jittered, so dossiers do not tie at 08:00)."""
    if moment.weekday() < 5 and _OPEN_HOUR <= moment.hour < _CLOSE_HOUR:
        return moment
    day = moment.date() if moment.hour < _OPEN_HOUR else moment.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    opening = datetime(day.year, day.month, day.day, _OPEN_HOUR, tzinfo=ICT)
    return opening + timedelta(minutes=rng.randint(0, 90), seconds=rng.randint(0, 59))


def _after(moment: datetime, rng: random.Random, *, min_minutes: int, max_minutes: int) -> datetime:
    return _office_time(moment + timedelta(minutes=rng.randint(min_minutes, max_minutes)), rng)


@functools.cache
def _calendar() -> WorkCalendar:
    return load_calendar(DEFAULT_CALENDAR_DIR)


def _add_working_days(moment: datetime, days: int) -> datetime:
    return _calendar().add_working_days(moment, days)


def _working_days_between(earlier: datetime, later: datetime) -> int:
    return _calendar().working_days_between(earlier.date(), later.date())


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(ICT).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# A dossier's plan: the sequence of events, decided before any is rendered.

StepRole = Literal["forward", "expert", "review", "head", "leader", "clerk"]

_STEP_REMARKS: Final[dict[StepRole, tuple[str, ...]]] = {
    "forward": ("Chuyển hồ sơ đến đơn vị chuyên môn xử lý", "Bàn giao hồ sơ cho phòng chuyên môn"),
    "expert": ("Thẩm định hồ sơ, dự thảo kết quả giải quyết", "Kiểm tra thành phần, nội dung hồ sơ"),
    "review": ("Lấy ý kiến Hội đồng xét cấp chứng chỉ", "Thẩm định bổ sung theo ý kiến lãnh đạo phòng"),
    "head": ("Xem xét, trình lãnh đạo phê duyệt", "Rà soát dự thảo kết quả"),
    "leader": ("Phê duyệt, ký kết quả giải quyết", "Ký ban hành văn bản"),
    "clerk": ("Vào sổ, đóng dấu, phát hành kết quả", "Phát hành văn bản, chuyển Bộ phận một cửa"),
}
_STEP_NOTES: Final = (
    "Hồ sơ đầy đủ, đúng quy định",
    "Đề nghị lãnh đạo xem xét, phê duyệt",
    "Đã kiểm tra đối chiếu bản gốc",
    "Đồng ý với đề xuất của chuyên viên",
)
_FULL_PATH: Final[tuple[StepRole, ...]] = ("forward", "expert", "head", "leader", "clerk")
# For dossiers that end with a result but have few events: the steps kept first.
_STEP_PRIORITY: Final[tuple[StepRole, ...]] = ("leader", "expert", "clerk", "head", "forward")


@dataclass(frozen=True)
class _Planned:
    kind: Literal["received", "accept", "step", "wait", "completed", "returned", "withdrawn", "refused"]
    role: StepRole | None = None
    sub_status: str | None = None


_TAIL: Final[dict[Outcome, tuple[_Planned, ...]]] = {
    "returned": (_Planned("completed"), _Planned("returned")),
    "withdrawn": (_Planned("withdrawn"),),
    "refused": (_Planned("refused"),),
    "pending": (),
}


def _pick_outcome(rng: random.Random, events: int) -> Outcome:
    if events <= 1:
        return "pending"
    short: tuple[Outcome, ...] = ("refused", "withdrawn", "pending")
    if events == 2:
        return rng.choices(short, weights=(35, 30, 35))[0]
    longer: tuple[Outcome, ...] = ("returned", "pending", "withdrawn")
    return rng.choices(longer, weights=(75, 15, 10))[0]


def _step_roles(count: int, outcome: Outcome) -> list[StepRole]:
    if count >= len(_FULL_PATH):
        extra: list[StepRole] = ["review"] * (count - len(_FULL_PATH))
        return ["forward", "expert", *extra, "head", "leader", "clerk"]
    if outcome == "returned":
        kept = set(_STEP_PRIORITY[:count])
        return [role for role in _FULL_PATH if role in kept]
    return list(_FULL_PATH[:count])  # still in progress (or withdrawn) part-way through


def _plan(rng: random.Random, events: int, outcome: Outcome, online: bool, has_fees: bool) -> list[_Planned]:
    tail = _TAIL[outcome]
    middle_slots = events - 1 - len(tail)
    middle: list[_Planned] = []
    if online and middle_slots > 0:
        middle.append(_Planned("accept"))  # an online dossier is "new" until the desk accepts it
    wait: _Planned | None = None
    # A wait (supplement or payment) needs a processing step after it, unless the dossier is still pending.
    room_for_wait = middle_slots - len(middle) >= (1 if outcome == "pending" else 2)
    if room_for_wait and rng.random() < 0.3:
        reason = "payment_requested" if has_fees and rng.random() < 0.5 else "supplement_requested"
        wait = _Planned("wait", sub_status=reason)
    steps = [_Planned("step", role=role) for role in
             _step_roles(middle_slots - len(middle) - (wait is not None), outcome)]
    if wait is not None:
        experts = [i for i, planned in enumerate(steps) if planned.role == "expert"]
        position = experts[0] + 1 if experts else max(len(steps) - 1, 0)
        if outcome != "pending":
            position = min(position, len(steps) - 1)
        steps.insert(position, wait)
    return [_Planned("received"), *middle, *steps, *tail]


# --------------------------------------------------------------------------------------------------
# Rendering: the plan becomes events, each with the full current state.


def _note(remark: str, version: int) -> str:
    # The version marker lets tests tell versions apart on the portal side.
    return f"{remark} (phiên bản {version})"


_LONG_OPINIONS: Final = (
    "Về năng lực tài chính: tổ chức đã cung cấp báo cáo tài chính ba năm gần nhất có kiểm toán, "
    "đáp ứng yêu cầu theo quy định.",
    "Về nhân sự chủ chốt: các cá nhân đảm nhận chức danh chủ nhiệm, chủ trì có chứng chỉ hành nghề "
    "phù hợp với lĩnh vực đề nghị cấp.",
    "Về kinh nghiệm: tổ chức đã thực hiện tối thiểu 01 công trình cấp I hoặc 02 công trình cấp II "
    "cùng loại, có hợp đồng và biên bản nghiệm thu kèm theo.",
    "Về máy móc, thiết bị: danh mục thiết bị thi công chủ yếu được kê khai đầy đủ, có tài liệu chứng "
    "minh quyền sở hữu hoặc hợp đồng thuê.",
)
_LONG_WORKS: Final = (
    "khảo sát địa hình", "khảo sát địa chất công trình", "lập quy hoạch xây dựng",
    "thiết kế, thẩm tra thiết kế xây dựng công trình dân dụng", "thiết kế kết cấu công trình công nghiệp nhẹ",
    "lập, thẩm tra dự án đầu tư xây dựng", "tư vấn quản lý dự án công trình giao thông",
    "thi công xây dựng công trình hạ tầng kỹ thuật", "giám sát thi công xây dựng công trình thủy lợi",
    "kiểm định xây dựng", "quản lý chi phí đầu tư xây dựng",
)


def _long_note(version: int) -> str:
    opinions = " ".join(f"{i}. {text}" for i, text in enumerate(_LONG_OPINIONS * 6, start=1))
    return f"{_note('Ý kiến thẩm định chi tiết', version)}. {opinions}"


def _long_summary(applicant_name: str) -> str:
    works = "; ".join(f"{work} (hạng I)" for work in _LONG_WORKS * 2)
    return (
        f"Đề nghị cấp chứng chỉ năng lực hoạt động xây dựng hạng I cho {applicant_name} "
        f"đối với các lĩnh vực: {works}. Tổ chức cam kết chịu trách nhiệm về tính chính xác của các "
        "thông tin kê khai và các tài liệu kèm theo hồ sơ; trường hợp có sai lệch, tổ chức xin chịu "
        "hoàn toàn trách nhiệm trước pháp luật."
    )


def _file_url(rng: random.Random) -> tuple[str, str]:
    file_id = f"{rng.getrandbits(64):016x}"
    return file_id, FILES_URL + file_id


def _documents(rng: random.Random, procedure: Procedure) -> list[Json]:
    count = rng.randint(1, min(4, len(procedure.documents)))
    documents = []
    for index, name in enumerate(procedure.documents[:count], start=1):
        file_id, url = _file_url(rng)
        documents.append({
            "id": file_id,
            "name": name,
            "component_code": f"{procedure.code}-TP{index:02d}",
            "url": url,
            "deleted": False,
        })
    return documents


def _fees(rng: random.Random, procedure: Procedure, channel: str) -> list[Json]:
    method = "Chuyển khoản" if channel == "online" or rng.random() < 0.4 else "Tiền mặt"
    return [
        {"code": fee.code, "name": fee.name, "amount": fee.amount, "kind": fee.kind, "method": method}
        for fee in procedure.fees
    ]


@dataclass
class _DossierDraft:
    """Everything decided about one dossier before its events are rendered."""

    index: int
    no: str
    procedure: Procedure
    received_at: datetime
    channel: Channel
    origin: Literal["local", "portal"]
    applicant: Json
    plan: list[_Planned]
    slow: bool
    long_texts: bool


def _first_state(rng: random.Random, draft: _DossierDraft) -> Json:
    procedure = draft.procedure
    agency = AGENCIES[procedure.agency_code]
    online = draft.channel == "online"
    if draft.long_texts:
        summary = _long_summary(draft.applicant["name"])
    else:
        summary = f"Đề nghị {procedure.purpose} cho {draft.applicant['name']}."
        if rng.random() < 0.5:
            summary += " Hồ sơ gồm đầy đủ thành phần theo quy định tại thủ tục hành chính."
    due = _add_working_days(draft.received_at, procedure.working_days).replace(
        hour=_CLOSE_HOUR, minute=0, second=0
    )
    delivery = "postal" if draft.channel == "postal" or rng.random() < 0.25 else "counter"
    return {
        "no": draft.no,
        # Started on the national portal: ``no`` is the national number, and ours is sent back with the status.
        **({"local_no": _local_no(draft)} if draft.origin == "portal" else {}),
        "version": 0,
        "procedure_code": procedure.code,
        "agency_code": agency.code,
        "agency_name": agency.name,
        "receipt_no": None if online else _receipt_no(draft),
        "status": "new" if online else "received",
        "sub_status": None,
        "channel": draft.channel,
        "result_delivery": delivery,
        "origin": draft.origin,
        "applicant": draft.applicant,
        "summary": summary,
        "note": None,
        "received_at": _rfc3339(draft.received_at),
        "due_at": _rfc3339(due),
        "finished_at": None,
        "returned_at": None,
        "documents": _documents(rng, procedure),
        "results": [],
        "fees": _fees(rng, procedure, draft.channel),
    }


def _receipt_no(draft: _DossierDraft) -> str:
    return "BN-" + draft.no.split("-", 1)[1]


def _local_no(draft: _DossierDraft) -> str:
    """The one-stop system's own number of a dossier that started on the national portal."""
    return f"{draft.procedure.agency_code}-MC-{draft.no.split('-', 1)[1]}"


def _official_for(rng: random.Random, agency: Agency, role: StepRole) -> Official:
    if role == "forward":
        return agency.desk
    if role in ("expert", "review"):
        return rng.choice(agency.experts)
    return {"head": agency.head, "leader": agency.leader, "clerk": agency.clerk}[role]


def _supplement_documents(rng: random.Random, documents: list[Json], procedure: Procedure) -> None:
    # The applicant replaces a document: the old one is kept, marked deleted, the new one added.
    replaceable = [doc for doc in documents[1:] if not doc["deleted"]]
    if replaceable:
        rng.choice(replaceable)["deleted"] = True
    file_id, url = _file_url(rng)
    documents.append({
        "id": file_id,
        "name": "Tài liệu bổ sung theo văn bản yêu cầu của cơ quan giải quyết",
        "component_code": f"{procedure.code}-BS01",
        "url": url,
        "deleted": False,
    })


def _render(rng: random.Random, draft: _DossierDraft) -> list[tuple[datetime, Json]]:
    agency = AGENCIES[draft.procedure.agency_code]
    state = _first_state(rng, draft)
    events: list[tuple[datetime, Json]] = []
    now = draft.received_at
    previous = now
    gap = (240, 60 * 24 * 5) if draft.slow else (30, 60 * 24 * 2)
    waiting: tuple[datetime, str | None] | None = None  # since when, and why
    for planned in draft.plan:
        if planned.kind != "received":
            previous, now = now, _after(now, rng, min_minutes=gap[0], max_minutes=gap[1])
        state["version"] += 1
        version = state["version"]
        step: Json | None = None
        event_type, remark = _apply(rng, planned, state, draft, now)
        if planned.kind == "wait":
            waiting = (now, planned.sub_status)
        elif waiting is not None:
            waited_since, reason = waiting
            # The legal clock stops while the applicant supplements or pays: the deadline moves by the
            # working days spent waiting.
            paused = _working_days_between(waited_since, now)
            state["due_at"] = _rfc3339(_add_working_days(datetime.fromisoformat(state["due_at"]), paused))
            if reason == "supplement_requested":
                _supplement_documents(rng, state["documents"], draft.procedure)
            waiting = None
        state["note"] = _long_note(version) if draft.long_texts else _note(remark, version)
        if planned.kind == "step" and planned.role is not None:
            step = _step(rng, agency, planned.role, draft, previous, now, version)
        event: Json = {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "occurred_at": _rfc3339(now),
            "source": SOURCE,
            "dossier": copy.deepcopy(state),
        }
        if step is not None:
            event["step"] = step
        events.append((now, event))
    return events


def _step(
    rng: random.Random,
    agency: Agency,
    role: StepRole,
    draft: _DossierDraft,
    started: datetime,
    at: datetime,
    version: int,
) -> Json:
    official = _official_for(rng, agency, role)
    if draft.long_texts and role in ("expert", "review"):
        official = max(agency.experts, key=lambda person: len(person.name))
    # Real systems send steps without a note; the portal side must cope.
    note = None if rng.random() < 0.25 else _note(rng.choice(_STEP_NOTES), version)
    return {
        "actor": official.name,
        "title": official.title,
        "department": official.department,
        "at": _rfc3339(at),
        "note": note,
        "status": "processing",
        "started_at": _rfc3339(started),
        "due_at": _rfc3339(_add_working_days(started, rng.randint(1, 3))),
    }


def _apply(
    rng: random.Random, planned: _Planned, state: Json, draft: _DossierDraft, now: datetime
) -> tuple[str, str]:
    """Move the state to what ``planned`` makes it; return the event type and a remark for the note."""
    state["sub_status"] = None
    if planned.kind == "received":
        remark = {
            "online": "Hồ sơ nộp trực tuyến, chờ Bộ phận một cửa kiểm tra",
            "postal": "Tiếp nhận hồ sơ qua dịch vụ bưu chính công ích",
            "direct": "Tiếp nhận hồ sơ trực tiếp tại Bộ phận một cửa",
        }[draft.channel]
        return "dossier.received", remark
    if planned.kind == "accept":
        state["status"], state["receipt_no"] = "received", _receipt_no(draft)
        return "dossier.updated", "Hồ sơ trực tuyến đã được kiểm tra và tiếp nhận"
    if planned.kind == "step":
        state["status"] = "processing"
        return "dossier.step", rng.choice(_STEP_REMARKS[planned.role or "expert"])
    if planned.kind == "wait":
        state["status"], state["sub_status"] = "waiting", planned.sub_status
        if planned.sub_status == "payment_requested":
            return "dossier.updated", "Đề nghị nộp phí, lệ phí theo quy định trước khi trả kết quả"
        return "dossier.updated", "Đề nghị bổ sung bản sao chứng chỉ hành nghề của cá nhân chủ trì"
    if planned.kind == "completed":
        state["status"], state["finished_at"] = "done", _rfc3339(now)
        state["results"] = [_result(rng, draft)]
        return "dossier.completed", "Đã ký ban hành kết quả giải quyết"
    if planned.kind == "returned":
        state["status"], state["returned_at"] = "returned", _rfc3339(now)
        if state["result_delivery"] == "postal":
            return "dossier.returned", "Đã gửi kết quả qua dịch vụ bưu chính công ích"
        return "dossier.returned", "Đã trả kết quả tại Bộ phận một cửa"
    if planned.kind == "withdrawn":
        state["status"], state["finished_at"] = "withdrawn", _rfc3339(now)
        return "dossier.withdrawn", "Tổ chức, cá nhân có văn bản đề nghị rút hồ sơ"
    state["status"], state["finished_at"] = "refused", _rfc3339(now)
    return "dossier.rejected", "Hồ sơ không đủ thành phần theo quy định, không tiếp nhận"


def _result(rng: random.Random, draft: _DossierDraft) -> Json:
    file_id, url = _file_url(rng)
    number = f"{rng.randint(1, 9999):04d}/{draft.received_at.year}/BXD"
    name = f"{draft.procedure.result} số {number}"
    return {"id": file_id, "name": name, "component_code": "KQ01", "url": url}


# --------------------------------------------------------------------------------------------------
# Public API


_CHANNELS: Final[tuple[Channel, ...]] = ("direct", "online", "postal")


def _draft_dossiers(
    rng: random.Random, count: int, start: datetime, min_events: int, max_events: int
) -> list[_DossierDraft]:
    drafts: list[_DossierDraft] = []
    sequences: dict[tuple[str, str], int] = {}
    received = _office_time(start, rng)
    long_index = min(3, count - 1)  # one dossier exercises the portal's length limits
    online_count = 0
    for index in range(count):
        if index:
            received = _after(received, rng, min_minutes=5, max_minutes=120)
        procedure = rng.choice(PROCEDURES)
        if index == long_index:
            procedure = PROCEDURES[0]
        events = rng.randint(min_events, max_events)
        outcome = _pick_outcome(rng, events)
        channel = rng.choices(_CHANNELS, weights=(55, 35, 10))[0]
        if outcome == "refused":
            # Refusing to accept happens to online submissions; at the desk a refused dossier is not filed.
            channel = "online"
        if index == long_index and max_events >= 3:
            # Long enough to include an expert step, whose actor is the longest name.
            events, outcome, channel = max(min_events, min(max_events, 7)), "returned", "direct"
        origin: Literal["local", "portal"] = "local"
        # A few (every 8th online one) started on the national portal: their status goes back (DongBoTrangThaiHoSo).
        if channel == "online":
            online_count += 1
        if channel == "online" and online_count % 8 == 3:
            origin = "portal"  # submitted on the national portal, not the ministry's own
        applicant = _applicant(rng, procedure.applicant)
        if origin == "portal":
            applicant["portal_account_id"] = f"DVCQG-{rng.randrange(10**10):010d}"
        day = received.strftime("%y%m%d")
        sequences[(procedure.agency_code, day)] = sequences.get((procedure.agency_code, day), 0) + 1
        drafts.append(_DossierDraft(
            index=index,
            no=f"{procedure.agency_code}-{day}-{sequences[(procedure.agency_code, day)]:04d}",
            procedure=procedure,
            received_at=received,
            channel=channel,
            origin=origin,
            applicant=applicant,
            plan=_plan(rng, events, outcome, channel == "online", bool(procedure.fees)),
            slow=rng.random() < 0.2,
            long_texts=index == long_index,
        ))
    return drafts


def _encode(event: Json) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _message(event: Json, label: Label = "valid") -> SampleMessage:
    dossier = event["dossier"]
    return SampleMessage(
        key=dossier["no"].encode("utf-8"),
        value=_encode(event),
        dossier_no=dossier["no"],
        version=dossier["version"],
        label=label,
    )


def _check_start(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return start.astimezone(ICT)


def generate_events(
    *,
    dossiers: int = 50,
    seed: int = 2019,
    start: datetime = DEFAULT_START,
    min_events_per_dossier: int = 2,
    max_events_per_dossier: int = 8,
    include_bad: bool = True,
) -> list[SampleMessage]:
    """Events for ``dossiers`` dossiers, interleaved by simulated time, in publishing order.

    Per dossier the versions run 1, 2, 3… in order; across dossiers the events interleave. With
    ``include_bad`` the three :func:`bad_events` are spread through the stream (at ¼, ½ and ¾).
    """
    if dossiers < 0:
        raise ValueError("dossiers must be >= 0")
    if not 1 <= min_events_per_dossier <= max_events_per_dossier:
        raise ValueError("need 1 <= min_events_per_dossier <= max_events_per_dossier")
    start = _check_start(start)
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    timeline: list[tuple[datetime, int, int, Json]] = []
    for draft in _draft_dossiers(rng, dossiers, start, min_events_per_dossier, max_events_per_dossier):
        for moment, event in _render(rng, draft):
            timeline.append((moment, draft.index, event["dossier"]["version"], event))
    timeline.sort(key=lambda item: item[:3])
    messages = [_message(event) for *_, event in timeline]
    if include_bad:
        _spread(messages, bad_events(seed=seed, start=start))
    return messages


def _spread(messages: list[SampleMessage], extra: Sequence[SampleMessage]) -> None:
    total = len(messages)
    # Insert from the back so earlier positions stay where they were computed.
    for number, message in reversed(list(enumerate(extra, start=1))):
        messages.insert(total * number // (len(extra) + 1), message)


def bad_events(*, seed: int = 2019, start: datetime = DEFAULT_START) -> list[SampleMessage]:
    """Exactly three events the service must dead-letter, in this order:

    ``malformed-json`` (a truncated document), ``schema-invalid`` (``dossier.agency_code`` missing),
    ``unmapped-status`` (valid by the schema, status ``archived`` is in no status table).
    Each belongs to a dossier of its own, numbered 99xx, so it never collides with a valid dossier.
    """
    start = _check_start(start)
    rng = random.Random(f"bad-events-{seed}")  # noqa: S311 - reproducible sample data, not secrets
    procedure = PROCEDURES[0]
    base = _office_time(start, rng)
    draft_events = []
    for number in (9901, 9902, 9903):
        draft = _DossierDraft(
            index=number,
            no=f"{procedure.agency_code}-{base:%y%m%d}-{number:04d}",
            procedure=procedure,
            received_at=base,
            channel="direct",
            origin="local",
            applicant=_business(rng),
            plan=[_Planned("received")],
            slow=False,
            long_texts=False,
        )
        draft_events.append(_render(rng, draft)[0][1])
    malformed, invalid, unmapped = draft_events

    text = _encode(malformed).decode("utf-8")
    truncated = text[: len(text) * 3 // 5]  # as if the producer died mid-write
    invalid["dossier"].pop("agency_code")
    unmapped["event_type"] = "dossier.updated"
    unmapped["dossier"]["status"] = "archived"
    unmapped["dossier"]["note"] = _note("Hồ sơ đã được lưu trữ", 1)
    return [
        SampleMessage(
            key=malformed["dossier"]["no"].encode("utf-8"),
            value=truncated.encode("utf-8"),
            dossier_no=malformed["dossier"]["no"],
            version=None,
            label="malformed-json",
        ),
        _message(invalid, "schema-invalid"),
        _message(unmapped, "unmapped-status"),
    ]


def own_dossiers(messages: Iterable[SampleMessage]) -> list[SampleMessage]:
    """The events of the ministry's own dossiers: without those filed on the national portal, whose status goes
    back through ``DongBoTrangThaiHoSo`` (refused by a portal that never held them as submissions)."""
    return [m for m in messages if json.loads(m.value)["dossier"]["origin"] == "local"]
