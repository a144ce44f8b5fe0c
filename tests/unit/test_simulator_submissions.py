"""Citizen submissions on the simulated portal: registration, visibility, listing, files, acknowledgements and
status reports, through the adapter-shaped replies of ``SimulatorState`` (no HTTP)."""

from __future__ import annotations

import base64
import hashlib
from datetime import date
from typing import Any

import pytest

from connector.dev.simulator.payment_platform import PaymentSpec
from connector.dev.simulator.state import SimulatorConfig, SimulatorState
from connector.dev.simulator.submissions import AMEND_GAP_SECONDS, GenerationSpec, SubmissionRefused
from tests.factories import portal_record

AGENCY = "000.00.01.H22"
OTHER_AGENCY = "000.00.02.H22"
NUMBER = f"{AGENCY}-260101-0001"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_state(clock: FakeClock | None = None) -> SimulatorState:
    return SimulatorState(SimulatorConfig(), clock=clock or FakeClock())


def submission(number: str = NUMBER, *, revision: Any = "1", submitted: str = "20260101093000",
               agency: str = AGENCY, files: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "MaHoSo": number,
        "MaTTHC": "1.009972.000.00.00.G12",
        "TenTTHC": "Cấp giấy phép xây dựng",
        "DonViXuLy": agency,
        "NgayNopHoSo": submitted,
        "PhienBan": revision,
        "TrangThaiHoSo": "1",
        "ChuHoSo": "Nguyễn Văn An",
        "TrichYeuHoSo": "Đề nghị cấp giấy phép xây dựng nhà ở",
        "TaiLieuNop": files if files is not None else [attachment(b"%PDF-1.7 don de nghi")],
    }
    item.update(extra)
    return item


def attachment(content: bytes, name: str = "Đơn đề nghị.pdf", **extra: Any) -> dict[str, Any]:
    return {"TepDinhKemId": f"id-{name}", "TenTepDinhKem": name, "MaThanhPhanHoSo": "TP01",
            "Base64": base64.b64encode(content).decode(), **extra}


def listing(state: SimulatorState, first: str = "2026-01-01", last: str = "2026-01-01", **params: Any) -> Any:
    reply = state.list_submissions({"donViXuLy": AGENCY, "ngayNhan1": first, "ngayNhan2": last, **params})
    assert reply["error_code"] == "0", reply
    return reply["result"]


def view_of(state: SimulatorState, number: str = NUMBER) -> dict[str, Any]:
    view = state.submissions.view(number)
    assert view is not None
    return view


def lookup(state: SimulatorState, number: str = NUMBER) -> list[dict[str, Any]]:
    reply = state.lookup(number)
    assert reply["error_code"] == "0", reply
    result: list[dict[str, Any]] = reply["result"]
    return result


# --- registration and what TraCuuHoSo shows ---------------------------------------------------------


def test_a_registered_submission_is_looked_up_with_its_files_described_never_their_content() -> None:
    state = make_state()
    content = b"%PDF-1.7 the application form"
    assert state.submissions.register([submission(files=[attachment(content)], DiaChiChuHoSo="Số 1, Hà Nội")]) == 1

    [record] = lookup(state)
    assert record["PhienBan"] == "1"
    assert record["NgayNopHoSo"] == "20260101093000"
    assert record["DiaChiChuHoSo"] == "Số 1, Hà Nội"  # other fields kept as given
    [described] = record["TaiLieuNop"]
    assert "Base64" not in described
    assert described["KichThuoc"] == len(content)
    assert described["MaBam"] == hashlib.sha256(content).hexdigest()
    assert described["TepDinhKemId"] == "id-Đơn đề nghị.pdf"
    assert described["MaThanhPhanHoSo"] == "TP01"

    fetched = state.fetch_file(described["DuongDanTaiTepTin"])
    assert fetched["error_code"] == "0"
    assert fetched["message"] == "Thành công"
    assert fetched["TepTinDinhKem"] == [{"TenTep": "Đơn đề nghị.pdf", "Base64": base64.b64encode(content).decode()}]


def test_a_declared_size_and_hash_are_kept_as_given_while_the_view_shows_the_real_file() -> None:
    state = make_state()
    content = b"the real bytes"
    state.submissions.register([submission(files=[attachment(content, KichThuoc=999, MaBam="0" * 64)])])

    [described] = lookup(state)[0]["TaiLieuNop"]
    assert (described["KichThuoc"], described["MaBam"]) == (999, "0" * 64)
    view = state.submissions.view(NUMBER)
    assert view is not None
    assert view["files"] == {
        described["DuongDanTaiTepTin"]: {"KichThuoc": len(content), "MaBam": hashlib.sha256(content).hexdigest()}}


