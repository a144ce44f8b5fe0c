"""Citizen submissions from the national portal (DVCQG), validated as they arrive (the record we publish is
``connector.pull.record``).

Everything the portal sends is untrusted: the ``DanhSachHoSo`` listing, the ``TraCuuHoSo`` record, the
``LayTaiLieuHoSo`` file reply and the body it pushes to us. Each function here takes the parsed JSON, checks
every value it uses against a declared rule and bound, and either returns typed values or raises
``InvalidSubmission`` naming the field path (``TaiLieuNop[2].MaBam``) and the rule, never the value (it may
be an ID number or a phone number).

The published record (``submission.received``, topic ``portal.submissions``) is described by
``connector/schemas/events/submission-received.v1.schema.json``; ``submission_document`` builds it and checks it
against that schema. Pure: no clock, no network, no files (the schema is read once, on first use).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, NoReturn

from connector.contracts import DOSSIER_NO
from connector.errors import InvalidInput
from connector.national_time import is_portal_time, parse_portal_time
from connector.portal.errors import SUCCESS_CODES, normalise_code

# Fixed for ever: event_id = uuid5(this, "<no>:<revision>"), so a re-publish carries the same id.
# (It is uuid5(NAMESPACE_URL, "urn:portal-sync:events:submission-received").)

# --- the rules, in one place (the schema states the same bounds for what we publish) ---------------------

AGENCY_CODE = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)+")  # dossier-event.v1 dossier.agency_code
MAX_AGENCY_CODE = 64
# MaTTHC as the portal sends it. Looser than mapping.NATIONAL_PROCEDURE_CODE on purpose: a code we have no
# mapping for is still published (local_procedure_code null), not refused.
PROCEDURE_CODE = re.compile(r"[0-9A-Za-z.\-_]{1,64}")
IDENTITY_KIND = re.compile(r"[0-9A-Za-z_\-]{1,16}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DIGITS = re.compile(r"[0-9]{1,16}")
MAX_REVISION = 2**53 - 1  # exact in every JSON reader
MAX_SIZE = 2**53 - 1
FIRST_YEAR, LAST_YEAR = 2000, 2099  # Asia/Ho_Chi_Minh is +07:00 throughout; RFC 3339 years in the schema
MAX_LISTING = 10_000  # items in one DanhSachHoSo page, whatever the adapter sends
MAX_IDENTITIES = 10  # DinhDanhCHS items
MAX_NAME = 4000  # ChuHoSo, TenTepDinhKem
MAX_FILE_ID = 200
MAX_COMPONENT = 200
MAX_FILE_PATH = 4000  # DuongDanTaiTepTin
MAX_PHONE = 64
MAX_EMAIL = 320
MAX_ACCOUNT = 100
MAX_ID_NUMBER = 64
MAX_ADDRESS = 2000
MAX_SUMMARY = 20000
MAX_STORED_PATH_BYTES = 1024  # a document's "path", JSON-encoded
MAX_DEPTH = 16  # nesting of the national record
MAX_NODES = 200_000  # values in the national record
MAX_KEY = 200
MAX_INT = 2**63 - 1  # any integer in the national record
ENVELOPE_ALLOWANCE = 8 * 1024  # the record's own keys and codes, beyond what it copies from the national one
PLAN_SLACK = 1024

# Control characters (C0, DEL, C1, line/paragraph separators) and lone surrogates (not UTF-8 encodable).
ONE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_TEXT_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")  # tab, LF, CR allowed
_SURROGATE = re.compile("[\ud800-\udfff]")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")  # the length (a multiple of 4) is checked apart
_SAFE_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_DRIVE = re.compile(r"[A-Za-z]:")  # C:\x, and C:x (relative to that drive's folder: elsewhere too)
_TRUE = {"true": True, "false": False}


class InvalidSubmission(InvalidInput):
    """A submission (or a listing item, a file) that cannot be used as it is. ``field`` is the path of the
    offending value, the message the rule it breaks. ``dossier_no`` and ``revision`` are set when the record
    named them validly, so the rejection can be recorded against that revision."""

    def __init__(self, message: str, *, reason: str, field: str | None = None, dossier_no: str | None = None,
                 revision: int | None = None) -> None:
        super().__init__(message, reason=reason, field=field)
        self.dossier_no = dossier_no
        self.revision = revision


@dataclass(frozen=True)
class Limits:
    """Size bounds, in bytes (files are counted decoded; the record encoded)."""

    max_inline_bytes: int = 512 * 1024  # a file travels inside the Kafka record only up to this size
    max_file_bytes: int = 20 * 1024 * 1024
    max_dossier_bytes: int = 50 * 1024 * 1024  # all the files of one submission
    max_record_bytes: int = 900 * 1024  # the published record, under the broker's message limit
    max_files: int = 200

    def __post_init__(self) -> None:
        for name in ("max_inline_bytes", "max_file_bytes", "max_dossier_bytes", "max_record_bytes", "max_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_inline_bytes"
                                                                                 else 1):
                raise ValueError(f"Limits.{name} must be an integer of at least "
                                 f"{0 if name == 'max_inline_bytes' else 1}")

    @property
    def max_national_bytes(self) -> int:
        """The national record (file contents left out), encoded, may fill at most a quarter of the record:
        the record also carries a copy of its values and the list of documents, and needs room for files."""
        return self.max_record_bytes // 4


DEFAULT_LIMITS = Limits()


class Listed(NamedTuple):
    """One item of a ``DanhSachHoSo`` listing."""

    no: str
    procedure_code: str
    submitted_at: datetime  # aware, Asia/Ho_Chi_Minh
    status: str  # "1".."10"
    revision: int


@dataclass(frozen=True)
class DeclaredFile:
    """One ``TaiLieuNop`` item: what the portal declares about a submitted file."""

    id: str
    name: str
    component_code: str | None
    size: int
    sha256: str  # lower-case hex
    path: str | None  # DuongDanTaiTepTin, for LayTaiLieuHoSo; None for an inline (pushed) file
    content: bytes | None = field(default=None, repr=False)  # the decoded Base64 of an inline file


class Identity(NamedTuple):
    """One ``DinhDanhCHS`` item."""

    kind: str  # LoaiDinhDanh
    number: str  # SoDinhDanh


class Holder(NamedTuple):
    """The applicant (chủ hồ sơ), as the portal describes them; codes are the portal's."""

    name: str  # ChuHoSo
    type_code: str | None = None  # LoaiDoiTuong "1".."4"
    identities: tuple[Identity, ...] = ()
    phone: str | None = None
    email: str | None = None
    portal_account_id: str | None = None  # MaDoiTuong
    address: str | None = None  # DiaChiChuHoSo


