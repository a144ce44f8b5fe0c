"""Citizen submissions from the national portal: every input is hostile, every rejection names the field and
the rule (never the value), and what we publish always matches its schema."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.errors import InvalidInput
from connector.pull import national as submissions
from connector.pull import record as published
from connector.pull.national import (
    DeclaredFile,
    InvalidSubmission,
    Limits,
    Listed,
    NationalSubmission,
    check_file,
    decode_file_reply,
    parse_listing,
    parse_submission,
)
from connector.pull.record import (
    SUBMISSION_NAMESPACE,
    encode_document,
    message_id,
    plan_inline,
    submission_document,
    validate_document,
)
from connector.push.mapping import load_mappings

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
AGENCY = "000.00.01.G12"  # Cục Quản lý hoạt động xây dựng, Bộ Xây dựng
NO = "000.00.01.G12-201005-0001"
RECEIVED_AT = datetime(2020, 10, 5, 2, 0, 5, tzinfo=UTC)
ID_NUMBER = "001189012345"  # a made-up CCCD number: must never appear in an error
PHONE = "0912345678"

APPLICATION = "Đơn đề nghị cấp chứng chỉ năng lực hoạt động xây dựng.pdf".encode() + bytes(range(256)) * 3
CERTIFICATE = b"%PDF-1.4\n" + "Giấy chứng nhận đăng ký doanh nghiệp".encode() * 40
TABLE = b"%PDF-1.4\n" + "Bảng kê kinh nghiệm hoạt động xây dựng".encode() * 25


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def file_item(index: int, content: bytes, name: str, component: str, *, inline: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "TepDinhKemId": f"f3b1c0de-0000-4000-8000-00000000000{index}",
        "TenTepDinhKem": name,
        "IsDeleted": "False",
        "MaThanhPhanHoSo": component,
        "KichThuoc": len(content),
        "MaBam": sha(content),
    }
    if inline:
        item["Base64"] = b64(content)
    else:
        item["DuongDanTaiTepTin"] = f"/dvcqg/tailieu/2020/10/05/{NO}/{index}.pdf"
    return item


CONTENTS = [APPLICATION, CERTIFICATE, TABLE]


def record(*, inline: bool = False, **overrides: Any) -> dict[str, Any]:
    """A TraCuuHoSo result[0] (or, inline, a pushed body) for a Ministry of Construction procedure."""
    data: dict[str, Any] = {
        "MaHoSo": NO,
        "PhienBan": "2",
        "MaTTHC": "1.009972.000.00.00.G12",
        "TenTTHC": "Cấp chứng chỉ năng lực hoạt động xây dựng hạng I",
        "MaLinhVuc": "G12-HDXD",
        "TenLinhVuc": "Hoạt động xây dựng",
        "DonViXuLy": AGENCY,
        "LoaiDoiTuong": "2",
        "HinhThuc": "1",
        "KenhThucHien": "2",
        "NgayNopHoSo": "20201005083000",
        "NgayTiepNhan": "",
        "NgayHenTra": "",
        "TrangThaiHoSo": "1",
        "ChuHoSo": "Công ty Cổ phần Xây dựng Sông Hồng",
        "MaDoiTuong": "dvcqg-7f3a9c21",
        "SoDienThoai": PHONE,
        "Email": "phaply@songhong.example.vn",
        "DiaChiChuHoSo": "Số 12 Nguyễn Trãi, phường Thượng Đình, quận Thanh Xuân, Hà Nội",
        "TrichYeuHoSo": "Đề nghị cấp chứng chỉ năng lực hoạt động xây dựng hạng I (khảo sát, thiết kế)",
        "GhiChu": "",
        "DinhDanhCHS": [{"LoaiDinhDanh": "2", "SoDinhDanh": "0101234567"}],
        "TaiLieuNop": [
            file_item(0, APPLICATION, "Đơn đề nghị cấp chứng chỉ năng lực.pdf", "TP01", inline=inline),
            file_item(1, CERTIFICATE, "Giấy chứng nhận đăng ký doanh nghiệp.pdf", "TP02", inline=inline),
            file_item(2, TABLE, "Bảng kê kinh nghiệm.pdf", "TP03", inline=inline),
        ],
    }
    data.update(overrides)
    return data


def citizen_record(**overrides: Any) -> dict[str, Any]:
    return record(
        MaHoSo="000.00.04.G12-201012-0042", MaTTHC="1.007750.000.00.00.G12", DonViXuLy="000.00.04.G12",
        TenTTHC="Thuê nhà ở công vụ thuộc thẩm quyền quản lý của Chính phủ", LoaiDoiTuong="1", HinhThuc="0",
        ChuHoSo="Nguyễn Thị Thu Hà", DinhDanhCHS=[{"LoaiDinhDanh": "1", "SoDinhDanh": ID_NUMBER}],
        TrichYeuHoSo="Đề nghị thuê nhà ở công vụ", **overrides)


def rejected(value: Any, *, inline: bool = False, limits: Limits = submissions.DEFAULT_LIMITS) -> InvalidSubmission:
    with pytest.raises(InvalidSubmission) as caught:
        parse_submission(value, inline=inline, limits=limits)
    return caught.value


def placed(sub: NationalSubmission, contents: list[bytes], stored: set[int] = frozenset()) -> list[tuple[Any, ...]]:
    return [(declared, content, f"/var/lib/portal-sync/attachments/{declared.sha256}" if i in stored else None)
            for i, (declared, content) in enumerate(zip(sub.files, contents, strict=True))]


# --- DanhSachHoSo ---------------------------------------------------------------------------------------------


def listing_item(no: str = NO, revision: Any = "1", **overrides: Any) -> dict[str, Any]:
    item = {"MaHoSo": no, "MaTTHC": "1.009980.000.00.00.G12", "NgayNopHoSo": "20201005143015",
            "TrangThaiHoSo": "1", "PhienBan": revision}
    item.update(overrides)
    return item


def test_a_listing_gives_typed_items_in_ho_chi_minh_time() -> None:
    items, problems = parse_listing([listing_item(), listing_item("000.00.01.G12-201005-0002", 4,
                                                                  TrangThaiHoSo=2)])
    assert problems == []
    first, second = items
    assert first == Listed(NO, "1.009980.000.00.00.G12", first.submitted_at, "1", 1)
    assert first.submitted_at.isoformat() == "2020-10-05T14:30:15+07:00"
    assert second.revision == 4
    assert second.status == "2"


@pytest.mark.parametrize("empty", [None, []])
def test_an_empty_listing_is_no_items(empty: Any) -> None:
    assert parse_listing(empty) == ([], [])


@pytest.mark.parametrize("result", [{"MaHoSo": NO}, "thành công", 3, True])
def test_a_listing_that_is_not_a_list_is_refused(result: Any) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        parse_listing(result)
    assert (caught.value.field, caught.value.reason) == ("result", "wrong_type")


def test_a_listing_is_bounded() -> None:
    with pytest.raises(InvalidSubmission) as caught:
        parse_listing([listing_item()] * (submissions.MAX_LISTING + 1))
    assert caught.value.reason == "too_many_items"


@pytest.mark.parametrize(
    ("item", "field", "reason"),
    [
        ("000.00.01.G12-201005-0001", "result[1]", "wrong_type"),
        (listing_item(no="HS 0001"), "result[1].MaHoSo", "bad_format"),
        (listing_item(no="ab"), "result[1].MaHoSo", "bad_format"),
        (listing_item(no="A" * 101), "result[1].MaHoSo", "too_long"),
        (listing_item(revision="-1"), "result[1].PhienBan", "bad_format"),
        (listing_item(revision="2.0"), "result[1].PhienBan", "bad_format"),
        (listing_item(revision=2.0), "result[1].PhienBan", "wrong_type"),
        (listing_item(revision=True), "result[1].PhienBan", "wrong_type"),
        (listing_item(revision=2**53), "result[1].PhienBan", "out_of_range"),
        (listing_item(revision=None), "result[1].PhienBan", "missing_field"),
        (listing_item(NgayNopHoSo="2020-10-05"), "result[1].NgayNopHoSo", "bad_format"),
        (listing_item(NgayNopHoSo="20200230083000"), "result[1].NgayNopHoSo", "bad_date"),
        (listing_item(NgayNopHoSo="20201005240000"), "result[1].NgayNopHoSo", "bad_date"),
        (listing_item(NgayNopHoSo="18991231235959"), "result[1].NgayNopHoSo", "out_of_range"),
        (listing_item(TrangThaiHoSo="11"), "result[1].TrangThaiHoSo", "out_of_range"),
        (listing_item(MaTTHC="1.009980 .000"), "result[1].MaTTHC", "bad_format"),
    ],
)
def test_a_bad_listing_item_is_reported_and_the_good_ones_kept(item: Any, field: str, reason: str) -> None:
    items, problems = parse_listing([listing_item(), item, listing_item("000.00.01.G12-201005-0003")])
    assert [i.no for i in items] == [NO, "000.00.01.G12-201005-0003"]
    [problem] = problems
    assert (problem.field, problem.reason, problem.kind) == (field, reason, "invalid_input")
    assert isinstance(problem, InvalidInput)


def test_a_listing_problem_names_the_dossier_when_it_can() -> None:
    _, [problem] = parse_listing([listing_item(revision="7", TrangThaiHoSo="0")])
    assert (problem.dossier_no, problem.revision) == (NO, 7)
    _, [problem] = parse_listing([listing_item(no="x y z")])
    assert (problem.dossier_no, problem.revision) == (None, None)


# --- TraCuuHoSo record (poll) and pushed body (inline) ------------------------------------------------------


def test_a_polled_record_is_parsed() -> None:
    data = record()
    sub = parse_submission(data, inline=False)
    assert (sub.no, sub.revision, sub.agency_code, sub.procedure_code, sub.status) == (
        NO, 2, AGENCY, "1.009972.000.00.00.G12", "1")
    assert sub.submitted_at == datetime(2020, 10, 5, 1, 30, tzinfo=UTC)
    assert sub.submitted_at.utcoffset() == timedelta(hours=7)
    assert sub.raw == data and sub.raw is not data
    assert [f.path for f in sub.files] == [f"/dvcqg/tailieu/2020/10/05/{NO}/{i}.pdf" for i in range(3)]
    assert [f.content for f in sub.files] == [None, None, None]
    assert [f.size for f in sub.files] == [len(c) for c in CONTENTS]
    assert sub.files[1].component_code == "TP02"
    assert sub.holder.name == "Công ty Cổ phần Xây dựng Sông Hồng"
    assert sub.holder.type_code == "2"
    assert sub.result_delivery_code == "1"


def test_a_pushed_body_carries_the_files_and_raw_leaves_them_out() -> None:
    data = record(inline=True)
    sub = parse_submission(data, inline=True)
    assert [f.content for f in sub.files] == CONTENTS
    assert [f.path for f in sub.files] == [None, None, None]
    assert all("Base64" not in item for item in sub.raw["TaiLieuNop"])
    assert "Base64" in data["TaiLieuNop"][0]  # the caller's record is left alone
    assert "Sông Hồng" not in repr(sub) and PHONE not in repr(sub)  # personal data stays out of reprs
    assert len(repr(sub)) < 5000  # and so do file contents


def test_a_pushed_file_may_leave_out_size_and_digest() -> None:
    data = record(inline=True)
    for item in data["TaiLieuNop"]:
        del item["KichThuoc"], item["MaBam"]
    sub = parse_submission(data, inline=True)
    assert [(f.size, f.sha256) for f in sub.files] == [(len(c), sha(c)) for c in CONTENTS]


def test_numbers_are_accepted_for_codes_the_portal_may_send_as_numbers() -> None:
    data = record(PhienBan=3, TrangThaiHoSo=4, LoaiDoiTuong=1, HinhThuc=0, MaDoiTuong=12345)
    data["TaiLieuNop"][0]["TepDinhKemId"] = 981
    data["TaiLieuNop"][1]["KichThuoc"] = str(len(CERTIFICATE))
    sub = parse_submission(data, inline=False)
    assert (sub.revision, sub.status, sub.holder.type_code, sub.result_delivery_code) == (3, "4", "1", "0")
    assert sub.holder.portal_account_id == "12345"
    assert sub.files[0].id == "981"


def test_empty_strings_are_absent_values() -> None:
    sub = parse_submission(record(LoaiDoiTuong="", HinhThuc="", SoDienThoai="", Email="", MaDoiTuong="",
                                  DiaChiChuHoSo="", TrichYeuHoSo="", DinhDanhCHS="", TaiLieuNop=""), inline=False)
    assert sub.holder.type_code is None and sub.result_delivery_code is None
    assert sub.holder.phone is None and sub.holder.identities == ()
    assert sub.files == ()


def test_deleted_files_are_left_out_but_kept_in_raw() -> None:
    data = record()
    data["TaiLieuNop"][1]["IsDeleted"] = "True"
    sub = parse_submission(data, inline=False)
    assert [f.name for f in sub.files] == ["Đơn đề nghị cấp chứng chỉ năng lực.pdf", "Bảng kê kinh nghiệm.pdf"]
    assert len(sub.raw["TaiLieuNop"]) == 3


def test_the_digest_is_lower_case() -> None:
    data = record()
    data["TaiLieuNop"][0]["MaBam"] = sha(APPLICATION).upper()
    assert parse_submission(data, inline=False).files[0].sha256 == sha(APPLICATION)


def setter(path: str, value: Any):
    """A mutation of a record: ``path`` like ``TaiLieuNop.1.MaBam``; a value of DELETE removes the key."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is DELETE:
            del target[key]
        else:
            target[key] = value

    mutate.__name__ = f"{path}={value!r}"[:60]
    return mutate


