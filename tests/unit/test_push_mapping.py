import re
from datetime import datetime, time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.national_time import PORTAL_TZ, portal_time
from connector.push.events import DossierEvent, event_from_document
from connector.push.mapping import (
    ELLIPSIS,
    MappingError,
    MappingsInvalid,
    apply_limits,
    load_mappings,
    map_event,
)
from tests.factories import event_dict, step_dict

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
REQUIRED = ["MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "LoaiDoiTuong", "NgayTiepNhan",
            "NgayHenTra", "TrangThaiHoSo", "HinhThuc", "DonViXuLy"]
STEP_FIELDS = ["MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai",
               "NgayBatDau", "NgayKetThucTheoQuyDinh"]


def event(**kwargs) -> DossierEvent:
    step = kwargs.pop("step", None)
    data = event_dict(**kwargs)
    if step is not None:
        data["event_type"] = "dossier.step"
        data["step"] = step
    return event_from_document(data)


def test_every_required_field_is_filled_as_a_non_empty_string() -> None:
    record = map_event(event(), MAPPINGS).record
    for name in REQUIRED:
        assert isinstance(record[name], str) and record[name], name
    assert record["MaTTHC"] == "1.009972.000.00.00.G12"
    assert record["TenTTHC"] == "Cấp chứng chỉ năng lực hoạt động xây dựng hạng I"
    assert record["LoaiDoiTuong"] == "1"
    assert record["HinhThuc"] == "0"
    assert record["TrangThaiHoSo"] == "2"
    assert record["DonViXuLy"] == "Cục Quản lý hoạt động xây dựng"


def test_every_value_is_a_string_or_a_list_and_empties_are_empty_strings() -> None:
    record = map_event(event(finished_at=None, summary=None), MAPPINGS).record
    for name, value in record.items():
        assert isinstance(value, str | list), name
    assert record["NgayKetThucXuLy"] == ""
    assert record["NgayTra"] == ""
    assert record["TrichYeuHoSo"] == ""
    assert record["Fax"] == ""


def test_dates_are_14_digits_in_ho_chi_minh_time_whatever_the_offset() -> None:
    record = map_event(event(received_at="2020-10-05T01:30:00Z", due_at="2020-10-26T23:30:00-05:00"),
                       MAPPINGS).record
    assert record["NgayTiepNhan"] == "20201005083000"
    assert record["NgayHenTra"] == "20201027113000"  # next day in Hà Nội


def test_afternoon_times_use_the_24_hour_clock() -> None:
    record = map_event(event(received_at="2020-10-05T15:45:09+07:00"), MAPPINGS).record
    assert record["NgayTiepNhan"] == "20201005154509"


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2099, 12, 30),
                    timezones=st.timezones()))
def test_portal_time_always_has_14_digits(moment) -> None:
    text = portal_time(moment)
    assert re.fullmatch(r"\d{14}", text)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()))
def test_portal_time_is_the_local_time_digits_zero_padded_in_any_year(moment) -> None:
    local = moment.astimezone(PORTAL_TZ)
    assert portal_time(moment) == (f"{local.year:04d}{local.month:02d}{local.day:02d}"
                                   f"{local.hour:02d}{local.minute:02d}{local.second:02d}")


def test_sub_status_wins_over_status() -> None:
    assert map_event(event(status="waiting", sub_status="supplement_requested"), MAPPINGS).record[
        "TrangThaiHoSo"] == "5"
    assert map_event(event(status="waiting", sub_status="payment_requested"), MAPPINGS).record[
        "TrangThaiHoSo"] == "6"


def test_an_unknown_sub_status_falls_back_to_the_status() -> None:
    assert map_event(event(status="waiting", sub_status="coffee_break"), MAPPINGS).record["TrangThaiHoSo"] == "4"


def test_an_unmapped_status_is_a_named_error() -> None:
    with pytest.raises(MappingError) as caught:
        map_event(event(status="archived", sub_status="x"), MAPPINGS)
    assert caught.value.reason == "unmapped_status"
    assert caught.value.field == "dossier.status"
    assert "archived" in str(caught.value)
    assert caught.value.kind == "invalid_input"


def test_an_unmapped_procedure_is_a_named_error() -> None:
    with pytest.raises(MappingError) as caught:
        map_event(event(procedure_code="BXD-UNKNOWN"), MAPPINGS)
    assert caught.value.reason == "unmapped_procedure"
    assert "BXD-UNKNOWN" in str(caught.value)