def test_unknown_numbers_and_paths_are_empty_or_refused_and_pushed_dossiers_are_still_looked_up() -> None:
    state = make_state()
    assert lookup(state, "nobody") == []
    assert state.fetch_file("tailieu/nobody/1/1")["error_code"] == "-1"
    assert state.fetch_file(None) == {"error_code": "-1", "message": "duongdanteptin: required"}
    assert state.lookup("")["error_code"] == "-1"
    pushed = portal_record(f"{AGENCY}-240101-0001")
    assert state.apply_push([pushed], "False")["error_code"] == "0"
    assert lookup(state, pushed["MaHoSo"]) == [pushed]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"MaHoSo": ""}, "submissions[1].MaHoSo: must be a non-empty string"),
        ({"DonViXuLy": None}, "submissions[1].DonViXuLy: must be a non-empty string"),
        ({"NgayNopHoSo": "20260231090000"}, "submissions[1].NgayNopHoSo: must be yyyyMMddHHmmss and a real date"),
        ({"TrangThaiHoSo": 1}, "submissions[1].TrangThaiHoSo: must be one of '1' to '10' (a string)"),
        ({"PhienBan": "v1"}, "submissions[1].PhienBan: must be a whole number"),
        ({"PhienBan": 0}, "submissions[1].PhienBan: must be at least 1"),
        ({"_visible_in_seconds": -1}, "submissions[1]._visible_in_seconds: must be a number of seconds, at least 0"),
        ({"TaiLieuNop": [{"TepDinhKemId": "x", "TenTepDinhKem": "a.pdf", "MaThanhPhanHoSo": "", "Base64": "**"}]},
         "submissions[1].TaiLieuNop[0].Base64: must be the file's content in base64"),
        ({"TaiLieuNop": [{"TenTepDinhKem": "a.pdf", "MaThanhPhanHoSo": "", "Base64": ""}]},
         "submissions[1].TaiLieuNop[0].TepDinhKemId: must be a non-empty string"),
    ],
)
def test_a_bad_item_is_refused_by_name_and_nothing_of_the_batch_is_kept(change: dict[str, Any], problem: str) -> None:
    state = make_state()
    good = submission(f"{AGENCY}-260101-0009")
    with pytest.raises(SubmissionRefused) as refused:
        state.submissions.register([good, {**submission(), **change}])
    assert str(refused.value) == problem
    assert state.submissions.views() == {}


def test_the_body_must_be_a_list_of_objects() -> None:
    state = make_state()
    with pytest.raises(SubmissionRefused, match="submissions: must be a list"):
        state.submissions.register(None)
    with pytest.raises(SubmissionRefused, match=r"submissions\[0\]: must be an object"):
        state.submissions.register(["x"])


# --- visibility by the injected clock, and amendments -----------------------------------------------


def test_a_submission_shows_only_once_its_moment_has_come() -> None:
    clock = FakeClock()
    state = make_state(clock)
    state.submissions.register([submission(_visible_in_seconds=30)])
    [path] = view_of(state)["files"]

    assert listing(state) == []
    assert lookup(state) == []
    assert state.fetch_file(path)["error_code"] == "-1"
    assert view_of(state)["current"] is None

    clock.now += 29.9
    assert listing(state) == []
    clock.now += 0.1
    assert [entry["MaHoSo"] for entry in listing(state)] == [NUMBER]
    assert lookup(state)[0]["MaHoSo"] == NUMBER
    assert state.fetch_file(path)["error_code"] == "0"
    assert view_of(state)["revisions"] == [
        {"PhienBan": "1", "visible": True, "NgayNopHoSo": "20260101093000"}]


def test_an_amendment_replaces_the_listed_revision_once_it_is_visible() -> None:
    clock = FakeClock()
    state = make_state(clock)
    state.submissions.register([submission()])
    state.submissions.register([submission(revision=2, TrichYeuHoSo="Bổ sung bản vẽ", _visible_in_seconds=10,
                                           files=[attachment(b"new drawing", "Bản vẽ.pdf")])])

    assert listing(state) == [{"MaHoSo": NUMBER, "MaTTHC": "1.009972.000.00.00.G12", "NgayNopHoSo": "20260101093000",
                               "TrangThaiHoSo": "1", "PhienBan": "1"}]
    assert lookup(state)[0]["TrichYeuHoSo"] == "Đề nghị cấp giấy phép xây dựng nhà ở"
    assert view_of(state)["current"] == "1"

    clock.now += 10
    [entry] = listing(state)
    assert entry["PhienBan"] == "2"
    [record] = lookup(state)
    assert record["PhienBan"] == "2"
    assert record["TrichYeuHoSo"] == "Bổ sung bản vẽ"
    assert [f["TenTepDinhKem"] for f in record["TaiLieuNop"]] == ["Bản vẽ.pdf"]
    view = state.submissions.view(NUMBER)
    assert view is not None
    assert [(r["PhienBan"], r["visible"]) for r in view["revisions"]] == [("1", True), ("2", True)]
    assert view["current"] == "2"
    assert len(view["files"]) == 2  # the first revision's file stays fetchable