@dataclass(frozen=True)
class NationalSubmission:
    no: str
    revision: int
    agency_code: str  # DonViXuLy
    procedure_code: str  # MaTTHC
    submitted_at: datetime  # NgayNopHoSo, aware, Asia/Ho_Chi_Minh
    status: str  # TrangThaiHoSo "1".."10"
    files: tuple[DeclaredFile, ...]  # TaiLieuNop, items marked IsDeleted left out
    raw: dict[str, Any] = field(repr=False)  # the record as received, every "Base64" member removed
    holder: Holder = field(default=Holder(name=""), repr=False)
    result_delivery_code: str | None = None  # HinhThuc "0"/"1"
    summary: str | None = field(default=None, repr=False)  # TrichYeuHoSo


# --- small readers; each raises with the field path and the rule -------------------------------------------


def refuse(field: str, rule: str, reason: str) -> NoReturn:
    raise InvalidSubmission(rule, reason=reason, field=field)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _absent(value: Any) -> bool:
    # The portal writes "" for an empty value.
    return value is None or value == ""


def _text(value: Any, field: str, *, max_len: int, multiline: bool = False, pattern: re.Pattern[str] | None = None,
          rule: str = "") -> str:
    if not isinstance(value, str):
        refuse(field, "must be a string", "wrong_type")
    if not value.strip():
        refuse(field, "must not be empty", "missing_field")
    if len(value) > max_len:
        refuse(field, f"must be at most {max_len} characters", "too_long")
    if (_TEXT_FORBIDDEN if multiline else ONE_LINE_FORBIDDEN).search(value):
        refuse(field, "must not contain control characters", "bad_format")
    if pattern is not None and not pattern.fullmatch(value):
        refuse(field, rule, "bad_format")
    return value