def test_a_dossier_number_without_the_agency_code_is_refused() -> None:
    with pytest.raises(MappingError) as caught:
        map_event(event(no="201005-0001"), MAPPINGS)
    assert caught.value.reason == "dossier_no_without_agency"


def test_lists_are_mapped_with_string_flags() -> None:
    data = event(results=[{"id": "r1", "name": "Chứng chỉ năng lực", "component_code": None,
                           "url": "https://motcua.example.vn/r1"}])
    record = map_event(data, MAPPINGS).record
    assert record["TaiLieuNop"][0]["IsDeleted"] == "False"
    assert record["TaiLieuNop"][0]["DuongDanTaiTepTin"].startswith("https://")
    assert record["DanhSachGiayToKetQua"][0] == {"TenGiayTo": "Chứng chỉ năng lực", "MaThanhPhanHoSo": "",
                                                  "GiayToId": "r1",
                                                  "DuongDanTepTinKetQua": "https://motcua.example.vn/r1"}
    assert record["DanhSachLePhi"][0]["Gia"] == "1000000"
    assert record["DanhSachLePhi"][0]["LoaiPhiLePhi"] == "2"
    assert record["DinhDanhCHS"] == [{"LoaiDinhDanh": "1", "SoDinhDanh": "001089012345"}]


def test_long_text_is_cut_to_its_declared_limit_and_reported() -> None:
    long_note = "Ghi chú " * 400  # 3200 characters
    long_name = "Tệp " * 1500
    data = event(note=long_note, summary="x" * 1001,
                 documents=[{"id": "d", "name": long_name, "url": "https://a.vn/d", "deleted": True}])
    mapped = map_event(data, MAPPINGS)
    assert len(mapped.record["GhiChu"]) == 2000 and mapped.record["GhiChu"].endswith(ELLIPSIS)
    assert len(mapped.record["TrichYeuHoSo"]) == 1000
    assert len(mapped.record["TaiLieuNop"][0]["TenTepDinhKem"]) == 4000
    assert mapped.record["TaiLieuNop"][0]["IsDeleted"] == "True"
    assert set(mapped.truncated) == {"GhiChu", "TrichYeuHoSo", "TaiLieuNop[0].TenTepDinhKem"}


def test_text_at_the_limit_is_left_alone() -> None:
    mapped = map_event(event(note="a" * 2000), MAPPINGS)
    assert mapped.record["GhiChu"] == "a" * 2000
    assert mapped.truncated == ()


@given(st.text(max_size=120), st.integers(min_value=2, max_value=60))
def test_apply_limits_never_exceeds_the_limit(text, limit) -> None:
    data = {"GhiChu": text}
    cut: list[str] = []
    apply_limits(data, {"GhiChu": limit}, cut)
    assert len(data["GhiChu"]) <= limit
    assert (cut == ["GhiChu"]) == (len(text) > limit)


def test_a_step_has_every_progress_field() -> None:
    mapped = map_event(event(status="processing", step=step_dict()), MAPPINGS)
    assert mapped.step is not None
    assert list(mapped.step) == STEP_FIELDS
    assert mapped.step["ThoiDiemXuLy"] == "20201006091500"
    assert mapped.step["TrangThai"] == "4"
    assert mapped.step["NoiDungXuLy"] == "Thẩm định hồ sơ"


@pytest.mark.parametrize("note", [None, "", "   "])
def test_a_step_without_a_note_gets_the_status_name_not_null(note) -> None:
    mapped = map_event(event(status="processing", step=step_dict(note=note)), MAPPINGS)
    assert mapped.step is not None
    assert mapped.step["NoiDungXuLy"] == "Đang xử lý"


def test_a_long_actor_name_is_cut_to_50() -> None:
    mapped = map_event(event(status="processing", step=step_dict(actor="Nguyễn " * 20)), MAPPINGS)
    assert mapped.step is not None and len(mapped.step["NguoiXuLy"]) == 50
    assert "step.NguoiXuLy" in mapped.truncated


# ---- loading ------------------------------------------------------------------------------------------