def test_the_same_or_a_lower_revision_is_refused_naming_the_item() -> None:
    state = make_state()
    state.submissions.register([submission(revision="2")])
    for revision in ("2", 1):
        with pytest.raises(SubmissionRefused) as refused:
            state.submissions.register([submission(revision=revision)])
        assert str(refused.value).startswith(f"submissions[0].PhienBan: {revision} is not above revision 2 of {NUMBER}")
    # Within one batch too: revisions must rise in the order given.
    with pytest.raises(SubmissionRefused, match=r"submissions\[1\]\.PhienBan"):
        state.submissions.register([submission(revision=4), submission(revision=3)])
    assert state.submissions.register([submission(revision=3), submission(revision=4)]) == 2


# --- DanhSachHoSo: window, agency, order, paging ----------------------------------------------------


def test_the_window_is_inclusive_by_submission_day_and_only_the_asked_agency_is_listed() -> None:
    state = make_state()
    state.submissions.register([
        submission(f"{AGENCY}-A", submitted="20251231235959"),
        submission(f"{AGENCY}-B", submitted="20260101000000"),
        submission(f"{AGENCY}-C", submitted="20260102235959"),
        submission(f"{AGENCY}-D", submitted="20260103000000"),
        submission(f"{OTHER_AGENCY}-E", submitted="20260101120000", agency=OTHER_AGENCY),
    ])
    listed = listing(state, "2026-01-01", "2026-01-02")
    assert [entry["MaHoSo"] for entry in listed] == [f"{AGENCY}-B", f"{AGENCY}-C"]
    assert set(listed[0]) == {"MaHoSo", "MaTTHC", "NgayNopHoSo", "TrangThaiHoSo", "PhienBan"}
    assert [e["MaHoSo"] for e in listing(state, "2026-01-03", "2026-01-03")] == [f"{AGENCY}-D"]


def test_pages_follow_submission_time_then_number_and_a_short_page_is_the_last() -> None:
    state = make_state()
    stamps = ["20260101100000", "20260101080000", "20260101100000", "20260101090000", "20260101080000",
              "20260101110000", "20260101070000"]
    state.submissions.register(
        [submission(f"{AGENCY}-260101-{n:04d}", submitted=stamp) for n, stamp in enumerate(stamps, start=1)])
    everything = listing(state)
    assert [(e["NgayNopHoSo"], e["MaHoSo"]) for e in everything] == sorted(
        (stamp, f"{AGENCY}-260101-{n:04d}") for n, stamp in enumerate(stamps, start=1))

    pages = [listing(state, trang=page, soLuong=3) for page in (1, "2", 3, 4)]
    assert [len(page) for page in pages] == [3, 3, 1, 0]
    assert [entry for page in pages for entry in page] == everything
    assert len(listing(state, soLuong="100")) == 7


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"donViXuLy": ""}, "donViXuLy: required"),
        ({"ngayNhan1": None}, "ngayNhan1: must be yyyy-MM-dd and a real date"),
        ({"ngayNhan1": "01/01/2026"}, "ngayNhan1: must be yyyy-MM-dd and a real date"),
        ({"ngayNhan2": "2026-02-30"}, "ngayNhan2: must be yyyy-MM-dd and a real date"),
        ({"ngayNhan1": "2026-01-02", "ngayNhan2": "2026-01-01"}, "ngayNhan2: must not be before ngayNhan1"),
        ({"trang": 0}, "trang: must be at least 1"),
        ({"trang": True}, "trang: must be a whole number"),
        ({"trang": "1.5"}, "trang: must be a whole number"),
        ({"soLuong": 101}, "soLuong: must be from 1 to 100"),
        ({"soLuong": "0"}, "soLuong: must be from 1 to 100"),
    ],
)
def test_listing_parameters_are_checked(params: dict[str, Any], problem: str) -> None:
    state = make_state()
    body = {"donViXuLy": AGENCY, "ngayNhan1": "2026-01-01", "ngayNhan2": "2026-01-01", **params}
    assert state.list_submissions(body) == {"error_code": "-1", "message": problem}


