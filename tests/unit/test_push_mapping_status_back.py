"""Status back: a dossier that started on the national portal becomes one DongBoTrangThaiHoSo data object,
carrying the national number and ours; without our number the event is refused, naming the field."""

import json

import pytest

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.push.events import DossierEvent, InvalidEvent, decode_event, event_from_document
from connector.push.mapping import (
    ELLIPSIS,
    STATUS_BACK_FIELDS,
    MappingError,
    Mappings,
    is_status_back,
    load_mappings,
    local_number,
    map_event,
)
from tests.factories import encode, event_dict, step_dict

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
NATIONAL_NO = "G22.99-201005-0042"  # numbered by the national portal: not our agency code


def from_portal(**overrides) -> dict:
    """A valid event of a dossier submitted on the national portal (online, no receipt yet by default)."""
    step = overrides.pop("step", None)
    dossier = {"no": NATIONAL_NO, "origin": "portal", "channel": "online", "receipt_no": None,
               "local_no": "000.00.01.G12-MC-201005-0007", **overrides}
    document = event_dict(**dossier)
    if step is not None:
        document["event_type"] = "dossier.step"
        document["step"] = step
    return document


def event(document: dict) -> DossierEvent:
    return decode_event(*encode(document), max_bytes=1 << 20)


def test_the_status_back_object_carries_both_numbers_the_national_status_and_the_dates() -> None:
    document = from_portal(status="done", finished_at="2020-10-20T16:00:00+07:00",
                           returned_at="2020-10-21T02:15:00Z", note="Đã có kết quả (phiên bản 3)")
    document["occurred_at"] = "2020-10-21T02:16:30Z"
    mapped = map_event(event(document), MAPPINGS)
    assert mapped.status_back
    assert mapped.record == {
        "MaHoSo": NATIONAL_NO,
        "MaHoSoDonVi": "000.00.01.G12-MC-201005-0007",
        "TrangThaiHoSo": "9",
        "NgayCapNhat": "20201021091630",  # when it changed: the event's time, in Hà Nội
        "NgayHenTra": "20201026170000",
        "NgayKetThucXuLy": "20201020160000",
        "NgayTra": "20201021091500",
        "GhiChu": "Đã có kết quả (phiên bản 3)",
    }
    assert list(mapped.record) == list(STATUS_BACK_FIELDS)
    assert (mapped.dossier_no, mapped.version, mapped.step) == (NATIONAL_NO, 1, None)


def test_what_has_not_happened_yet_is_an_empty_string() -> None:
    record = map_event(event(from_portal(note=None, finished_at=None, returned_at=None)), MAPPINGS).record
    assert (record["NgayKetThucXuLy"], record["NgayTra"], record["GhiChu"]) == ("", "", "")
    assert all(isinstance(value, str) for value in record.values())


def test_our_number_is_the_local_number_and_else_the_receipt_number() -> None:
    both = map_event(event(from_portal(receipt_no="BN-201005-0007")), MAPPINGS).record
    assert both["MaHoSoDonVi"] == "000.00.01.G12-MC-201005-0007"
    receipt_only = from_portal(receipt_no="BN-201005-0007")
    del receipt_only["dossier"]["local_no"]
    assert map_event(event(receipt_only), MAPPINGS).record["MaHoSoDonVi"] == "BN-201005-0007"
    null_local = from_portal(receipt_no="BN-201005-0007", local_no=None)
    assert map_event(event(null_local), MAPPINGS).record["MaHoSoDonVi"] == "BN-201005-0007"


@pytest.mark.parametrize("receipt_no", [None, "", "   "])
def test_without_either_number_the_event_is_refused_naming_the_local_number(receipt_no) -> None:
    document = from_portal(local_no=None, receipt_no=receipt_no)
    with pytest.raises(InvalidEvent) as refused:
        map_event(event(document), MAPPINGS)
    assert (refused.value.reason, refused.value.field, refused.value.kind) == (
        "local_no_missing", "dossier.local_no", "invalid_input")
    del document["dossier"]["local_no"]
    with pytest.raises(InvalidEvent, match="local number"):
        local_number(event(document).dossier)


