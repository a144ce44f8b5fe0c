"""The simulated adapter's rules for pushed records and progress steps."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from connector.dev.simulator.validation import push_problem, record_problems, step_problems, steps_problem
from tests.factories import portal_record


def record(**changes: Any) -> dict[str, Any]:
    # Every required field (the shared minimal record) plus every optional one and every list.
    base: dict[str, Any] = portal_record(**{
        "SoBienNhan": "",
        "ChuHoSo": "Nguyễn Văn A",
        "NgayTra": "",
        "GhiChu": "",
        "TaiLieuNop": [
            {
                "TepDinhKemId": "f1",
                "TenTepDinhKem": "don.pdf",
                "IsDeleted": "False",
                "MaThanhPhanHoSo": "TP1",
                "DuongDanTaiTepTin": "https://files.example.gov.vn/f1",
            }
        ],
        "DanhSachGiayToKetQua": [
            {
                "TenGiayTo": "Giấy phép",
                "MaThanhPhanHoSo": "",
                "GiayToId": "g1",
                "DuongDanTepTinKetQua": "http://files.example.gov.vn/g1",
            }
        ],
        "DanhSachLePhi": [
            {
                "TenPhiLePhi": "Lệ phí",
                "MaPhiLePhi": "LP1",
                "HinhThucThu": "1",
                "Gia": "50000",
                "LoaiPhiLePhi": "1",
            }
        ],
        "DanhSachTepDinhKemKhac": [{"TenGiayTo": "Bản sao", "SoLuong": 2, "LoaiGiayTo": 1}],
        "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": "001099000001"}],
        "KenhThucHien": "2",
        "NewerAdapterField": {"anything": True},
    })
    base.update(changes)
    return base


def step(**changes: Any) -> dict[str, Any]:
    base = {
        "MaHoSo": "000.00.01.H22-240101-0001",
        "NguoiXuLy": "Trần Thị B",
        "ChucDanh": "Chuyên viên",
        "ThoiDiemXuLy": "20240102090000",
        "PhongBanXuLy": "Phòng Một cửa",
        "NoiDungXuLy": "Tiếp nhận hồ sơ",
        "TrangThai": "2",
        "NgayBatDau": "20240101080000",
        "NgayKetThucTheoQuyDinh": "",
    }
    base.update(changes)
    return base


def without(data: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != field}


def test_a_complete_record_is_accepted() -> None:
    assert record_problems(record()) == []


def test_a_minimal_record_is_accepted() -> None:
    required = {
        "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "LoaiDoiTuong",
        "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo", "HinhThuc", "DonViXuLy",
    }  # fmt: skip
    assert record_problems({k: v for k, v in record().items() if k in required}) == []


@pytest.mark.parametrize(
    "field",
    ["MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "LoaiDoiTuong", "NgayTiepNhan",
     "NgayHenTra", "TrangThaiHoSo", "HinhThuc", "DonViXuLy"],
)  # fmt: skip
def test_required_fields_must_be_present(field: str) -> None:
    assert record_problems(without(record(), field)) == [f"{field}: required"]


@pytest.mark.parametrize("field", ["MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "DonViXuLy"])
def test_required_text_must_not_be_empty(field: str) -> None:
    assert record_problems(record(**{field: ""})) == [f"{field}: must not be empty"]


@pytest.mark.parametrize(("field", "value"), [("MaTTHC", 1), ("SoBienNhan", 12), ("ChuHoSo", None)])
def test_fields_must_be_strings_never_numbers_or_null(field: str, value: Any) -> None:
    assert record_problems(record(**{field: value})) == [f"{field}: must be a string"]


@pytest.mark.parametrize(
    "value",
    ["2024-01-01 08:00:00", "2024010108000", "202401010800001", "20240230080000", "20241301080000",
     "20240101250000", "20240101086000", "00000101000000", "２０２４０１０１０８００００", ""],
)  # fmt: skip
def test_required_dates_are_fourteen_digits_of_a_real_date(value: str) -> None:
    assert record_problems(record(NgayTiepNhan=value)) == [
        "NgayTiepNhan: must be yyyyMMddHHmmss and a real date"
    ]


def test_leap_day_is_a_real_date() -> None:
    assert record_problems(record(NgayTiepNhan="20240229235959")) == []


@pytest.mark.parametrize("field", ["NgayTra", "NgayKetThucXuLy", "NgayNopHoSo", "NgayTuChoi"])
def test_optional_dates_may_be_empty_but_not_wrong(field: str) -> None:
    assert record_problems(record(**{field: ""})) == []
    assert record_problems(record(**{field: "20240101"})) == [
        f"{field}: must be yyyyMMddHHmmss and a real date"
    ]


@pytest.mark.parametrize("value", ["1", "5", "10"])
def test_status_codes_in_range(value: str) -> None:
    assert record_problems(record(TrangThaiHoSo=value)) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("TrangThaiHoSo", "0"), ("TrangThaiHoSo", "11"), ("TrangThaiHoSo", 2), ("LoaiDoiTuong", "5"),
     ("LoaiDoiTuong", "0"), ("HinhThuc", "2"), ("HinhThuc", 0), ("KenhThucHien", "4")],
)  # fmt: skip
def test_codes_outside_their_table_are_refused(field: str, value: Any) -> None:
    problems = record_problems(record(**{field: value}))
    assert len(problems) == 1
    assert problems[0].startswith(f"{field}: must be one of ")


@pytest.mark.parametrize(
    "value",
    [
        "240101-0001",
        "H22-240101-0001",
        "000.00.01.H22",
        "000.00.01.H22-",
        "000.00.01.h22-1",
        "00.00.01.H22-1",
    ],
)
def test_dossier_number_must_start_with_the_agency_code(value: str) -> None:
    assert record_problems(record(MaHoSo=value)) == [
        "MaHoSo: must start with the agency code, like 000.00.01.H22-"
    ]


@pytest.mark.parametrize(
    ("field", "limit"),
    [("GhiChu", 2000), ("TrichYeuHoSo", 1000)],
)
def test_free_text_length_limits(field: str, limit: int) -> None:
    assert record_problems(record(**{field: "ẫ" * limit})) == []
    assert record_problems(record(**{field: "ẫ" * (limit + 1)})) == [
        f"{field}: longer than {limit} characters"
    ]


def test_file_name_length_limit() -> None:
    files = record()["TaiLieuNop"]
    files[0]["TenTepDinhKem"] = "a" * 4000
    assert record_problems(record(TaiLieuNop=files)) == []
    files[0]["TenTepDinhKem"] = "a" * 4001
    assert record_problems(record(TaiLieuNop=files)) == [
        "TaiLieuNop[0].TenTepDinhKem: longer than 4000 characters"
    ]


@pytest.mark.parametrize("list_field", ["DanhSachGiayToKetQua", "DanhSachTepDinhKemKhac"])
def test_document_name_length_limit(list_field: str) -> None:
    items = copy.deepcopy(record()[list_field])
    items[0]["TenGiayTo"] = "a" * 2000
    assert record_problems(record(**{list_field: items})) == []
    items[0]["TenGiayTo"] = "a" * 2001
    assert record_problems(record(**{list_field: items})) == [
        f"{list_field}[0].TenGiayTo: longer than 2000 characters"
    ]


@pytest.mark.parametrize("value", [True, "true", "1", ""])
def test_is_deleted_is_the_string_true_or_false(value: Any) -> None:
    files = record()["TaiLieuNop"]
    files[0]["IsDeleted"] = value
    assert record_problems(record(TaiLieuNop=[files[0], files[0]])) == [
        "TaiLieuNop[0].IsDeleted: must be one of 'True' or 'False'",
        "TaiLieuNop[1].IsDeleted: must be one of 'True' or 'False'",
    ]


@pytest.mark.parametrize(
    "value", ["file:///etc/passwd", "/files/f1", "ftp://x/f1", "https://", "https://a b", ""]
)
def test_file_links_are_http_urls(value: str) -> None:
    files = record()["TaiLieuNop"]
    files[0]["DuongDanTaiTepTin"] = value
    assert record_problems(record(TaiLieuNop=files)) == [
        "TaiLieuNop[0].DuongDanTaiTepTin: must be an http(s) URL"
    ]


def test_result_document_links_are_http_urls() -> None:
    docs = record()["DanhSachGiayToKetQua"]
    docs[0]["DuongDanTepTinKetQua"] = "C:\\ketqua.pdf"
    assert record_problems(record(DanhSachGiayToKetQua=docs)) == [
        "DanhSachGiayToKetQua[0].DuongDanTepTinKetQua: must be an http(s) URL"
    ]


def test_list_items_need_their_fields() -> None:
    assert record_problems(record(TaiLieuNop=[{"TenTepDinhKem": "a"}])) == [
        "TaiLieuNop[0].TepDinhKemId: required",
        "TaiLieuNop[0].IsDeleted: required",
        "TaiLieuNop[0].MaThanhPhanHoSo: required",
        "TaiLieuNop[0].DuongDanTaiTepTin: required",
    ]


@pytest.mark.parametrize("value", ["50.000", "-1", 50000, ""])
def test_fee_amount_is_digits_as_a_string(value: Any) -> None:
    fees = record()["DanhSachLePhi"]
    fees[0]["Gia"] = value
    problems = record_problems(record(DanhSachLePhi=fees))
    assert len(problems) == 1
    assert problems[0].startswith("DanhSachLePhi[0].Gia: ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [("x", "TaiLieuNop: must be a list"), (["x"], "TaiLieuNop[0]: must be an object")],
)
def test_lists_hold_objects(value: Any, problem: str) -> None:
    assert record_problems(record(TaiLieuNop=value)) == [problem]


def test_a_record_must_be_an_object() -> None:
    assert record_problems(["not", "a", "record"]) == ["must be an object"]


def test_push_needs_a_non_empty_list() -> None:
    assert push_problem([], "False") == "data: must be a non-empty list"
    assert push_problem(record(), "False") == "data: must be a non-empty list"
    assert push_problem(None, "True") == "data: must be a non-empty list"


@pytest.mark.parametrize("flag", [True, False, "true", 1, None])
def test_is_updating_is_the_string_true_or_false(flag: Any) -> None:
    assert push_problem([record()], flag) == 'isUpdating: must be the string "True" or "False"'


def test_push_names_the_first_bad_record_by_index() -> None:
    assert (
        push_problem([record(), record(GhiChu="x" * 2001)], "True")
        == "data[1].GhiChu: longer than 2000 characters"
    )
    assert push_problem([record(), 5], "False") == "data[1]: must be an object"
    files = record()["TaiLieuNop"]
    files[0]["IsDeleted"] = False
    assert push_problem([record(TaiLieuNop=files)], "True") == (
        "data[0].TaiLieuNop[0].IsDeleted: must be one of 'True' or 'False'"
    )
    assert push_problem([record(), record()], "True") is None


def test_a_complete_step_is_accepted() -> None:
    assert step_problems(step()) == []
    assert steps_problem([step(), step(NgayBatDau="")]) is None


@pytest.mark.parametrize(
    "field",
    ["MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai",
     "NgayBatDau", "NgayKetThucTheoQuyDinh"],
)  # fmt: skip
def test_steps_carry_all_nine_fields(field: str) -> None:
    assert step_problems(without(step(), field)) == [f"{field}: required"]


def test_processing_content_must_not_be_null_or_empty() -> None:
    assert step_problems(step(NoiDungXuLy=None)) == ["NoiDungXuLy: must be a string"]
    assert step_problems(step(NoiDungXuLy="")) == ["NoiDungXuLy: must not be empty"]


def test_handler_name_length_limit() -> None:
    assert step_problems(step(NguoiXuLy="ờ" * 50)) == []
    assert step_problems(step(NguoiXuLy="ờ" * 51)) == ["NguoiXuLy: longer than 50 characters"]


@pytest.mark.parametrize("value", ["", "2024-01-02", "20240231090000"])
def test_step_time_is_a_real_date(value: str) -> None:
    assert step_problems(step(ThoiDiemXuLy=value)) == ["ThoiDiemXuLy: must be yyyyMMddHHmmss and a real date"]


@pytest.mark.parametrize("value", ["0", "11", 4])
def test_step_status_in_range(value: Any) -> None:
    problems = step_problems(step(TrangThai=value))
    assert len(problems) == 1
    assert problems[0].startswith("TrangThai: must be one of ")


def test_steps_call_names_the_first_bad_step() -> None:
    assert steps_problem([]) == "data: must be a non-empty list"
    assert steps_problem({"MaHoSo": "x"}) == "data: must be a non-empty list"
    assert steps_problem([step(), step(NoiDungXuLy=None)]) == "data[1].NoiDungXuLy: must be a string"