# --- CapNhatDaNhanHoSo ------------------------------------------------------------------------------


def test_acknowledgements_are_recorded_per_revision_and_repeats_are_harmless_and_counted() -> None:
    state = make_state()
    state.submissions.register([submission(), submission(revision=2)])
    ok = {"error_code": "0", "message": "Thành công", "result": None}
    assert state.acknowledge_submission({"maHoSo": NUMBER, "phienBan": "1", "daNhan": True}) == ok
    assert state.acknowledge_submission(
        {"maHoSo": NUMBER, "phienBan": 1, "daNhan": True, "maHoSoDonVi": "BXD-2026-000001"}) == ok
    assert state.acknowledge_submission({"maHoSo": NUMBER, "phienBan": "2", "daNhan": True}) == ok

    view = state.submissions.view(NUMBER)
    assert view is not None
    assert view["acknowledged"] == {"1": 2, "2": 1}
    assert view["acknowledged_by"] == "BXD-2026-000001"
    assert view["duplicate_acks"] == 1
    assert state.submissions.duplicate_acks == 1


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"maHoSo": "nobody"}, "maHoSo: no submission nobody"),
        ({"maHoSo": None}, "maHoSo: required"),
        ({"phienBan": "3"}, f"phienBan: submission {NUMBER} has no revision 3"),
        ({"phienBan": None}, "phienBan: must be a whole number"),
        ({"daNhan": "true"}, "daNhan: must be true"),
        ({"daNhan": False}, "daNhan: must be true"),
        ({"maHoSoDonVi": 5}, "maHoSoDonVi: must be a string"),
    ],
)
def test_an_acknowledgement_of_what_the_portal_never_had_is_refused(params: dict[str, Any], problem: str) -> None:
    state = make_state()
    state.submissions.register([submission()])
    reply = state.acknowledge_submission({"maHoSo": NUMBER, "phienBan": "1", "daNhan": True, **params})
    assert reply == {"error_code": "-1", "message": problem}
    assert view_of(state)["acknowledged"] == {}


# --- DongBoTrangThaiHoSo ----------------------------------------------------------------------------


def test_a_status_report_is_kept_as_given() -> None:
    state = make_state()
    state.submissions.register([submission()])
    data = {"MaHoSo": NUMBER, "MaHoSoDonVi": "BXD-2026-000001", "TrangThaiHoSo": "2", "NgayTiepNhan": "20260102080000"}
    assert state.apply_status_back("2", data) == {"error_code": "0", "message": "Thành công", "result": None}
    assert state.apply_status_back("2", {**data, "TrangThaiHoSo": "10"})["error_code"] == "0"
    assert view_of(state)["status_back"] == [data, {**data, "TrangThaiHoSo": "10"}]


@pytest.mark.parametrize(
    ("kind", "change", "problem"),
    [
        (2, {}, 'type: must be the string "2"'),
        ("1", {}, 'type: must be the string "2"'),
        ("2", None, "data: must be an object"),
        ("2", {"MaHoSo": "nobody"}, "data.MaHoSo: no submission nobody"),
        ("2", {"MaHoSo": None}, "data.MaHoSo: required"),
        ("2", {"MaHoSoDonVi": ""}, "data.MaHoSoDonVi: must be a non-empty string"),
        ("2", {"TrangThaiHoSo": 2}, "data.TrangThaiHoSo: must be one of '1' to '10' (a string)"),
        ("2", {"TrangThaiHoSo": "11"}, "data.TrangThaiHoSo: must be one of '1' to '10' (a string)"),
    ],
)
def test_a_bad_status_report_is_refused(kind: Any, change: dict[str, Any] | None, problem: str) -> None:
    state = make_state()
    state.submissions.register([submission()])
    good = {"MaHoSo": NUMBER, "MaHoSoDonVi": "BXD-1", "TrangThaiHoSo": "4"}
    data: Any = [good] if change is None else {**good, **change}
    assert state.apply_status_back(kind, data) == {"error_code": "-1", "message": problem}
    assert view_of(state)["status_back"] == []


# --- generated traffic ------------------------------------------------------------------------------


SPEC = GenerationSpec(count=200, agency=AGENCY, seed=11, late_ratio=0.2, amend_ratio=0.3, large_file_ratio=0.1,
                      large_file_bytes=50_000, small_file_bytes=500, spread_seconds=60, day=date(2026, 1, 2))


def records(state: SimulatorState) -> dict[str, list[dict[str, Any]]]:
    return {number: [r.record for r in s.revisions] for number, s in state.submissions.submissions.items()}