class _Delete:
    def __repr__(self) -> str:  # a stable test id: parallel workers must collect the same ids
        return "DELETE"


DELETE = _Delete()


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (setter("MaHoSo", DELETE), "MaHoSo", "missing_field"),
        (setter("MaHoSo", "000.00.01.G12 201005 0001"), "MaHoSo", "bad_format"),
        (setter("MaHoSo", NO + "\n"), "MaHoSo", "bad_format"),
        (setter("MaHoSo", 20100501), "MaHoSo", "wrong_type"),
        (setter("PhienBan", DELETE), "PhienBan", "missing_field"),
        (setter("PhienBan", "v2"), "PhienBan", "bad_format"),
        (setter("PhienBan", " 2"), "PhienBan", "bad_format"),
        (setter("PhienBan", "٣"), "PhienBan", "bad_format"),  # an Arabic-Indic digit
        (setter("PhienBan", 1.5), "PhienBan", "wrong_type"),
        (setter("PhienBan", -1), "PhienBan", "out_of_range"),
        (setter("PhienBan", False), "PhienBan", "wrong_type"),
        (setter("MaTTHC", DELETE), "MaTTHC", "missing_field"),
        (setter("MaTTHC", "1.009972/000"), "MaTTHC", "bad_format"),
        (setter("DonViXuLy", DELETE), "DonViXuLy", "missing_field"),
        (setter("DonViXuLy", "Cục Quản lý hoạt động xây dựng"), "DonViXuLy", "bad_format"),
        (setter("DonViXuLy", "000"), "DonViXuLy", "bad_format"),
        (setter("NgayNopHoSo", DELETE), "NgayNopHoSo", "missing_field"),
        (setter("NgayNopHoSo", "05/10/2020 08:30"), "NgayNopHoSo", "bad_format"),
        (setter("NgayNopHoSo", 20201005083000), "NgayNopHoSo", "wrong_type"),
        (setter("NgayNopHoSo", "20201305083000"), "NgayNopHoSo", "bad_date"),
        (setter("NgayNopHoSo", "19991231235959"), "NgayNopHoSo", "out_of_range"),
        (setter("TrangThaiHoSo", DELETE), "TrangThaiHoSo", "missing_field"),
        (setter("TrangThaiHoSo", "0"), "TrangThaiHoSo", "out_of_range"),
        (setter("TrangThaiHoSo", 11), "TrangThaiHoSo", "out_of_range"),
        (setter("ChuHoSo", DELETE), "ChuHoSo", "missing_field"),
        (setter("ChuHoSo", "   "), "ChuHoSo", "missing_field"),
        (setter("ChuHoSo", "Nguyễn\x00Văn An"), "ChuHoSo", "bad_format"),
        (setter("ChuHoSo", "Nguyễn Văn An\u2028"), "ChuHoSo", "bad_format"),
        (setter("ChuHoSo", "A" * 4001), "ChuHoSo", "too_long"),
        (setter("ChuHoSo", ["Nguyễn Văn An"]), "ChuHoSo", "wrong_type"),
        (setter("LoaiDoiTuong", "5"), "LoaiDoiTuong", "out_of_range"),
        (setter("LoaiDoiTuong", "công dân"), "LoaiDoiTuong", "bad_format"),
        (setter("HinhThuc", 2), "HinhThuc", "out_of_range"),
        (setter("SoDienThoai", "0" * 65), "SoDienThoai", "too_long"),
        (setter("SoDienThoai", 912345678), "SoDienThoai", "wrong_type"),
        (setter("Email", "a@b.vn\r\nBcc: x@y.vn"), "Email", "bad_format"),
        (setter("MaDoiTuong", "x" * 101), "MaDoiTuong", "too_long"),
        (setter("DiaChiChuHoSo", "Hà Nội" * 400), "DiaChiChuHoSo", "too_long"),
        (setter("TrichYeuHoSo", "x" * 20001), "TrichYeuHoSo", "too_long"),
        (setter("TrichYeuHoSo", "Đề nghị\x1b[31m"), "TrichYeuHoSo", "bad_format"),
        (setter("DinhDanhCHS", {"LoaiDinhDanh": "1"}), "DinhDanhCHS", "wrong_type"),
        (setter("DinhDanhCHS", [{"SoDinhDanh": ID_NUMBER}] * 11), "DinhDanhCHS", "too_many_items"),
        (setter("DinhDanhCHS", [ID_NUMBER]), "DinhDanhCHS[0]", "wrong_type"),
        (setter("DinhDanhCHS.0.LoaiDinhDanh", DELETE), "DinhDanhCHS[0].LoaiDinhDanh", "missing_field"),
        (setter("DinhDanhCHS.0.LoaiDinhDanh", "CCCD mới"), "DinhDanhCHS[0].LoaiDinhDanh", "bad_format"),
        (setter("DinhDanhCHS.0.SoDinhDanh", DELETE), "DinhDanhCHS[0].SoDinhDanh", "missing_field"),
        (setter("DinhDanhCHS.0.SoDinhDanh", 1189012345), "DinhDanhCHS[0].SoDinhDanh", "wrong_type"),
        (setter("DinhDanhCHS.0.SoDinhDanh", "1" * 65), "DinhDanhCHS[0].SoDinhDanh", "too_long"),
        (setter("TaiLieuNop", {"0": {}}), "TaiLieuNop", "wrong_type"),
        (setter("TaiLieuNop.1", "Giấy chứng nhận.pdf"), "TaiLieuNop[1]", "wrong_type"),
        (setter("TaiLieuNop.1.TepDinhKemId", DELETE), "TaiLieuNop[1].TepDinhKemId", "missing_field"),
        (setter("TaiLieuNop.1.TepDinhKemId", -4), "TaiLieuNop[1].TepDinhKemId", "out_of_range"),
        (setter("TaiLieuNop.1.TepDinhKemId", "f3b1c0de-0000-4000-8000-000000000000"), "TaiLieuNop[1].TepDinhKemId",
         "duplicate_file"),
        (setter("TaiLieuNop.1.TenTepDinhKem", ""), "TaiLieuNop[1].TenTepDinhKem", "missing_field"),
        (setter("TaiLieuNop.1.TenTepDinhKem", "a" * 4001), "TaiLieuNop[1].TenTepDinhKem", "too_long"),
        (setter("TaiLieuNop.1.MaThanhPhanHoSo", "TP" * 101), "TaiLieuNop[1].MaThanhPhanHoSo", "too_long"),
        (setter("TaiLieuNop.1.IsDeleted", "Có"), "TaiLieuNop[1].IsDeleted", "bad_format"),
        (setter("TaiLieuNop.1.KichThuoc", DELETE), "TaiLieuNop[1].KichThuoc", "missing_field"),
        (setter("TaiLieuNop.1.KichThuoc", "12 kB"), "TaiLieuNop[1].KichThuoc", "bad_format"),
        (setter("TaiLieuNop.1.KichThuoc", 12.5), "TaiLieuNop[1].KichThuoc", "wrong_type"),
        (setter("TaiLieuNop.1.KichThuoc", 20 * 1024 * 1024 + 1), "TaiLieuNop[1].KichThuoc", "file_too_large"),
        (setter("TaiLieuNop.1.MaBam", DELETE), "TaiLieuNop[1].MaBam", "missing_field"),
        (setter("TaiLieuNop.1.MaBam", "md5:" + "0" * 60), "TaiLieuNop[1].MaBam", "bad_format"),
        (setter("TaiLieuNop.1.MaBam", "0" * 63), "TaiLieuNop[1].MaBam", "bad_format"),
        (setter("TaiLieuNop.1.DuongDanTaiTepTin", DELETE), "TaiLieuNop[1].DuongDanTaiTepTin", "missing_field"),
        (setter("TaiLieuNop.1.DuongDanTaiTepTin", "/a\x00b"), "TaiLieuNop[1].DuongDanTaiTepTin", "bad_format"),
        (setter("GhiChu", float("nan")), "GhiChu", "wrong_type"),
        (setter("GhiChu", 2**64), "GhiChu", "out_of_range"),
        (setter("GhiChu", "\ud800"), "GhiChu", "bad_format"),
        (setter("ThongTinKhac", {"a": [[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]}), "ThongTinKhac.a[0][0][0][0][0][0][0][0][0]"
         "[0][0][0][0][0]", "too_deep"),
        (setter("GhiChu", "Ghi chú " * 30_000), "(record)", "record_too_large"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if callable(v) else None,
)
def test_each_broken_rule_names_the_field_and_the_reason(mutate, field: str, reason: str) -> None:
    data = record()
    mutate(data)
    error = rejected(data)
    assert (error.field, error.reason) == (field, reason)
    assert error.kind == "invalid_input"


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (setter("TaiLieuNop.0.Base64", DELETE), "TaiLieuNop[0].Base64", "missing_field"),
        (setter("TaiLieuNop.0.Base64", 42), "TaiLieuNop[0].Base64", "wrong_type"),
        (setter("TaiLieuNop.0.Base64", "SGVsbG8=\n"), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "SGVs bG8="), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "SGVsbG8"), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "SG=sbG8="), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "SGVsbG8=AAAA"), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "===="), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "SGVsbG8_"), "TaiLieuNop[0].Base64", "bad_base64"),  # URL-safe alphabet
        (setter("TaiLieuNop.0.Base64", "SGVsbMOg8="), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.Base64", "ŞGVsbG8="), "TaiLieuNop[0].Base64", "bad_base64"),
        (setter("TaiLieuNop.0.KichThuoc", len(APPLICATION) + 1), "TaiLieuNop[0].KichThuoc", "file_size_mismatch"),
        (setter("TaiLieuNop.0.MaBam", sha(b"another file")), "TaiLieuNop[0].MaBam", "file_sha256_mismatch"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if callable(v) else None,
)
def test_pushed_files_are_decoded_strictly_and_checked(mutate, field: str, reason: str) -> None:
    data = record(inline=True)
    mutate(data)
    error = rejected(data, inline=True)
    assert (error.field, error.reason) == (field, reason)


def test_an_inline_file_without_size_and_digest_is_still_decoded_strictly() -> None:
    data = record(inline=True)
    del data["TaiLieuNop"][2]["KichThuoc"], data["TaiLieuNop"][2]["MaBam"]
    data["TaiLieuNop"][2]["Base64"] = "SGVsbG8=AAAA"
    assert (rejected(data, inline=True).field, rejected(data, inline=True).reason) == (
        "TaiLieuNop[2].Base64", "bad_base64")


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("decoded although the size was already over the limit")

    monkeypatch.setattr(submissions.binascii, "a2b_base64", refuse)


def test_a_file_over_the_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = Limits(max_file_bytes=len(CERTIFICATE) - 1)
    no_decoding(monkeypatch)
    error = rejected(record(inline=True), inline=True, limits=limits)
    assert (error.field, error.reason) == ("TaiLieuNop[1].KichThuoc", "file_too_large")  # declared too large
    data = record(inline=True)
    del data["TaiLieuNop"][1]["KichThuoc"]
    error = rejected(data, inline=True, limits=limits)  # one byte over: counted from the base64 text
    assert (error.field, error.reason) == ("TaiLieuNop[1].Base64", "file_too_large")
    data["TaiLieuNop"][1]["Base64"] = "A" * (4 * 1024 * 1024)  # far beyond
    error = rejected(data, inline=True, limits=limits)
    assert (error.field, error.reason) == ("TaiLieuNop[1].Base64", "file_too_large")


def test_a_file_at_the_limit_is_accepted() -> None:
    limits = Limits(max_file_bytes=max(map(len, CONTENTS)))
    sub = parse_submission(record(inline=True), inline=True, limits=limits)
    assert max(f.size for f in sub.files) == limits.max_file_bytes
    assert parse_submission(record(), inline=False, limits=limits).files[1].size == limits.max_file_bytes


def test_a_dossier_over_the_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = Limits(max_dossier_bytes=sum(map(len, CONTENTS)) - 1)
    no_decoding(monkeypatch)
    error = rejected(record(inline=True), inline=True, limits=limits)
    assert (error.field, error.reason) == ("TaiLieuNop", "dossier_too_large")


def test_the_declared_sizes_decide_a_polled_dossier_s_size() -> None:
    limits = Limits(max_dossier_bytes=sum(map(len, CONTENTS)) - 1)
    assert rejected(record(), limits=limits).reason == "dossier_too_large"
    assert parse_submission(record(), inline=False, limits=Limits(max_dossier_bytes=sum(map(len, CONTENTS))))


def test_too_many_files_are_refused() -> None:
    data = record()
    data["TaiLieuNop"] = [dict(data["TaiLieuNop"][0], TepDinhKemId=str(i)) for i in range(4)]
    assert parse_submission(data, inline=False, limits=Limits(max_files=4))
    error = rejected(data, limits=Limits(max_files=3))
    assert (error.field, error.reason) == ("TaiLieuNop", "too_many_files")


def test_a_record_that_is_not_an_object_is_refused() -> None:
    for value in (None, [record()], "MaHoSo", 1):
        error = rejected(value)
        assert (error.field, error.reason) == ("(record)", "wrong_type")


def test_a_rejection_names_the_revision_once_known() -> None:
    error = rejected(record(TrangThaiHoSo="99"))
    assert (error.dossier_no, error.revision) == (NO, 2)
    error = rejected(record(PhienBan="hai"))
    assert (error.dossier_no, error.revision) == (NO, None)


SECRETS = {"SoDienThoai": PHONE + "9" * 60, "Email": "e" * 400 + "@x.vn", "MaDoiTuong": "z" * 101,
           "ChuHoSo": "Nguyễn Văn An\x00" + ID_NUMBER, "DiaChiChuHoSo": "\x07" + ID_NUMBER,
           "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": ID_NUMBER * 6}], "PhienBan": ID_NUMBER + "x",
           "NgayNopHoSo": ID_NUMBER + "99", "MaHoSo": ID_NUMBER + " 0912"}