def _required_text(record: Mapping[str, Any], key: str, prefix: str, **rules: Any) -> str:
    field = _join(prefix, key)
    if _absent(record.get(key)):
        refuse(field, "is required", "missing_field")
    return _text(record[key], field, **rules)


def _optional_text(record: Mapping[str, Any], key: str, prefix: str, **rules: Any) -> str | None:
    value = record.get(key)
    return None if _absent(value) else _text(value, _join(prefix, key), **rules)


def _integer(value: Any, field: str, *, low: int, high: int) -> int:
    """An integer, or its decimal digits as a string (no sign, no spaces), within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        refuse(field, "must be an integer (or its digits as a string)", "wrong_type")
    number: int
    if isinstance(value, str):
        if not DIGITS.fullmatch(value):
            refuse(field, "must be 1-16 decimal digits", "bad_format")
        number = int(value)
    else:
        number = value
    if not low <= number <= high:
        refuse(field, f"must be between {low} and {high}", "out_of_range")
    return number


def _required_integer(record: Mapping[str, Any], key: str, prefix: str, *, low: int, high: int) -> int:
    field = _join(prefix, key)
    if _absent(record.get(key)):
        refuse(field, "is required", "missing_field")
    return _integer(record[key], field, low=low, high=high)


def _identifier(value: Any, field: str, *, max_len: int) -> str:
    """An id the portal may send as a number or a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_INT:
            refuse(field, f"must be between 0 and {MAX_INT}", "out_of_range")
        return str(value)
    return _text(value, field, max_len=max_len)