def test_a_local_dossier_needs_no_local_number_and_is_still_a_whole_record() -> None:
    mapped = map_event(event_from_document(event_dict(receipt_no=None)), MAPPINGS)
    assert not mapped.status_back
    assert mapped.record["MaTTHC"] == "1.009972.000.00.00.G12" and "MaHoSoDonVi" not in mapped.record


@pytest.mark.parametrize(("status", "sub_status"), [
    ("new", None), ("received", None), ("processing", None), ("waiting", "supplement_requested"),
    ("waiting", "payment_requested"), ("stopped", None), ("returned", None),
])
def test_the_status_comes_from_the_same_table_as_the_whole_record(status, sub_status) -> None:
    back = map_event(event(from_portal(status=status, sub_status=sub_status)), MAPPINGS).record
    whole = map_event(event(event_dict(status=status, sub_status=sub_status)), MAPPINGS).record
    assert back["TrangThaiHoSo"] == whole["TrangThaiHoSo"]
    assert 1 <= int(back["TrangThaiHoSo"]) <= 10


def test_an_unmapped_status_is_refused_as_for_any_dossier() -> None:
    with pytest.raises(MappingError) as refused:
        map_event(event(from_portal(status="archived")), MAPPINGS)
    assert (refused.value.reason, refused.value.field) == ("unmapped_status", "dossier.status")


def test_the_status_back_needs_neither_our_agency_prefix_nor_a_mapped_procedure() -> None:
    # The national portal numbered the dossier, and the status back names no procedure.
    mapped = map_event(event(from_portal(procedure_code="NOT-IN-MAPPINGS")), MAPPINGS)
    assert mapped.record["MaHoSo"] == NATIONAL_NO
    assert (mapped.agency_code, mapped.procedure_code) == ("000.00.01.G12", "NOT-IN-MAPPINGS")  # for the ledger


def test_the_note_is_cut_to_the_declared_limit_and_the_cut_counted() -> None:
    limit = MAPPINGS.limits["GhiChu"]
    mapped = map_event(event(from_portal(note="Ghi chú " + "x" * (limit + 500))), MAPPINGS)
    assert len(mapped.record["GhiChu"]) == limit and mapped.record["GhiChu"].endswith(ELLIPSIS)
    assert mapped.truncated == ("GhiChu",)


def test_limits_may_name_the_status_back_fields() -> None:
    limited = Mappings.model_validate({**MAPPINGS.model_dump(), "limits": {"MaHoSoDonVi": 10, "GhiChu": 100}})
    mapped = map_event(event(from_portal()), limited)
    assert mapped.record["MaHoSoDonVi"] == "000.00.01" + ELLIPSIS
    assert mapped.truncated == ("MaHoSoDonVi",)


def test_a_step_of_a_dossier_from_the_portal_is_still_a_progress_step_under_the_national_number() -> None:
    mapped = map_event(event(from_portal(version=2, step=step_dict())), MAPPINGS)
    assert mapped.status_back
    assert mapped.step is not None and mapped.step["MaHoSo"] == NATIONAL_NO
    assert mapped.step["TrangThai"] == "4" and mapped.step["NoiDungXuLy"] == "Thẩm định hồ sơ"


def test_the_schema_reads_the_local_number_as_optional() -> None:
    assert event(from_portal()).dossier.local_no == "000.00.01.G12-MC-201005-0007"
    assert event(from_portal(local_no=None)).dossier.local_no is None
    absent = from_portal()
    del absent["dossier"]["local_no"]
    assert event(absent).dossier.local_no is None


@pytest.mark.parametrize("local_no", ["", "MC 0007", "x" * 101, 7])
def test_the_schema_refuses_a_local_number_that_is_no_number(local_no) -> None:
    with pytest.raises(InvalidEvent) as refused:
        event(from_portal(local_no=local_no))
    assert (refused.value.reason, refused.value.field) == ("schema", "dossier.local_no")


def test_a_status_back_kept_in_the_ledger_is_told_from_a_whole_record() -> None:
    back = map_event(event(from_portal()), MAPPINGS).record
    whole = map_event(event(event_dict()), MAPPINGS).record
    assert is_status_back(json.loads(json.dumps(back)))
    assert not is_status_back(json.loads(json.dumps(whole)))