@pytest.mark.parametrize("key", sorted(SECRETS))
def test_an_error_never_quotes_the_value(key: str) -> None:
    error = rejected(record(**{key: SECRETS[key]}))
    for text in (str(error), error.message, error.field or ""):
        assert ID_NUMBER not in text and PHONE not in text and "eeee" not in text and "zzzz" not in text


def test_keys_that_are_not_field_names_are_not_quoted() -> None:
    error = rejected(record(ThongTinKhac={ID_NUMBER + " CCCD": float("inf")}))
    assert error.field == "ThongTinKhac.(key)"


# --- LayTaiLieuHoSo -------------------------------------------------------------------------------------------


def file_reply(content: bytes = CERTIFICATE, **overrides: Any) -> dict[str, Any]:
    reply = {"error_code": 0, "message": "Thành công",
             "TepTinDinhKem": [{"TenTep": "Giấy chứng nhận đăng ký doanh nghiệp.pdf", "Base64": b64(content)}]}
    reply.update(overrides)
    return reply


@pytest.mark.parametrize("code", [0, "0", "00", None])
def test_a_file_reply_gives_the_bytes(code: Any) -> None:
    assert decode_file_reply(file_reply(error_code=code)) == CERTIFICATE


def test_a_file_reply_without_error_code_gives_the_bytes() -> None:
    reply = file_reply()
    del reply["error_code"]
    assert decode_file_reply(reply) == CERTIFICATE