def _portal_time(value: Any, field: str) -> datetime:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh → an aware datetime."""
    if _absent(value):
        refuse(field, "is required", "missing_field")
    if not isinstance(value, str):
        refuse(field, "must be a string yyyyMMddHHmmss", "wrong_type")
    if not is_portal_time(value):
        refuse(field, "must be 14 digits yyyyMMddHHmmss", "bad_format")
    try:
        moment = parse_portal_time(value)
    except ValueError:
        refuse(field, "is not a real date and time", "bad_date")
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        refuse(field, f"must be in the years {FIRST_YEAR}-{LAST_YEAR}", "out_of_range")
    return moment


def _dossier_no(record: Mapping[str, Any], prefix: str) -> str:
    return _required_text(record, "MaHoSo", prefix, max_len=100, pattern=DOSSIER_NO,
                          rule="must be 3-100 characters of 0-9 A-Z a-z . - _ /")


def _revision(record: Mapping[str, Any], prefix: str) -> int:
    return _required_integer(record, "PhienBan", prefix, low=0, high=MAX_REVISION)


def _procedure_code(record: Mapping[str, Any], prefix: str) -> str:
    return _required_text(record, "MaTTHC", prefix, max_len=64, pattern=PROCEDURE_CODE,
                          rule="must be 1-64 characters of 0-9 A-Z a-z . - _")


def _status(record: Mapping[str, Any], prefix: str) -> str:
    return str(_required_integer(record, "TrangThaiHoSo", prefix, low=1, high=10))


def base64_length(size: int) -> int:
    """Characters of the padded base64 of ``size`` bytes."""
    return 4 * math.ceil(size / 3)


def _b64_decoded_length(text: str) -> int:
    """Bytes that a base64 text of the right shape (see ``_base64``) decodes to."""
    return len(text) // 4 * 3 - (len(text) - len(text.rstrip("=")))


def _base64(value: Any, field: str, *, max_bytes: int) -> str:
    """Check a base64 text before any decoding: a string, not longer than ``max_bytes`` need, only the
    standard alphabet, padded to a multiple of 4 characters."""
    if not isinstance(value, str):
        refuse(field, "must be a base64 string", "wrong_type" if value is not None else "missing_field")
    if len(value) > base64_length(max_bytes):
        refuse(field, f"the file is over the limit of {max_bytes} bytes", "file_too_large")
    if len(value) % 4 or not _BASE64_TEXT.fullmatch(value):
        refuse(field, "must be standard base64 with padding, nothing else", "bad_base64")
    return value


def _decode_base64(text: str, field: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        refuse(field, "must be standard base64 with padding, nothing else", "bad_base64")


# --- the national record, copied as received --------------------------------------------------------------


def _key_label(key: str) -> str:
    # A key is only named in an error when it looks like a field name; anything else may be data.
    return key if _SAFE_KEY.fullmatch(key) else "(key)"


def _national_copy(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of the record with every ``Base64`` member removed, after checking it is plain, bounded JSON
    (string keys, finite numbers, 64-bit integers, UTF-8-encodable text, nesting and size bounded)."""
    nodes = 0

    def copy(value: Any, field: str, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_NODES:
            refuse("(record)", f"must hold at most {MAX_NODES} values", "too_large")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            if _SURROGATE.search(value):
                refuse(field, "must be valid Unicode text", "bad_format")
            return value
        if isinstance(value, int):
            if not -MAX_INT - 1 <= value <= MAX_INT:
                refuse(field, "must be a 64-bit integer", "out_of_range")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                refuse(field, "must be a finite number", "wrong_type")
            return value
        if depth >= MAX_DEPTH:
            refuse(field, f"must not nest deeper than {MAX_DEPTH} levels", "too_deep")
        if isinstance(value, list):
            return [copy(item, f"{field}[{index}]", depth + 1) for index, item in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str) or len(key) > MAX_KEY or _SURROGATE.search(key):
                    refuse(field or "(record)", f"keys must be text of at most {MAX_KEY} characters", "bad_format")
                if key == "Base64":
                    continue
                out[key] = copy(item, _join(field, _key_label(key)), depth + 1)
            return out
        refuse(field, "must be a JSON value", "wrong_type")

    result: dict[str, Any] = copy(record, "", 0)
    return result


def encoded_length(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))


# --- DanhSachHoSo -----------------------------------------------------------------------------------------


def parse_listing(result: Any) -> tuple[list[Listed], list[InvalidSubmission]]:
    """The ``result`` of ``DanhSachHoSo``: the good items, and one InvalidSubmission per bad item (its field
    ``result[i]...``). ``None`` or ``[]`` is an empty listing; anything but a list raises. Items are returned
    in the portal's order, duplicates included."""
    if result is None or result == []:
        return [], []
    if not isinstance(result, list):
        refuse("result", "must be a list of submissions", "wrong_type")
    if len(result) > MAX_LISTING:
        refuse("result", f"must hold at most {MAX_LISTING} items", "too_many_items")
    listed: list[Listed] = []
    problems: list[InvalidSubmission] = []
    for index, item in enumerate(result):
        prefix = f"result[{index}]"
        no: str | None = None
        revision: int | None = None
        try:
            if not isinstance(item, dict):
                refuse(prefix, "must be an object", "wrong_type")
            no = _dossier_no(item, prefix)
            revision = _revision(item, prefix)
            listed.append(Listed(no=no, procedure_code=_procedure_code(item, prefix),
                                 submitted_at=_portal_time(item.get("NgayNopHoSo"), f"{prefix}.NgayNopHoSo"),
                                 status=_status(item, prefix), revision=revision))
        except InvalidSubmission as error:
            error.dossier_no, error.revision = no, revision
            problems.append(error)
    return listed, problems


# --- TraCuuHoSo record / inbound push ---------------------------------------------------------------------


