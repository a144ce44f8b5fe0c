"""Citizen submissions made on the national portal, as the simulated adapter holds them. No HTTP.

The way back (PORTAL.md §1 and §6): a citizen submits a dossier on DVCQG; the agency lists what was
submitted (``DanhSachHoSo``), looks each one up (``TraCuuHoSo``), fetches its files (``LayTaiLieuHoSo``),
acknowledges it (``CapNhatDaNhanHoSo``) and later reports its status (``DongBoTrangThaiHoSo``).

A submission has one or more revisions (``PhienBan`` 1, 2, ...: the citizen amends it). Each revision
becomes visible at its own moment of the monotonic clock, so a test can make the portal list a
submission late, or show an amendment only after the first revision was fetched, without sleeping. The
*current* revision is the highest one visible now; a submission with none visible does not exist yet,
as far as the adapter's services are concerned.

Files are kept as bytes; records carry ``KichThuoc``, ``MaBam`` and an opaque ``DuongDanTaiTepTin``
instead of the content. A registered item may declare its own ``KichThuoc``/``MaBam``: they are kept as
given, so a test can make the declaration disagree with the bytes.

``SubmissionDesk`` methods take decoded JSON values; an unacceptable call raises ``SubmissionRefused``
with a ``"<field>: <rule>"`` message, which the state turns into the adapter's ``-1`` reply.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import itertools
import math
import random
import re
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.national_time import PORTAL_TZ

MAX_PAGE_SIZE = 100
STATUSES = frozenset(str(code) for code in range(1, 11))
AMEND_GAP_SECONDS = 0.05  # a generated amendment shows at least this long after its first revision

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_STAMP = re.compile(r"[0-9]{14}")
_DIGITS = re.compile(r"[0-9]+")
_LISTED = ("MaHoSo", "MaTTHC", "NgayNopHoSo", "TrangThaiHoSo", "PhienBan")
_FILE_KEYS = ("TepDinhKemId", "TenTepDinhKem", "MaThanhPhanHoSo")


class SubmissionRefused(ValueError):
    """A call or a registration the adapter refuses; the message is ``"<field>: <rule>"``."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    content: bytes
    sha256: str  # of the content
    number: str  # the submission and revision it came with
    revision: int


@dataclass
class Revision:
    revision: int
    record: dict[str, Any]  # as TraCuuHoSo shows it: no Base64, with KichThuoc, MaBam, DuongDanTaiTepTin
    visible_at: float  # on the monotonic clock


@dataclass
class Submission:
    number: str
    revisions: list[Revision] = field(default_factory=list)  # by revision, ascending
    acknowledged: Counter[int] = field(default_factory=Counter)
    acknowledged_by: str | None = None
    duplicate_acks: int = 0
    status_back: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # paths, every revision's

    def current(self, now: float) -> Revision | None:
        """The highest revision visible at ``now``."""
        return next((r for r in reversed(self.revisions) if r.visible_at <= now), None)

    def revision(self, number: int) -> Revision | None:
        return next((r for r in self.revisions if r.revision == number), None)


@dataclass(frozen=True)
class NewFile:
    """A file of a revision being registered: its listed fields, given as they are, and its bytes."""

    fields: dict[str, Any]
    content: bytes

    @functools.cached_property
    def sha256(self) -> str:
        """Of the content, computed once (a generated amendment shares its unchanged files)."""
        return hashlib.sha256(self.content).hexdigest()