def test_only_the_first_file_of_a_reply_is_taken() -> None:
    reply = file_reply()
    reply["TepTinDinhKem"].append({"TenTep": "khác.pdf", "Base64": "!!"})
    assert decode_file_reply(reply) == CERTIFICATE


@pytest.mark.parametrize(
    ("reply", "field", "reason"),
    [
        ([file_reply()], "(reply)", "wrong_type"),
        (file_reply(error_code=-1, message=f"Không tìm thấy tệp của {ID_NUMBER}"), "error_code", "portal_error"),
        (file_reply(error_code="99"), "error_code", "portal_error"),
        (file_reply(error_code=False), "error_code", "portal_error"),
        (file_reply(TepTinDinhKem=[]), "TepTinDinhKem", "no_file"),
        (file_reply(TepTinDinhKem=None), "TepTinDinhKem", "no_file"),
        (file_reply(TepTinDinhKem={"Base64": ""}), "TepTinDinhKem", "wrong_type"),
        (file_reply(TepTinDinhKem=["SGVsbG8="]), "TepTinDinhKem[0]", "wrong_type"),
        (file_reply(TepTinDinhKem=[{"TenTep": "a.pdf"}]), "TepTinDinhKem[0].Base64", "missing_field"),
        (file_reply(TepTinDinhKem=[{"TenTep": 7, "Base64": ""}]), "TepTinDinhKem[0].TenTep", "wrong_type"),
        (file_reply(TepTinDinhKem=[{"Base64": "SGVsbG8=\r\n"}]), "TepTinDinhKem[0].Base64", "bad_base64"),
        (file_reply(TepTinDinhKem=[{"Base64": "data:application/pdf;base64,SGVsbG8="}]), "TepTinDinhKem[0].Base64",
         "bad_base64"),
        (file_reply(content=b"x" * 31), "TepTinDinhKem[0].Base64", "file_too_large"),
    ],
)
def test_a_bad_file_reply_is_refused(reply: Any, field: str, reason: str) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        decode_file_reply(reply, Limits(max_file_bytes=30))
    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert ID_NUMBER not in str(caught.value)