def parse_submission(record: Any, *, inline: bool, limits: Limits = DEFAULT_LIMITS) -> NationalSubmission:
    """A ``TraCuuHoSo`` ``result[0]`` (``inline=False``: files by ``DuongDanTaiTepTin``, ``KichThuoc`` and
    ``MaBam`` required) or an inbound push body (``inline=True``: files as ``Base64``; ``KichThuoc`` and
    ``MaBam`` optional, checked against the content when present). Raises InvalidSubmission."""
    if not isinstance(record, dict):
        refuse("(record)", "must be an object", "wrong_type")
    no: str | None = None
    revision: int | None = None
    try:
        no = _dossier_no(record, "")
        revision = _revision(record, "")
        raw = _national_copy(record)
        procedure_code = _procedure_code(record, "")
        agency_code = _required_text(record, "DonViXuLy", "", max_len=MAX_AGENCY_CODE, pattern=AGENCY_CODE,
                                     rule="must be an agency code like 000.00.01.G12")
        submitted_at = _portal_time(record.get("NgayNopHoSo"), "NgayNopHoSo")
        status = _status(record, "")
        holder = _holder(record)
        delivery = record.get("HinhThuc")
        delivery_code = None if _absent(delivery) else str(_integer(delivery, "HinhThuc", low=0, high=1))
        summary = _optional_text(record, "TrichYeuHoSo", "", max_len=MAX_SUMMARY, multiline=True)
        files = _files(record.get("TaiLieuNop"), inline=inline, limits=limits)
        if encoded_length(raw) > limits.max_national_bytes:
            refuse("(record)", f"without file contents, must be at most {limits.max_national_bytes} bytes of JSON "
                  "(a quarter of max_record_bytes)", "record_too_large")
    except InvalidSubmission as error:
        error.dossier_no, error.revision = no, revision
        raise
    return NationalSubmission(no=no, revision=revision, agency_code=agency_code, procedure_code=procedure_code,
                              submitted_at=submitted_at, status=status, files=files, raw=raw, holder=holder,
                              result_delivery_code=delivery_code, summary=summary)


def _holder(record: Mapping[str, Any]) -> Holder:
    name = _required_text(record, "ChuHoSo", "", max_len=MAX_NAME)
    kind = record.get("LoaiDoiTuong")
    type_code = None if _absent(kind) else str(_integer(kind, "LoaiDoiTuong", low=1, high=4))
    return Holder(
        name=name,
        type_code=type_code,
        identities=_identities(record.get("DinhDanhCHS")),
        phone=_optional_text(record, "SoDienThoai", "", max_len=MAX_PHONE),
        email=_optional_text(record, "Email", "", max_len=MAX_EMAIL),
        portal_account_id=(None if _absent(record.get("MaDoiTuong"))
                           else _identifier(record["MaDoiTuong"], "MaDoiTuong", max_len=MAX_ACCOUNT)),
        address=_optional_text(record, "DiaChiChuHoSo", "", max_len=MAX_ADDRESS, multiline=True),
    )


def _identities(value: Any) -> tuple[Identity, ...]:
    if _absent(value):
        return ()
    if not isinstance(value, list):
        refuse("DinhDanhCHS", "must be a list", "wrong_type")
    if len(value) > MAX_IDENTITIES:
        refuse("DinhDanhCHS", f"must hold at most {MAX_IDENTITIES} items", "too_many_items")
    identities = []
    for index, item in enumerate(value):
        prefix = f"DinhDanhCHS[{index}]"
        if not isinstance(item, dict):
            refuse(prefix, "must be an object", "wrong_type")
        kind = item.get("LoaiDinhDanh")
        if _absent(kind):
            refuse(f"{prefix}.LoaiDinhDanh", "is required", "missing_field")
        kind_text = _identifier(kind, f"{prefix}.LoaiDinhDanh", max_len=16)
        if not IDENTITY_KIND.fullmatch(kind_text):
            refuse(f"{prefix}.LoaiDinhDanh", "must be 1-16 characters of 0-9 A-Z a-z _ -", "bad_format")
        # A number here would have lost its leading zeros: refused, not converted.
        number = _required_text(item, "SoDinhDanh", prefix, max_len=MAX_ID_NUMBER)
        identities.append(Identity(kind_text, number))
    return tuple(identities)