def test_generation_is_deterministic_and_realistic() -> None:
    first, second = make_state(), make_state()
    made = first.submissions.generate(SPEC)
    assert second.submissions.generate(SPEC) == made
    assert records(first) == records(second)

    assert made.generated == 200
    held = first.submissions.submissions
    assert len(held) == 200
    assert made.revisions == sum(len(s.revisions) for s in held.values())
    assert made.files == sum(len(r.record["TaiLieuNop"]) for s in held.values() for r in s.revisions)
    for number, stored in held.items():
        assert number.startswith(f"{AGENCY}-260102-")
        record = stored.revisions[0].record
        assert record["DonViXuLy"] == AGENCY
        assert record["MaTTHC"].endswith(".G12")
        assert record["ChuHoSo"]
        assert record["LoaiDoiTuong"] in ("1", "2")
        assert record["DinhDanhCHS"][0]["SoDinhDanh"].isdigit()
        assert record["Email"].isascii()
        assert 1 <= len(record["TaiLieuNop"]) <= 3


def test_generated_late_amended_and_large_submissions_follow_the_spec() -> None:
    clock = FakeClock()
    state = make_state(clock)
    state.submissions.generate(SPEC)
    held = state.submissions.submissions.values()

    late = [s for s in held if s.revisions[0].record["NgayNopHoSo"].startswith("20260101")]
    on_time = [s for s in held if s.revisions[0].record["NgayNopHoSo"].startswith("20260102")]
    assert len(late) + len(on_time) == 200
    assert 20 <= len(late) <= 60
    assert all(s.revisions[0].visible_at - clock.now >= 30 for s in late)  # in the second half of the spread
    assert all(0 <= s.revisions[0].visible_at - clock.now <= 60 for s in held)

    amended = [s for s in held if len(s.revisions) == 2]
    assert 30 <= len(amended) <= 90
    for stored in amended:
        one, two = stored.revisions
        assert one.visible_at < two.visible_at <= clock.now + 60 + AMEND_GAP_SECONDS
        assert one.record["TrichYeuHoSo"] != two.record["TrichYeuHoSo"]
        hashes_one = [f["MaBam"] for f in one.record["TaiLieuNop"]]
        hashes_two = [f["MaBam"] for f in two.record["TaiLieuNop"]]
        assert sum(a != b for a, b in zip(hashes_one, hashes_two, strict=True)) == 1

    sizes = [f["KichThuoc"] for s in held for f in s.revisions[0].record["TaiLieuNop"]]
    assert set(sizes) == {500, 50_000}
    assert 5 <= sizes.count(50_000) <= 40

    # Once the spread is over, every submission is listed once, at its highest revision.
    clock.now += 61
    listed = listing(state, "2026-01-01", "2026-01-02") + listing(state, "2026-01-01", "2026-01-02", trang=2)
    assert len(listed) == 200
    assert listing(state, "2026-01-01", "2026-01-02", trang=3) == []
    assert len({e["MaHoSo"] for e in listed}) == 200
    assert sorted(e["PhienBan"] for e in listed if e["PhienBan"] == "2") == ["2"] * len(amended)


def test_generating_again_takes_the_next_free_numbers() -> None:
    state = make_state()
    state.submissions.register([submission(f"{AGENCY}-260102-0002", submitted="20260102080000")])
    state.submissions.generate(GenerationSpec(count=3, agency=AGENCY, day=date(2026, 1, 2)))
    assert sorted(state.submissions.submissions) == [f"{AGENCY}-260102-{n:04d}" for n in range(1, 5)]


def test_a_thousand_submissions_with_large_files_are_generated() -> None:
    # How fast is the simulator's speed benchmark's question (python -m tests.unit.test_simulator_speed), not a
    # timed assertion's: under a loaded CI machine a wall-clock bound fails for the wrong reason.
    state = make_state()
    made = state.submissions.generate(GenerationSpec(count=1000, agency=AGENCY, seed=3, amend_ratio=0.2,
                                                     large_file_ratio=0.1, day=date(2026, 1, 2)))
    assert made.generated == 1000


def test_reset_forgets_submissions_and_payments() -> None:
    state = make_state()
    state.submissions.register([submission()])
    state.acknowledge_submission({"maHoSo": NUMBER, "phienBan": "1", "daNhan": True})
    state.acknowledge_submission({"maHoSo": NUMBER, "phienBan": "1", "daNhan": True})
    state.payments.register([PaymentSpec(MaThamChieu="REF-1", SoTien=50_000, outcome="paid")])
    state.reset()
    assert state.submissions.views() == {}
    assert state.submissions.duplicate_acks == 0
    assert state.payments.views() == {}
    assert lookup(state) == []