def test_an_empty_file_is_a_file() -> None:
    assert decode_file_reply(file_reply(content=b"")) == b""


# --- check_file -----------------------------------------------------------------------------------------------


def declared_file(content: bytes = TABLE, **overrides: Any) -> DeclaredFile:
    values: dict[str, Any] = {"id": "7", "name": "Bảng kê kinh nghiệm.pdf", "component_code": "TP03",
                              "size": len(content), "sha256": sha(content), "path": "/dvcqg/tailieu/7"}
    values.update(overrides)
    return DeclaredFile(**values)


def test_a_file_that_matches_passes() -> None:
    check_file(declared_file(), TABLE, field="TaiLieuNop[2]")
    check_file(declared_file(sha256=sha(TABLE).upper()), TABLE, field="TaiLieuNop[2]")


def test_the_size_is_checked_first_then_the_digest() -> None:
    with pytest.raises(InvalidSubmission) as caught:
        check_file(declared_file(), TABLE[:-1], field="TaiLieuNop[2]")
    assert (caught.value.field, caught.value.reason) == ("TaiLieuNop[2].KichThuoc", "file_size_mismatch")
    tampered = bytes([TABLE[0] ^ 1]) + TABLE[1:]
    with pytest.raises(InvalidSubmission) as caught:
        check_file(declared_file(), tampered, field="TaiLieuNop[2]")
    assert (caught.value.field, caught.value.reason) == ("TaiLieuNop[2].MaBam", "file_sha256_mismatch")
    with pytest.raises(InvalidSubmission) as caught:
        check_file(declared_file(sha256="ẞ" * 64), TABLE, field="TaiLieuNop[2]")
    assert caught.value.reason == "file_sha256_mismatch"


def test_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = submissions.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(submissions.hmac, "compare_digest", spy)
    check_file(declared_file(), TABLE, field="TaiLieuNop[2]")
    assert calls == [(sha(TABLE), sha(TABLE))]


# --- plan_inline ----------------------------------------------------------------------------------------------


def blobs(*sizes: int) -> list[tuple[DeclaredFile, bytes]]:
    out = []
    for index, size in enumerate(sizes):
        content = bytes([index % 256]) * size
        out.append((declared_file(content, id=str(index), name=f"Bản vẽ thiết kế {index}.pdf"), content))
    return out


def test_small_files_go_inline_and_large_ones_apart() -> None:
    limits = Limits(max_inline_bytes=1000)
    assert plan_inline(blobs(10, 1000, 1001, 0), limits) == [True, True, False, True]


def test_nothing_goes_inline_when_inline_is_off() -> None:
    assert plan_inline(blobs(1, 2), Limits(max_inline_bytes=0)) == [False, False]


def test_the_record_budget_keeps_the_smallest_files_inline() -> None:
    limits = Limits(max_inline_bytes=200 * 1024, max_record_bytes=400 * 1024)  # conservative margin: 208 KiB
    plan = plan_inline(blobs(90_000, 20_000, 60_000, 90_000, 5_000), limits)
    assert plan == [False, True, True, False, True]
    assert plan == plan_inline(blobs(90_000, 20_000, 60_000, 90_000, 5_000), limits)


def test_with_the_submission_the_rest_of_the_record_is_counted_exactly() -> None:
    """The default margin assumes the largest national record; the real one is small, so a file at the inline
    limit still travels inline, and the record still fits."""
    content = bytes(range(256)) * (512 * 4)  # 512 KiB
    data = record(inline=True)
    data["TaiLieuNop"] = [file_item(0, content, "Hồ sơ thiết kế.pdf", "TP01", inline=True)]
    sub = parse_submission(data, inline=True)
    files = [(sub.files[0], content)]
    assert plan_inline(files, submissions.DEFAULT_LIMITS) == [False]
    assert plan_inline(files, submissions.DEFAULT_LIMITS, submission=sub) == [True]
    document = submission_document(sub, [(sub.files[0], content, None)], received_via="push",
                                   received_at=RECEIVED_AT, mappings=MAPPINGS)
    assert len(encode_document(document)) <= submissions.DEFAULT_LIMITS.max_record_bytes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 24 * 1024), max_size=12), exact=st.booleans(),
       summary=st.text(max_size=2000).filter(lambda s: s.strip() and not submissions._TEXT_FORBIDDEN.search(s)))
def test_a_planned_record_always_fits(sizes: list[int], exact: bool, summary: str) -> None:
    limits = Limits(max_inline_bytes=16 * 1024, max_record_bytes=64 * 1024)
    contents = [bytes([i]) * size for i, size in enumerate(sizes)]
    items = [file_item(i, c, f"Tài liệu {i}.pdf", "TP01", inline=True) for i, c in enumerate(contents)]
    data = record(inline=True, TrichYeuHoSo=summary, TaiLieuNop=items)
    sub = parse_submission(data, inline=True, limits=Limits(max_record_bytes=64 * 1024))
    files = [(f, c) for f, c in zip(sub.files, contents, strict=True)]
    plan = plan_inline(files, limits, submission=sub if exact else None)
    assert plan == plan_inline(files, limits, submission=sub if exact else None)
    assert all(len(c) <= limits.max_inline_bytes for c, inline in zip(contents, plan, strict=True) if inline)
    path = "/var/lib/portal-sync/attachments/" + "e" * 64 + "/" * 900  # near the longest path allowed
    document = submission_document(sub, [(f, c, None if inline else path) for (f, c), inline
                                         in zip(files, plan, strict=True)],
                                   received_via="push", received_at=RECEIVED_AT, mappings=MAPPINGS)
    assert len(encode_document(document, limits)) <= limits.max_record_bytes


# --- the published record -------------------------------------------------------------------------------------