def _deleted(item: Mapping[str, Any], field: str) -> bool:
    value = item.get("IsDeleted")
    if _absent(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE:
        return _TRUE[value.lower()]
    refuse(field, 'must be "True" or "False"', "bad_format")


def _files(value: Any, *, inline: bool, limits: Limits) -> tuple[DeclaredFile, ...]:
    if _absent(value):
        return ()
    if not isinstance(value, list):
        refuse("TaiLieuNop", "must be a list", "wrong_type")
    if len(value) > limits.max_files:
        refuse("TaiLieuNop", f"must hold at most {limits.max_files} files", "too_many_files")
    # First every file's metadata and size, so an oversized dossier is refused before anything is decoded.
    checked: list[tuple[int, dict[str, Any], str | None]] = []
    seen: set[str] = set()
    total = 0
    for index, item in enumerate(value):
        prefix = f"TaiLieuNop[{index}]"
        if not isinstance(item, dict):
            refuse(prefix, "must be an object", "wrong_type")
        if _deleted(item, f"{prefix}.IsDeleted"):
            continue
        declared = _declared(item, prefix, inline=inline, limits=limits)
        if declared["id"] in seen:
            refuse(f"{prefix}.TepDinhKemId", "must differ from every other file's", "duplicate_file")
        seen.add(declared["id"])
        text = _base64(item.get("Base64"), f"{prefix}.Base64", max_bytes=limits.max_file_bytes) if inline else None
        size = declared["size"]
        if text is not None:
            actual = _b64_decoded_length(text)
            if size is not None and size != actual:
                refuse(f"{prefix}.KichThuoc", "must equal the size of the content", "file_size_mismatch")
            size = declared["size"] = actual
            if size > limits.max_file_bytes:
                refuse(f"{prefix}.Base64", f"the file is over the limit of {limits.max_file_bytes} bytes",
                      "file_too_large")
        total += size
        checked.append((index, declared, text))
    if total > limits.max_dossier_bytes:
        refuse("TaiLieuNop", f"the files together must be at most {limits.max_dossier_bytes} bytes",
              "dossier_too_large")
    files = []
    for index, declared, text in checked:
        prefix = f"TaiLieuNop[{index}]"
        content: bytes | None = None
        if text is not None:
            content = _decode_base64(text, f"{prefix}.Base64")
            digest = hashlib.sha256(content).hexdigest()
            if declared["sha256"] is not None and not hmac.compare_digest(digest, declared["sha256"]):
                refuse(f"{prefix}.MaBam", "must equal the SHA-256 of the content", "file_sha256_mismatch")
            declared["sha256"] = digest
        files.append(DeclaredFile(content=content, **declared))
    return tuple(files)


def _file_name(name: str, field: str) -> str:
    """A file's name is display text (it is never used as a path here, and "123/QĐ-UBND.pdf" is a usual name),
    but one that reads as a path climbing out of a folder or starting at a root is refused: a consumer that
    did save under it would write outside its folder."""
    segments = re.split(r"[/\\]", name)
    if ".." in (segment.strip() for segment in segments) or name.startswith(("/", "\\")) or _DRIVE.match(name):
        refuse(field, "must not be a path that climbs (a .. segment) or starts at a root (/, \\, a drive)",
              "bad_format")
    return name


def _declared(item: Mapping[str, Any], prefix: str, *, inline: bool, limits: Limits) -> dict[str, Any]:
    """One file's metadata; ``size`` and ``sha256`` None when an inline file leaves them out."""
    file_id = item.get("TepDinhKemId")
    if _absent(file_id):
        refuse(f"{prefix}.TepDinhKemId", "is required", "missing_field")
    declared: dict[str, Any] = {
        "id": _identifier(file_id, f"{prefix}.TepDinhKemId", max_len=MAX_FILE_ID),
        "name": _file_name(_required_text(item, "TenTepDinhKem", prefix, max_len=MAX_NAME),
                           f"{prefix}.TenTepDinhKem"),
        "component_code": _optional_text(item, "MaThanhPhanHoSo", prefix, max_len=MAX_COMPONENT),
        "size": None,
        "sha256": None,
        "path": None,
    }
    size = item.get("KichThuoc")
    if not _absent(size):
        declared["size"] = _integer(size, f"{prefix}.KichThuoc", low=0, high=MAX_SIZE)
        if declared["size"] > limits.max_file_bytes:
            refuse(f"{prefix}.KichThuoc", f"the file is over the limit of {limits.max_file_bytes} bytes",
                  "file_too_large")
    elif not inline:
        refuse(f"{prefix}.KichThuoc", "is required", "missing_field")
    digest = item.get("MaBam")
    if not _absent(digest):
        declared["sha256"] = _text(digest, f"{prefix}.MaBam", max_len=64, pattern=SHA256_HEX,
                                   rule="must be 64 hexadecimal digits (SHA-256)").lower()
    elif not inline:
        refuse(f"{prefix}.MaBam", "is required", "missing_field")
    if not inline:
        declared["path"] = _required_text(item, "DuongDanTaiTepTin", prefix, max_len=MAX_FILE_PATH)
    return declared


# --- LayTaiLieuHoSo ---------------------------------------------------------------------------------------


def decode_file_reply(reply: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of the first file of a ``LayTaiLieuHoSo`` reply ``{error_code, message, TepTinDinhKem:
    [{TenTep, Base64}]}``. An ``error_code`` other than 0 / "0" / "00" is refused (reason ``portal_error``; the
    portal's message is not repeated: it may quote a citizen's data)."""
    if not isinstance(reply, dict):
        refuse("(reply)", "must be an object", "wrong_type")
    code = reply.get("error_code")
    if code is not None and normalise_code(code) not in SUCCESS_CODES:  # the adapter's one reading of a code
        refuse("error_code", "the adapter answered with an error instead of the file", "portal_error")
    files = reply.get("TepTinDinhKem")
    if _absent(files) or files == []:
        refuse("TepTinDinhKem", "must hold the file", "no_file")
    if not isinstance(files, list):
        refuse("TepTinDinhKem", "must be a list", "wrong_type")
    first = files[0]
    if not isinstance(first, dict):
        refuse("TepTinDinhKem[0]", "must be an object", "wrong_type")
    name = first.get("TenTep")
    if not _absent(name):
        _text(name, "TepTinDinhKem[0].TenTep", max_len=MAX_NAME)
    text = _base64(first.get("Base64"), "TepTinDinhKem[0].Base64", max_bytes=limits.max_file_bytes)
    if _b64_decoded_length(text) > limits.max_file_bytes:  # the text's bound rounds up to a multiple of 3
        refuse("TepTinDinhKem[0].Base64", f"the file is over the limit of {limits.max_file_bytes} bytes",
              "file_too_large")
    return _decode_base64(text, "TepTinDinhKem[0].Base64")


def check_file(declared: DeclaredFile, content: bytes, *, field: str) -> None:
    """The content must have the declared size, then the declared SHA-256 (compared in constant time).
    ``field`` is the file's path (``TaiLieuNop[2]``); the error names ``.KichThuoc`` or ``.MaBam`` under it."""
    if len(content) != declared.size:
        refuse(f"{field}.KichThuoc", "must equal the size of the file received", "file_size_mismatch")
    digest = hashlib.sha256(content).hexdigest()
    if not SHA256_HEX.fullmatch(declared.sha256) or not hmac.compare_digest(digest, declared.sha256.lower()):
        refuse(f"{field}.MaBam", "must equal the SHA-256 of the file received", "file_sha256_mismatch")


__all__ = [
    "DEFAULT_LIMITS",
    "DeclaredFile",
    "Holder",
    "Identity",
    "InvalidSubmission",
    "Limits",
    "Listed",
    "NationalSubmission",
    "base64_length",
    "check_file",
    "decode_file_reply",
    "encoded_length",
    "parse_listing",
    "parse_submission",
    "refuse",
]