class GenerationSpec(BaseModel):
    """The body of ``POST /_sim/submissions/generate``: what kind of traffic to make up, and how much.

    ``count`` submissions for ``agency`` (``MaHoSo`` ``<agency>-<yyMMdd of day>-0001`` on, skipping numbers
    taken), each with 1-3 files, submitted on ``day`` (today in Asia/Ho_Chi_Minh by default) and visible at a
    uniformly random moment within ``spread_seconds`` from now. A ``late_ratio`` share were submitted the day
    before (a window already polled) and show only in the second half of the spread; an ``amend_ratio`` share
    get a revision 2 (another ``TrichYeuHoSo``, one file replaced) visible after revision 1, within
    ``spread_seconds + AMEND_GAP_SECONDS``; a ``large_file_ratio`` share carry one file of ``large_file_bytes``
    (the others ``small_file_bytes``). The same spec makes the same submissions (numbers apart, when taken).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0, le=100_000)
    agency: str = Field(min_length=1)
    seed: int = 0
    late_ratio: float = Field(0.0, ge=0, le=1)
    amend_ratio: float = Field(0.0, ge=0, le=1)
    large_file_ratio: float = Field(0.0, ge=0, le=1)
    large_file_bytes: int = Field(600_000, ge=1, le=64 * 1024 * 1024)
    small_file_bytes: int = Field(2_000, ge=1, le=64 * 1024 * 1024)
    spread_seconds: float = Field(0.0, ge=0, le=86_400)
    day: date | None = None  # None: today in Asia/Ho_Chi_Minh


@dataclass(frozen=True)
class Generated:
    generated: int
    revisions: int
    files: int

    def as_json(self) -> dict[str, int]:
        return {"generated": self.generated, "revisions": self.revisions, "files": self.files}


class SubmissionDesk:
    """Every submission the portal holds, their files, acknowledgements and status reports."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self.submissions: dict[str, Submission] = {}
        self._files: dict[str, StoredFile] = {}
        self.duplicate_acks = 0

    # --- registration (test knobs) ----------------------------------------------------------------

    def register(self, items: Any) -> int:
        """Add every item of ``items`` (records in the inbound-push shape, files inline as ``Base64``) or none.

        A known ``MaHoSo`` with a higher ``PhienBan`` adds a revision (an amendment); the same or a lower
        one is refused. Returns how many revisions were added.
        """
        if not isinstance(items, list):
            raise SubmissionRefused("submissions: must be a list")
        now = self._clock()
        highest = {number: s.revisions[-1].revision for number, s in self.submissions.items()}
        parsed: list[tuple[dict[str, Any], int, list[NewFile], float]] = []
        for index, item in enumerate(items):
            record, revision, files, delay = _parse_item(item, f"submissions[{index}]")
            number = record["MaHoSo"]
            if revision <= highest.get(number, 0):
                raise SubmissionRefused(
                    f"submissions[{index}].PhienBan: {revision} is not above revision {highest[number]} of {number}")
            highest[number] = revision
            parsed.append((record, revision, files, delay))
        for record, revision, files, delay in parsed:
            self.add_revision(record, revision, files, visible_at=now + delay)
        return len(parsed)

    def add_revision(self, record: dict[str, Any], revision: int, files: list[NewFile], *, visible_at: float) -> None:
        """Store ``record`` (taken as it is) as revision ``revision``, with ``files`` as its ``TaiLieuNop``.

        The caller has checked that ``revision`` is above every revision of that submission.
        """
        number = record["MaHoSo"]
        submission = self.submissions.get(number)
        if submission is None:
            submission = self.submissions[number] = Submission(number)
        listed: list[dict[str, Any]] = []
        for position, new in enumerate(files, start=1):
            path = f"tailieu/{number}/{revision}/{position}"
            name = str(new.fields.get("TenTepDinhKem", ""))
            self._files[path] = StoredFile(name, new.content, new.sha256, number, revision)
            submission.files.append(path)
            shown = dict(new.fields)
            shown.setdefault("KichThuoc", len(new.content))
            shown.setdefault("MaBam", new.sha256)
            shown["DuongDanTaiTepTin"] = path
            listed.append(shown)
        record["PhienBan"] = str(revision)
        record["TaiLieuNop"] = listed
        submission.revisions.append(Revision(revision, record, visible_at))

    def generate(self, spec: GenerationSpec) -> Generated:
        """Make up ``spec.count`` submissions deterministically from ``spec.seed`` (see ``GenerationSpec``)."""
        day = spec.day or datetime.fromtimestamp(self._wall_clock(), PORTAL_TZ).date()
        return _Generator(self, spec, day).run()

    # --- adapter services -------------------------------------------------------------------------

    def listing(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``DanhSachHoSo``: one page of the visible submissions of an agency submitted in a window of days."""
        agency = params.get("donViXuLy")
        if not isinstance(agency, str) or not agency:
            raise SubmissionRefused("donViXuLy: required")
        first = _day(params.get("ngayNhan1"), "ngayNhan1")
        last = _day(params.get("ngayNhan2"), "ngayNhan2")
        if last < first:
            raise SubmissionRefused("ngayNhan2: must not be before ngayNhan1")
        page = _whole(params.get("trang"), "trang", default=1, low=1, high=None)
        size = _whole(params.get("soLuong"), "soLuong", default=MAX_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        now = self._clock()
        matching: list[dict[str, Any]] = []
        for submission in self.submissions.values():
            current = submission.current(now)
            if current is None:
                continue
            record = current.record
            if record.get("DonViXuLy") == agency and first <= str(record.get("NgayNopHoSo", ""))[:8] <= last:
                matching.append({name: record.get(name) for name in _LISTED})
        matching.sort(key=lambda entry: (str(entry["NgayNopHoSo"]), str(entry["MaHoSo"])))
        return matching[(page - 1) * size : page * size]

    def current_record(self, number: Any) -> dict[str, Any] | None:
        """``TraCuuHoSo`` of a submission: its current revision's record, or None when none is visible."""
        submission = self.submissions.get(number) if isinstance(number, str) else None
        current = submission.current(self._clock()) if submission is not None else None
        return current.record if current is not None else None

    def file(self, path: Any) -> StoredFile:
        """``LayTaiLieuHoSo``: the file at ``path``, once the revision it came with is visible."""
        if not isinstance(path, str) or not path:
            raise SubmissionRefused("duongdanteptin: required")
        stored = self._files.get(path)
        if stored is None or not self._visible(stored.number, stored.revision):
            raise SubmissionRefused(f"duongdanteptin: no such file {path!r}")
        return stored

    def acknowledge(self, params: Mapping[str, Any]) -> None:
        """``CapNhatDaNhanHoSo``: note that the agency received ``phienBan`` of ``maHoSo``. Repeats are harmless."""
        number = params.get("maHoSo")
        if not isinstance(number, str) or not number:
            raise SubmissionRefused("maHoSo: required")
        submission = self.submissions.get(number)
        if submission is None:
            raise SubmissionRefused(f"maHoSo: no submission {number}")
        revision = _whole(params.get("phienBan"), "phienBan", default=None, low=1, high=None)
        if submission.revision(revision) is None:
            raise SubmissionRefused(f"phienBan: submission {number} has no revision {revision}")
        if params.get("daNhan") is not True:
            raise SubmissionRefused("daNhan: must be true")
        local_no = params.get("maHoSoDonVi")
        if local_no is not None and not isinstance(local_no, str):
            raise SubmissionRefused("maHoSoDonVi: must be a string")
        if submission.acknowledged[revision]:
            submission.duplicate_acks += 1
            self.duplicate_acks += 1
        submission.acknowledged[revision] += 1
        if local_no:
            submission.acknowledged_by = local_no

    def status_back(self, kind: Any, data: Any) -> None:
        """``DongBoTrangThaiHoSo``: the agency reports the status of a submission it took in."""
        if kind != "2":
            raise SubmissionRefused('type: must be the string "2"')
        if not isinstance(data, dict):
            raise SubmissionRefused("data: must be an object")
        number = data.get("MaHoSo")
        if not isinstance(number, str) or not number:
            raise SubmissionRefused("data.MaHoSo: required")
        submission = self.submissions.get(number)
        if submission is None:
            raise SubmissionRefused(f"data.MaHoSo: no submission {number}")
        local_no = data.get("MaHoSoDonVi")
        if not isinstance(local_no, str) or not local_no:
            raise SubmissionRefused("data.MaHoSoDonVi: must be a non-empty string")
        if data.get("TrangThaiHoSo") not in STATUSES:
            raise SubmissionRefused("data.TrangThaiHoSo: must be one of '1' to '10' (a string)")
        submission.status_back.append(copy.deepcopy(data))

    # --- inspection -------------------------------------------------------------------------------

    def view(self, number: str) -> dict[str, Any] | None:
        submission = self.submissions.get(number)
        return self._view(submission) if submission is not None else None

    def views(self) -> dict[str, dict[str, Any]]:
        return {number: self._view(submission) for number, submission in self.submissions.items()}

    def reset(self) -> None:
        self.submissions.clear()
        self._files.clear()
        self.duplicate_acks = 0

    def _view(self, submission: Submission) -> dict[str, Any]:
        now = self._clock()
        current = submission.current(now)
        return {
            "revisions": [
                {"PhienBan": str(r.revision), "visible": r.visible_at <= now,
                 "NgayNopHoSo": r.record.get("NgayNopHoSo")}
                for r in submission.revisions
            ],
            "current": str(current.revision) if current is not None else None,
            "acknowledged": {str(revision): count for revision, count in sorted(submission.acknowledged.items())},
            "acknowledged_by": submission.acknowledged_by,
            "duplicate_acks": submission.duplicate_acks,
            "status_back": submission.status_back,
            # What the portal really holds (a registered item may declare other values in its record).
            "files": {
                path: {"KichThuoc": len(self._files[path].content), "MaBam": self._files[path].sha256}
                for path in submission.files
            },
        }

    def _visible(self, number: str, revision: int) -> bool:
        found = self.submissions[number].revision(revision)
        return found is not None and found.visible_at <= self._clock()


# --- parsing ----------------------------------------------------------------------------------------


def _parse_item(item: Any, where: str) -> tuple[dict[str, Any], int, list[NewFile], float]:
    """A registered item as (record without files, revision, files, seconds until visible)."""
    if not isinstance(item, dict):
        raise SubmissionRefused(f"{where}: must be an object")
    for name in ("MaHoSo", "MaTTHC", "DonViXuLy"):
        value = item.get(name)
        if not isinstance(value, str) or not value:
            raise SubmissionRefused(f"{where}.{name}: must be a non-empty string")
    submitted = item.get("NgayNopHoSo")
    if not isinstance(submitted, str) or not _real_stamp(submitted):
        raise SubmissionRefused(f"{where}.NgayNopHoSo: must be yyyyMMddHHmmss and a real date")
    if item.get("TrangThaiHoSo") not in STATUSES:
        raise SubmissionRefused(f"{where}.TrangThaiHoSo: must be one of '1' to '10' (a string)")
    revision = _whole(item.get("PhienBan"), f"{where}.PhienBan", default=None, low=1, high=None)
    delay = item.get("_visible_in_seconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        raise SubmissionRefused(f"{where}._visible_in_seconds: must be a number of seconds, at least 0")
    listed = item.get("TaiLieuNop", [])
    if not isinstance(listed, list):
        raise SubmissionRefused(f"{where}.TaiLieuNop: must be a list")
    files = [_parse_file(entry, f"{where}.TaiLieuNop[{i}]") for i, entry in enumerate(listed)]
    record = copy.deepcopy({k: v for k, v in item.items() if k not in ("TaiLieuNop", "_visible_in_seconds")})
    return record, revision, files, float(delay)


def _parse_file(entry: Any, where: str) -> NewFile:
    if not isinstance(entry, dict):
        raise SubmissionRefused(f"{where}: must be an object")
    for name in ("TepDinhKemId", "TenTepDinhKem"):
        value = entry.get(name)
        if not isinstance(value, str) or not value:
            raise SubmissionRefused(f"{where}.{name}: must be a non-empty string")
    if not isinstance(entry.get("MaThanhPhanHoSo"), str):
        raise SubmissionRefused(f"{where}.MaThanhPhanHoSo: must be a string")
    encoded = entry.get("Base64")
    if not isinstance(encoded, str):
        raise SubmissionRefused(f"{where}.Base64: must be the file's content in base64")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SubmissionRefused(f"{where}.Base64: must be the file's content in base64") from None
    fields = {k: copy.deepcopy(v) for k, v in entry.items() if k not in ("Base64", "DuongDanTaiTepTin")}
    return NewFile(fields, content)


def _day(value: Any, name: str) -> str:
    """A ``yyyy-MM-dd`` parameter as ``yyyyMMdd`` (comparable with the first 8 characters of a stamp)."""
    if not isinstance(value, str) or _DAY.fullmatch(value) is None:
        raise SubmissionRefused(f"{name}: must be yyyy-MM-dd and a real date")
    try:
        return date.fromisoformat(value).strftime("%Y%m%d")
    except ValueError:
        raise SubmissionRefused(f"{name}: must be yyyy-MM-dd and a real date") from None


def _whole(value: Any, name: str, *, default: int | None, low: int, high: int | None) -> int:
    """A whole-number parameter given as a JSON integer or a string of digits."""
    if value is None and default is not None:
        return default
    if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 18:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise SubmissionRefused(f"{name}: must be a whole number")
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise SubmissionRefused(f"{name}: must be {bounds}")
    return number


def _real_stamp(text: str) -> bool:
    if _STAMP.fullmatch(text) is None:
        return False
    try:
        datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


# --- made-up traffic --------------------------------------------------------------------------------

# (MaTTHC, TenTTHC, MaLinhVuc, TenLinhVuc, what the applicant asks for)
_PROCEDURES = (
    ("1.009972.000.00.00.G12", "Cấp giấy phép xây dựng mới đối với công trình cấp đặc biệt, cấp I", "XD01",
     "Hoạt động xây dựng", "Đề nghị cấp giấy phép xây dựng công trình nhà ở"),
    ("1.009974.000.00.00.G12", "Điều chỉnh giấy phép xây dựng", "XD01", "Hoạt động xây dựng",
     "Đề nghị điều chỉnh giấy phép xây dựng đã cấp"),
    ("1.010007.000.00.00.G12", "Cấp chứng chỉ hành nghề hoạt động xây dựng hạng I", "XD02",
     "Quản lý hoạt động xây dựng", "Đề nghị cấp chứng chỉ hành nghề thiết kế xây dựng hạng I"),
    ("1.002701.000.00.00.G12", "Thẩm định báo cáo nghiên cứu khả thi đầu tư xây dựng", "XD03",
     "Quản lý đầu tư xây dựng", "Đề nghị thẩm định báo cáo nghiên cứu khả thi dự án"),
    ("1.008891.000.00.00.G12", "Cấp lại chứng chỉ năng lực hoạt động xây dựng", "XD02",
     "Quản lý hoạt động xây dựng", "Đề nghị cấp lại chứng chỉ năng lực do bị mất"),
)
_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ")
_MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang", "Thu", "Xuân")
_GIVEN = ("An", "Bình", "Châu", "Dũng", "Hà", "Hải", "Hùng", "Lan", "Linh", "Nam", "Phương", "Quỳnh", "Sơn",
          "Tâm", "Thảo", "Trang", "Tuấn", "Việt", "Yến")
_COMPANIES = ("Công ty TNHH Xây dựng Hưng Thịnh", "Công ty Cổ phần Tư vấn Thiết kế Sông Hồng",
              "Công ty TNHH Kiến trúc Ánh Dương", "Công ty Cổ phần Đầu tư Phú Gia")
_STREETS = ("phố Hàng Bài", "đường Láng", "đường Nguyễn Trãi", "phố Huế", "đường Lê Duẩn", "đường Trần Phú")
_WARDS = (("phường Tràng Tiền", "Hà Nội"), ("phường Bến Nghé", "Thành phố Hồ Chí Minh"),
          ("phường Hải Châu", "Đà Nẵng"), ("phường Lê Lợi", "Thành phố Vinh, Nghệ An"))
# (MaThanhPhanHoSo, TenTepDinhKem)
_DOCUMENTS = (
    ("TP01", "Đơn đề nghị.pdf"),
    ("TP02", "Bản sao căn cước công dân.pdf"),
    ("TP03", "Bản vẽ thiết kế.pdf"),
    ("TP04", "Giấy chứng nhận quyền sử dụng đất.pdf"),
)
_PDF_HEAD = b"%PDF-1.7\n"


class _Generator:
    def __init__(self, desk: SubmissionDesk, spec: GenerationSpec, day: date) -> None:
        self.desk = desk
        self.spec = spec
        self.day = day
        self.rng = random.Random(spec.seed)  # noqa: S311 - seeded made-up traffic, not secrets
        self.revisions = 0
        self.files = 0

    def run(self) -> Generated:
        spec, rng = self.spec, self.rng
        prefix = f"{spec.agency}-{self.day:%y%m%d}-"
        numbers = (f"{prefix}{n:04d}" for n in itertools.count(1) if f"{prefix}{n:04d}" not in self.desk.submissions)
        now = self.desk._clock()
        for number in itertools.islice(numbers, spec.count):
            late = rng.random() < spec.late_ratio
            amended = rng.random() < spec.amend_ratio
            large = rng.random() < spec.large_file_ratio
            # Late ones were submitted the day before, in a window already polled, and show in its second half.
            low = spec.spread_seconds / 2 if late else 0.0
            first_visible = rng.uniform(low, spec.spread_seconds)
            submitted_on = self.day - timedelta(days=1) if late else self.day
            record, files = self._first_revision(number, submitted_on, large)
            self._add(record, 1, files, now + first_visible)
            if amended:
                record, files = self._amendment(record, files)
                later = first_visible + rng.uniform(0, spec.spread_seconds - first_visible) + AMEND_GAP_SECONDS
                self._add(record, 2, files, now + later)
        return Generated(spec.count, self.revisions, self.files)

    def _add(self, record: dict[str, Any], revision: int, files: list[NewFile], visible_at: float) -> None:
        self.desk.add_revision(record, revision, files, visible_at=visible_at)
        self.revisions += 1
        self.files += len(files)

    def _first_revision(self, number: str, submitted_on: date, large: bool) -> tuple[dict[str, Any], list[NewFile]]:
        rng = self.rng
        code, name, field_code, field_name, request = rng.choice(_PROCEDURES)
        business = rng.random() < 0.25
        if business:
            applicant = rng.choice(_COMPANIES)
            identity = {"LoaiDinhDanh": "2", "SoDinhDanh": f"{rng.randrange(10**9, 10**10):010d}"}
        else:
            applicant = f"{rng.choice(_SURNAMES)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
            identity = {"LoaiDinhDanh": "1", "SoDinhDanh": f"0{rng.randrange(10**10, 10**11):011d}"}
        words = _plain(applicant).lower().split()
        mailbox = "".join(word[0] for word in words[:-1]) + words[-1]
        ward, city = rng.choice(_WARDS)
        seconds = rng.randrange(7 * 3600, 22 * 3600)  # citizens submit from the morning into the evening
        submitted = datetime.combine(submitted_on, datetime.min.time()) + timedelta(seconds=seconds)
        record: dict[str, Any] = {
            "MaHoSo": number,
            "MaTTHC": code,
            "TenTTHC": name,
            "MaLinhVuc": field_code,
            "TenLinhVuc": field_name,
            "LoaiDoiTuong": "2" if business else "1",
            "ChuHoSo": applicant,
            "SoDienThoai": f"09{rng.randrange(10**8):08d}",
            "Email": f"{mailbox}{rng.randrange(100)}@example.vn",
            "DinhDanhCHS": [identity],
            "DiaChiChuHoSo": f"Số {rng.randrange(1, 300)}, {rng.choice(_STREETS)}, {ward}, {city}",
            "TrichYeuHoSo": f"{request} của {applicant}",
            "NgayNopHoSo": submitted.strftime("%Y%m%d%H%M%S"),
            "NgayTiepNhan": "",
            "NgayHenTra": "",
            "TrangThaiHoSo": "1",
            "HinhThuc": str(rng.randrange(2)),
            "KenhThucHien": "2",
            "DonViXuLy": self.spec.agency,
            "DuocThanhToanTrucTuyen": "1",
        }
        chosen = rng.sample(_DOCUMENTS, rng.randint(1, 3))
        files = [
            NewFile(
                {"TepDinhKemId": self._id(), "TenTepDinhKem": file_name, "MaThanhPhanHoSo": part,
                 "IsDeleted": "False"},
                self._bytes(self.spec.large_file_bytes if large and i == 0 else self.spec.small_file_bytes),
            )
            for i, (part, file_name) in enumerate(chosen)
        ]
        return record, files

    def _amendment(self, record: dict[str, Any], files: list[NewFile]) -> tuple[dict[str, Any], list[NewFile]]:
        """Revision 2: another summary, and one file replaced by a new one of the same size and name."""
        amended = {**record, "TrichYeuHoSo": record["TrichYeuHoSo"] + " (bổ sung, thay thế tài liệu)"}
        changed = self.rng.randrange(len(files))
        replaced = [
            NewFile({**f.fields, "TepDinhKemId": self._id()}, self._bytes(len(f.content))) if i == changed else f
            for i, f in enumerate(files)
        ]
        return amended, replaced

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _bytes(self, size: int) -> bytes:
        if size <= len(_PDF_HEAD):
            return self.rng.randbytes(size)
        return _PDF_HEAD + self.rng.randbytes(size - len(_PDF_HEAD))


def _plain(text: str) -> str:
    """Vietnamese without its diacritics (for made-up e-mail addresses)."""
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


__all__ = [
    "AMEND_GAP_SECONDS",
    "MAX_PAGE_SIZE",
    "Generated",
    "GenerationSpec",
    "NewFile",
    "Revision",
    "StoredFile",
    "Submission",
    "SubmissionDesk",
    "SubmissionRefused",
]