def test_a_polled_business_submission_becomes_a_valid_record() -> None:
    sub = parse_submission(record(), inline=False)
    document = submission_document(sub, placed(sub, CONTENTS, stored={1}), received_via="poll",
                                   received_at=RECEIVED_AT, mappings=MAPPINGS)
    validate_document(document)
    assert document["schema_version"] == 1
    assert document["event_type"] == "submission.received"
    assert document["event_id"] == str(uuid.uuid5(SUBMISSION_NAMESPACE, f"{NO}:2"))
    assert document["occurred_at"] == "2020-10-05T02:00:05+00:00"
    assert (document["source"], document["received_via"]) == ("dvcqg", "poll")
    s = document["submission"]
    assert (s["no"], s["revision"], s["procedure_code"], s["local_procedure_code"], s["agency_code"]) == (
        NO, 2, "1.009972.000.00.00.G12", "BXD-NLHD-01", AGENCY)
    assert (s["submitted_at"], s["status"], s["channel"], s["result_delivery"]) == (
        "2020-10-05T08:30:00+07:00", "1", "online", "postal")
    assert s["applicant"] == {"type": "business", "name": "Công ty Cổ phần Xây dựng Sông Hồng",
                              "id_number": "0101234567", "phone": PHONE, "email": "phaply@songhong.example.vn",
                              "portal_account_id": "dvcqg-7f3a9c21",
                              "address": "Số 12 Nguyễn Trãi, phường Thượng Đình, quận Thanh Xuân, Hà Nội"}
    assert s["summary"].startswith("Đề nghị cấp chứng chỉ năng lực")
    first, second, third = s["documents"]
    assert first == {"id": "f3b1c0de-0000-4000-8000-000000000000", "name": "Đơn đề nghị cấp chứng chỉ năng lực.pdf",
                     "component_code": "TP01", "size": len(APPLICATION), "sha256": sha(APPLICATION),
                     "content_base64": b64(APPLICATION)}
    assert second["path"] == f"/var/lib/portal-sync/attachments/{sha(CERTIFICATE)}"
    assert "content_base64" not in second and "path" not in third
    assert document["national"] == record()
    value = encode_document(document)
    assert json.loads(value) == document
    assert "Sông Hồng".encode() in value  # UTF-8, not \u escapes
    assert value == json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def test_a_pushed_citizen_submission_becomes_a_valid_record() -> None:
    data = citizen_record(inline=True)
    data["DinhDanhCHS"] = [{"LoaiDinhDanh": "9", "SoDinhDanh": "B1234567"},
                           {"LoaiDinhDanh": "1", "SoDinhDanh": ID_NUMBER}]
    sub = parse_submission(data, inline=True)
    document = submission_document(sub, placed(sub, CONTENTS), received_via="push", received_at=RECEIVED_AT,
                                   mappings=MAPPINGS)
    s = document["submission"]
    assert (s["local_procedure_code"], s["result_delivery"]) == ("BXD-NOCV-01", "counter")
    assert s["applicant"]["type"] == "citizen"
    assert s["applicant"]["id_number"] == ID_NUMBER  # the citizen identity type of codes.identity_types
    assert all("Base64" not in item for item in document["national"]["TaiLieuNop"])
    assert [d["content_base64"] for d in s["documents"]] == [b64(c) for c in CONTENTS]


def test_unmapped_and_absent_codes_become_null() -> None:
    sub = parse_submission(record(MaTTHC="2.000298.000.00.00.H56", LoaiDoiTuong="", HinhThuc=None,
                                  DinhDanhCHS=[], SoDienThoai="", TrichYeuHoSo=""), inline=False)
    s = submission_document(sub, placed(sub, CONTENTS), received_via="poll", received_at=RECEIVED_AT,
                            mappings=MAPPINGS)["submission"]
    assert s["local_procedure_code"] is None
    assert s["result_delivery"] is None
    assert s["applicant"]["type"] is None and s["applicant"]["id_number"] is None and s["applicant"]["phone"] is None
    assert s["summary"] is None


def test_a_national_code_shared_by_two_procedures_maps_to_the_smallest_local_code() -> None:
    procedures = dict(MAPPINGS.procedures)
    procedures["BXD-NLHD-00"] = procedures["BXD-NLHD-01"]
    mappings = MAPPINGS.model_copy(update={"procedures": procedures})
    sub = parse_submission(record(), inline=False)
    document = submission_document(sub, placed(sub, CONTENTS), received_via="poll", received_at=RECEIVED_AT,
                                   mappings=mappings)
    assert document["submission"]["local_procedure_code"] == "BXD-NLHD-00"


def test_a_local_code_outside_the_schema_vocabulary_is_never_published() -> None:
    codes = MAPPINGS.codes.model_copy(update={"applicant_types": {**MAPPINGS.codes.applicant_types, "aaa": "2"}})
    sub = parse_submission(record(), inline=False)
    document = submission_document(sub, placed(sub, CONTENTS), received_via="poll", received_at=RECEIVED_AT,
                                   mappings=MAPPINGS.model_copy(update={"codes": codes}))
    assert document["submission"]["applicant"]["type"] == "business"


def test_the_event_id_is_stable_per_revision() -> None:
    sub = parse_submission(record(), inline=False)
    later = submission_document(sub, placed(sub, CONTENTS), received_via="push",
                                received_at=RECEIVED_AT + timedelta(days=1), mappings=MAPPINGS)
    first = submission_document(sub, placed(sub, CONTENTS), received_via="poll", received_at=RECEIVED_AT,
                                mappings=MAPPINGS)
    amended = parse_submission(record(PhienBan="3"), inline=False)
    third = submission_document(amended, placed(amended, CONTENTS), received_via="poll", received_at=RECEIVED_AT,
                                mappings=MAPPINGS)
    assert first["event_id"] == later["event_id"] != third["event_id"]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"received_at": datetime(2020, 10, 5, 9, 0)}, "received_at", "bad_format"),
        ({"received_via": "email"}, "received_via", "bad_format"),
        ({"files": "drop"}, "documents", "files_mismatch"),
        ({"files": "swap"}, "documents", "files_mismatch"),
        ({"files": "short"}, "documents[0].size", "file_size_mismatch"),
        ({"files": "tampered"}, "documents[0].MaBam", "file_sha256_mismatch"),
        ({"path": "/var/lib/x\n/y"}, "documents[1].path", "bad_path"),
        ({"path": ""}, "documents[1].path", "bad_path"),
        ({"path": "/" + "đ" * 600}, "documents[1].path", "bad_path"),
        ({"received_at": datetime(2100, 1, 1, tzinfo=UTC)}, "occurred_at", "schema"),
    ],
)
def test_a_record_that_cannot_be_built_is_refused(change: dict[str, Any], field: str, reason: str) -> None:
    sub = parse_submission(record(), inline=False)
    files = placed(sub, CONTENTS, stored={1})
    mode = change.get("files")
    if mode == "drop":
        files = files[:2]
    elif mode == "swap":
        files = [files[1], files[0], files[2]]
    elif mode == "short":
        files[0] = (files[0][0], APPLICATION[:-1], None)
    elif mode == "tampered":
        files[0] = (files[0][0], b"X" + APPLICATION[1:], None)
    if "path" in change:
        files[1] = (files[1][0], files[1][1], change["path"])
    with pytest.raises(InvalidSubmission) as caught:
        submission_document(sub, files, received_via=change.get("received_via", "poll"),
                            received_at=change.get("received_at", RECEIVED_AT), mappings=MAPPINGS)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def valid_document() -> dict[str, Any]:
    sub = parse_submission(record(), inline=False)
    return submission_document(sub, placed(sub, CONTENTS, stored={1}), received_via="poll",
                               received_at=RECEIVED_AT, mappings=MAPPINGS)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(published.SUBMISSION_SCHEMA.read_text("utf-8")))