def write_mappings(tmp_path: Path, **sections: object) -> Path:
    for name in ("status", "codes", "procedures", "limits"):
        source = yaml.safe_load((DEFAULT_MAPPINGS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        if name in sections:
            source[name] = sections[name]
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(source, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_the_shipped_mappings_load() -> None:
    assert "BXD-NLHD-01" in MAPPINGS.procedures


def test_a_status_outside_1_to_10_is_refused_with_file_and_field(tmp_path: Path) -> None:
    write_mappings(tmp_path, status={"by_status": {"new": 11}})
    with pytest.raises(MappingsInvalid) as caught:
        load_mappings(tmp_path)
    assert "status.yaml" in str(caught.value)
    assert "new=11" in str(caught.value)


def test_a_malformed_national_procedure_code_is_refused(tmp_path: Path) -> None:
    write_mappings(tmp_path, procedures={"X": {"national_code": "1.2.3", "name": "n", "field_code": "f",
                                               "field_name": "g"}})
    with pytest.raises(MappingsInvalid, match=r"procedures\.X\.national_code"):
        load_mappings(tmp_path)


@pytest.mark.parametrize(("limit", "says"), [
    ({"amount": 0, "unit": "days"}, "time_limit.amount"),
    ({"amount": 5, "unit": "weeks"}, "time_limit.unit"),
    ({"amount": 5}, "time_limit.unit"),
    ("20 days", "time_limit"),
])
def test_a_procedure_time_limit_that_is_not_one_is_refused(tmp_path: Path, limit: object, says: str) -> None:
    write_mappings(tmp_path, procedures={"X": {"national_code": "1.009972.000.00.00.G12", "name": "n",
                                               "field_code": "f", "field_name": "g", "time_limit": limit}})
    with pytest.raises(MappingsInvalid, match=rf"procedures\.yaml: procedures\.X\.{says}"):
        load_mappings(tmp_path)


@pytest.mark.parametrize("sessions", [
    [{"start": "13:30", "end": "17:00"}, {"start": "07:00", "end": "11:30"}],  # out of order
    [{"start": "07:00", "end": "12:00"}, {"start": "11:30", "end": "17:00"}],  # overlapping
    [{"start": "17:00", "end": "07:00"}],
    [],
    [{"start": "7 am", "end": "11:30"}],
])
def test_work_sessions_that_are_not_a_working_day_are_refused(tmp_path: Path, sessions: object) -> None:
    write_mappings(tmp_path)
    (tmp_path / "calendar.yaml").write_text(yaml.safe_dump({"work_sessions": sessions}), encoding="utf-8")
    with pytest.raises(MappingsInvalid, match=r"calendar\.yaml: work_sessions"):
        load_mappings(tmp_path)


def test_configured_work_sessions_move_a_due_time_from_a_time_limit(tmp_path: Path) -> None:
    write_mappings(tmp_path)
    (tmp_path / "calendar.yaml").write_text(yaml.safe_dump({"work_sessions": [{"start": "08:00", "end": "16:00"}]}),
                                            encoding="utf-8")
    loaded = load_mappings(tmp_path)
    assert loaded.calendar.hours_per_day == 8.0
    assert loaded.calendar.sessions == ((time(8, 0), time(16, 0)),)


def test_a_limit_on_an_unknown_field_is_refused(tmp_path: Path) -> None:
    write_mappings(tmp_path, limits={"GhiChuu": 10})
    with pytest.raises(MappingsInvalid, match="GhiChuu"):
        load_mappings(tmp_path)


def test_missing_code_tables_are_listed(tmp_path: Path) -> None:
    write_mappings(tmp_path, codes={"applicant_types": {"citizen": "1"}, "result_delivery": {},
                                     "channels": {}, "fee_kinds": {}})
    with pytest.raises(MappingsInvalid) as caught:
        load_mappings(tmp_path)
    assert "business" in str(caught.value) and "counter" in str(caught.value)


def test_a_section_defined_twice_is_refused(tmp_path: Path) -> None:
    write_mappings(tmp_path)
    (tmp_path / "extra.yaml").write_text("limits:\n  GhiChu: 10\n", encoding="utf-8")
    with pytest.raises(MappingsInvalid, match="also defined"):
        load_mappings(tmp_path)


def test_broken_yaml_is_reported_not_raised_raw(tmp_path: Path) -> None:
    write_mappings(tmp_path)
    (tmp_path / "status.yaml").write_text("status: [unclosed\n", encoding="utf-8")
    with pytest.raises(MappingsInvalid, match=r"status\.yaml"):
        load_mappings(tmp_path)


def test_decomposed_vietnamese_is_normalised_before_counting() -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "Hồ sơ đề nghị cấp chứng chỉ " * 70)  # ~1960 NFC characters
    assert len(decomposed) > 2000
    mapped = map_event(event(note=decomposed), MAPPINGS)
    assert mapped.record["GhiChu"] == unicodedata.normalize("NFC", decomposed)
    assert mapped.truncated == ()