def test_a_real_document_validates_with_both_validators() -> None:
    document = json.loads(encode_document(valid_document()))
    validate_document(document)
    assert published._fast_validator().is_valid(document)
    assert published._validator().is_valid(document)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("national", DELETE, "(document)"),
        ("schema_version", 2, "schema_version"),
        ("event_type", "dossier.received", "event_type"),
        ("received_via", "kafka", "received_via"),
        ("source", "local", "source"),
        ("occurred_at", "2020-10-05 09:00", "occurred_at"),
        ("extra", 1, "(document)"),
        ("submission.status", "11", "submission.status"),
        ("submission.status", 1, "submission.status"),
        ("submission.no", NO + "\n", "(document)"),  # Python's "$" admits a final newline; the Rust check does not
        ("submission.no", NO + " ", "submission.no"),
        ("submission.revision", -1, "submission.revision"),
        ("submission.submitted_at", "2020-10-05T01:30:00+00:00", "submission.submitted_at"),
        ("submission.channel", "email", "submission.channel"),
        ("submission.agency_code", "Cục Quản lý hoạt động xây dựng", "submission.agency_code"),
        ("submission.result_delivery", "drone", "submission.result_delivery"),
        ("submission.applicant.type", "robot", "submission.applicant.type"),
        ("submission.applicant.name", "", "submission.applicant.name"),
        ("submission.applicant.id_number", DELETE, "submission.applicant"),
        ("submission.applicant.nationality", "VN", "submission.applicant"),
        ("submission.documents.0.sha256", sha(APPLICATION).upper(), "submission.documents.0.sha256"),
        ("submission.documents.0.path", "/var/lib/x", "submission.documents.0"),
        ("submission.documents.1.path", DELETE, "submission.documents.1"),
        ("submission.documents.0.content_base64", "SGVsbG8", "submission.documents.0.content_base64"),
        ("submission.documents.0.content_base64", "SGVsbG8=", "submission.documents.0.content_base64"),
        ("submission.documents.0.size", -1, "submission.documents.0.size"),
        ("event_id", "00000000-0000-4000-8000-000000000000", "event_id"),  # a fixed id: stable test ids
    ],
)
def test_a_broken_document_does_not_validate(path: str, value: Any, field: str) -> None:
    document = valid_document()
    setter(path, value)(document)
    with pytest.raises(InvalidSubmission) as caught:
        validate_document(document)
    assert caught.value.reason == "schema"
    assert caught.value.field == field


def test_something_that_is_not_a_document_does_not_validate() -> None:
    for value in (None, [], "submission", {"schema_version": 1}):
        with pytest.raises(InvalidSubmission):
            validate_document(value)


def test_message_ids_name_the_revision() -> None:
    assert message_id(NO, 2) == f"submission:{NO}:2"
    for no, revision in ((NO, -1), (NO, True), ("a b", 1), (NO + "\n", 1)):
        with pytest.raises(InvalidSubmission):
            message_id(no, revision)


def test_a_record_over_the_limit_is_refused() -> None:
    document = valid_document()
    size = len(encode_document(document))
    assert len(encode_document(document, Limits(max_record_bytes=size))) == size
    with pytest.raises(InvalidSubmission) as caught:
        encode_document(document, Limits(max_record_bytes=size - 1))
    assert caught.value.reason == "record_too_large"


def test_a_record_that_is_not_json_is_refused() -> None:
    for bad in ({"x": "\udc80"}, {"x": float("nan")}, {"x": {1, 2}}):
        with pytest.raises(InvalidSubmission) as caught:
            encode_document(bad)
        assert caught.value.reason == "unencodable"


def test_limits_are_checked() -> None:
    for bad in ({"max_files": 0}, {"max_record_bytes": -1}, {"max_file_bytes": True}, {"max_inline_bytes": 1.5}):
        with pytest.raises(ValueError, match="Limits"):
            Limits(**bad)
    assert Limits(max_inline_bytes=0).max_national_bytes == 900 * 1024 // 4


# --- hostile JSON, generated ------------------------------------------------------------------------------------

RECORD_FIELDS = ["MaHoSo", "PhienBan", "MaTTHC", "DonViXuLy", "NgayNopHoSo", "TrangThaiHoSo", "ChuHoSo",
                 "LoaiDoiTuong", "HinhThuc", "DinhDanhCHS", "LoaiDinhDanh", "SoDinhDanh", "TaiLieuNop",
                 "TepDinhKemId", "TenTepDinhKem", "MaThanhPhanHoSo", "KichThuoc", "MaBam", "DuongDanTaiTepTin",
                 "Base64", "IsDeleted", "SoDienThoai", "Email", "MaDoiTuong", "DiaChiChuHoSo", "TrichYeuHoSo",
                 "error_code", "message", "TepTinDinhKem", "TenTep", "result"]
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()) | st.characters(categories=["Cs"]), max_size=20)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | ANY_TEXT
           | st.sampled_from(["", "0", "00", "1", "10", "2", "True", "False", NO, AGENCY, "20201005083000",
                              "1.009972.000.00.00.G12", "SGVsbG8=", "SGVsbG8", "====", sha(TABLE),
                              "Nguyễn Văn An", "  ", "\x00"]))
KEYS = st.sampled_from(RECORD_FIELDS) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
                    max_leaves=25)


def only_invalid_submission(call, *args: Any, **kwargs: Any) -> Any:
    """The call's value, or the InvalidSubmission it raised; any other exception fails the test."""
    try:
        return call(*args, **kwargs)
    except InvalidSubmission as error:
        named = error
    assert named.reason and named.field
    return named


@settings(max_examples=400, deadline=None)
@given(value=JSON, inline=st.booleans())
def test_arbitrary_json_into_parse_submission_is_a_submission_or_a_rejection(value: Any, inline: bool) -> None:
    result = only_invalid_submission(parse_submission, value, inline=inline)
    assert isinstance(result, NationalSubmission | InvalidSubmission)


@settings(max_examples=400, deadline=None)
@given(value=JSON | st.lists(st.dictionaries(KEYS, JSON, max_size=6), max_size=4))
def test_arbitrary_json_into_parse_listing_is_a_listing_or_a_rejection(value: Any) -> None:
    result = only_invalid_submission(parse_listing, value)
    if not isinstance(result, InvalidSubmission):
        items, problems = result
        assert len(items) + len(problems) == (len(value) if isinstance(value, list) else 0)
        assert all(isinstance(p, InvalidSubmission) and p.field.startswith("result[") for p in problems)


@settings(max_examples=400, deadline=None)
@given(value=JSON | st.fixed_dictionaries({"error_code": JSON, "TepTinDinhKem": st.lists(
    st.fixed_dictionaries({"TenTep": JSON, "Base64": JSON | st.binary(max_size=40).map(b64)}), max_size=2)}))
def test_arbitrary_json_into_decode_file_reply_is_bytes_or_a_rejection(value: Any) -> None:
    result = only_invalid_submission(decode_file_reply, value)
    assert isinstance(result, bytes | InvalidSubmission)


MUTABLE_PATHS = [*RECORD_FIELDS[:10], "DinhDanhCHS.0", "DinhDanhCHS.0.LoaiDinhDanh", "DinhDanhCHS.0.SoDinhDanh",
                 "TaiLieuNop.0", "TaiLieuNop.1.TepDinhKemId", "TaiLieuNop.1.TenTepDinhKem", "TaiLieuNop.1.KichThuoc",
                 "TaiLieuNop.2.MaBam", "TaiLieuNop.2.DuongDanTaiTepTin", "TaiLieuNop.2.Base64",
                 "TaiLieuNop.0.IsDeleted", "TaiLieuNop.0.MaThanhPhanHoSo", "SoDienThoai", "Email", "MaDoiTuong"]


@settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(MUTABLE_PATHS), value=JSON, inline=st.booleans())
def test_a_valid_record_with_one_value_replaced_is_a_submission_or_a_rejection(path: str, value: Any,
                                                                             inline: bool) -> None:
    data = record(inline=inline)
    setter(path, value)(data)
    result = only_invalid_submission(parse_submission, data, inline=inline)
    if isinstance(result, NationalSubmission):
        by_digest = {sha(c): c for c in CONTENTS}
        contents = [f.content if inline else by_digest.get(f.sha256) for f in result.files]
        assume(all(c is not None and len(c) == f.size for c, f in zip(contents, result.files, strict=True)))
        document = submission_document(result, placed(result, contents), received_via="push" if inline else "poll",
                                       received_at=RECEIVED_AT, mappings=MAPPINGS)
        validate_document(document)


# --- round trip: a generated valid submission always makes a valid record -----------------------------------

PERSONS = ["Nguyễn Văn An", "Trần Thị Bích Ngọc", "Lê Hoàng Phúc", "Phạm Minh Châu", "Đặng Quốc Bảo",
           "Công ty TNHH Tư vấn Thiết kế Xây dựng Đại Việt", "Viện Khoa học Công nghệ Xây dựng"]
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))


def printable(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(PRINTABLE, min_size=min_size, max_size=max_size).filter(lambda s: s.strip() != "")


def usable_file_name(name: str) -> bool:
    """Not a path that climbs or starts at a root or a drive (the parser's rule, asked)."""
    try:
        submissions._file_name(name, "TenTepDinhKem")
    except InvalidSubmission:
        return False
    return True


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | st.just("") | strategy


@st.composite
def valid_records(draw: st.DrawFn, inline: bool) -> tuple[dict[str, Any], list[bytes]]:
    procedure = draw(st.sampled_from(sorted(MAPPINGS.procedures.values(), key=lambda p: p.national_code)))
    agency = draw(st.sampled_from([AGENCY, "000.00.04.G12", "G12.99", "H56.01.02"]))
    no = agency + "-" + draw(st.from_regex(r"[0-9A-Za-z._/\-]{1,60}", fullmatch=True))
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)))
    count = draw(st.integers(0, 5))
    contents = [draw(st.binary(max_size=3000)) for _ in range(count)]
    files = []
    for index, content in enumerate(contents):
        item: dict[str, Any] = {
            "TepDinhKemId": draw(st.sampled_from([str(index), f"tep-{index}", index])),
            "TenTepDinhKem": draw(st.sampled_from(["Đơn đề nghị.pdf", "Bản vẽ mặt bằng.dwg"])
                                  | printable(1, 300).filter(usable_file_name)),
            "MaThanhPhanHoSo": draw(optional(st.from_regex(r"TP[0-9]{2}", fullmatch=True))),
            "IsDeleted": draw(st.sampled_from(["False", False, "", None])),
        }
        if inline:
            item["Base64"] = b64(content)
            if draw(st.booleans()):
                item["KichThuoc"] = draw(st.sampled_from([len(content), str(len(content))]))
                item["MaBam"] = draw(st.sampled_from([sha(content), sha(content).upper()]))
        else:
            item.update(KichThuoc=len(content), MaBam=sha(content),
                        DuongDanTaiTepTin=draw(st.sampled_from([f"/tailieu/{index}", f"{index}/tệp đính kèm.pdf"])))
        files.append(item)
    data = {
        "MaHoSo": no,
        "PhienBan": draw(st.integers(0, 2**53 - 1) | st.integers(0, 99).map(str)),
        "MaTTHC": draw(st.sampled_from([procedure.national_code, "2.000298.000.00.00.H56"])),
        "TenTTHC": procedure.name,
        "DonViXuLy": agency,
        "NgayNopHoSo": moment.strftime("%Y%m%d%H%M%S"),
        "TrangThaiHoSo": draw(st.integers(1, 10).map(draw(st.sampled_from([str, int])))),
        "ChuHoSo": draw(st.sampled_from(PERSONS) | printable(1, 4000)),
        "LoaiDoiTuong": draw(optional(st.sampled_from(["1", "2", "3", "4", 1, 4]))),
        "HinhThuc": draw(optional(st.sampled_from(["0", "1", 0, 1]))),
        "DinhDanhCHS": draw(optional(st.lists(st.fixed_dictionaries({
            "LoaiDinhDanh": st.sampled_from(["1", "2", 1, "CCCD"]),
            "SoDinhDanh": st.from_regex(r"[0-9]{9,12}", fullmatch=True) | printable(1, 64)}), max_size=3))),
        "SoDienThoai": draw(optional(st.from_regex(r"0[0-9]{9}", fullmatch=True))),
        "Email": draw(optional(printable(1, 320))),
        "MaDoiTuong": draw(optional(printable(1, 100) | st.integers(0, 2**63 - 1))),
        "DiaChiChuHoSo": draw(optional(printable(1, 2000))),
        "TrichYeuHoSo": draw(optional(st.text(st.sampled_from("Đề nghị cấp chứng chỉ\n\t"), max_size=20000)
                                      .filter(str.strip))),
        "GhiChu": draw(st.text(max_size=200)),
        "ThongTinKhac": draw(JSON.filter(lambda v: _plain(v))),
        "TaiLieuNop": files,
    }
    return data, contents


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON the national copy keeps: no NaN, no huge integers, no lone surrogates, not too deep."""
    try:
        json.dumps(value, allow_nan=False).encode("utf-8")
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    if depth > 10:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_plain(v, depth + 1) for v in value.values())
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), inline=st.booleans(), stored=st.sets(st.integers(0, 4)),
       received_at=st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1),
                                timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))])))
def test_a_valid_submission_always_makes_a_valid_record(data: st.DataObject, inline: bool, stored: set[int],
                                                        received_at: datetime) -> None:
    value, contents = data.draw(valid_records(inline))
    sub = parse_submission(value, inline=inline)
    assert len(sub.files) == len(contents)
    for index, (declared, content) in enumerate(zip(sub.files, contents, strict=True)):
        check_file(declared, content, field=f"TaiLieuNop[{index}]")
        assert declared.content == (content if inline else None)
    document = submission_document(sub, placed(sub, contents, stored), received_via="push" if inline else "poll",
                                   received_at=received_at, mappings=MAPPINGS)
    validate_document(document)
    decoded = json.loads(encode_document(document))
    assert decoded == document
    validate_document(decoded)
    assert decoded["submission"]["no"] == value["MaHoSo"]
    assert decoded["event_id"] == str(uuid.uuid5(SUBMISSION_NAMESPACE, f"{sub.no}:{sub.revision}"))
    for entry, content in zip(decoded["submission"]["documents"], contents, strict=True):
        if "content_base64" in entry:
            assert binascii.a2b_base64(entry["content_base64"]) == content
    assert decoded["national"] == without_base64(value)


def without_base64(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_base64(v) for k, v in value.items() if k != "Base64"}
    if isinstance(value, list):
        return [without_base64(v) for v in value]
    return value
