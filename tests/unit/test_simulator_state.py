"""The simulated adapter's memory and rules, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from connector.dev.simulator.chaos import parse_profile
from connector.dev.simulator.state import (
    DEFAULT_DOSSIER_FIELDS,
    DOSSIER_FIELDS,
    STATS_FIELDS,
    Fault,
    SimulatorConfig,
    SimulatorState,
)
from tests.factories import portal_record

NUMBER = "000.00.01.H22-240101-0001"
CREDENTIALS = {"username": "portal-sync", "password": "secret"}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(number: str = NUMBER, **changes: Any) -> dict[str, Any]:
    return portal_record(number, **changes)


def step(number: str = NUMBER, content: str = "Tiếp nhận") -> dict[str, Any]:
    return {
        "MaHoSo": number,
        "NguoiXuLy": "Trần Thị B",
        "ChucDanh": "",
        "ThoiDiemXuLy": "20240102090000",
        "PhongBanXuLy": "",
        "NoiDungXuLy": content,
        "TrangThai": "4",
        "NgayBatDau": "",
        "NgayKetThucTheoQuyDinh": "",
    }


def test_login_with_the_right_credentials_gives_a_session() -> None:
    state = SimulatorState(SimulatorConfig())
    reply = state.login(CREDENTIALS)
    assert reply["error_code"] == 0
    assert reply["message"] == "Đăng nhập thành công"
    assert state.use_session(reply["session"])
    assert state.stats()["logins"] == {"ok": 1}


def test_login_with_wrong_credentials_is_refused() -> None:
    state = SimulatorState(SimulatorConfig())
    for body in ({"username": "portal-sync", "password": "nope"}, {"username": "x"}, ["x"], None):
        reply = state.login(body)
        assert reply["error_code"] == "-1"
        assert "session" not in reply
    assert state.stats()["logins"] == {"rejected": 4}


def test_sessions_expire_after_their_ttl() -> None:
    clock = FakeClock()
    state = SimulatorState(SimulatorConfig(session_ttl_seconds=60), clock=clock)
    token = state.login(CREDENTIALS)["session"]
    clock.now += 59.9
    assert state.use_session(token)
    clock.now += 0.1
    assert not state.use_session(token)


def test_sessions_can_be_limited_to_a_number_of_uses() -> None:
    state = SimulatorState(SimulatorConfig(session_max_uses=2))
    token = state.login(CREDENTIALS)["session"]
    assert [state.use_session(token) for _ in range(3)] == [True, True, False]
    assert not state.use_session(state.login(CREDENTIALS)["session"] + "x")
    assert not state.use_session(None)


def test_dead_on_arrival_sessions() -> None:
    state = SimulatorState(SimulatorConfig(session_max_uses=0))
    assert not state.use_session(state.login(CREDENTIALS)["session"])


def test_create_then_lookup() -> None:
    state = SimulatorState(SimulatorConfig())
    reply = state.apply_push([record()], "False")
    assert reply == {
        "error_code": "0",
        "message": "Thành công",
        "result": [{"MaHoSo": NUMBER, "action": "created"}],
    }
    assert state.lookup(NUMBER)["result"] == [record()]
    assert state.lookup("000.00.01.H22-nope")["result"] == []


def test_create_of_an_existing_dossier_is_refused_and_changes_nothing() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    reply = state.apply_push([record(TrangThaiHoSo="4")], "False")
    assert reply == {"error_code": "-3", "message": f"Hồ sơ {NUMBER} đã tồn tại"}
    assert state.dossiers[NUMBER].record["TrangThaiHoSo"] == "2"
    assert state.dossiers[NUMBER].pushes == 1


def test_update_replaces_the_record_and_upserts_a_missing_one() -> None:
    state = SimulatorState(SimulatorConfig())
    assert state.apply_push([record()], "True")["result"] == [{"MaHoSo": NUMBER, "action": "created"}]
    assert state.apply_push([record(TrangThaiHoSo="4")], "True")["result"] == [
        {"MaHoSo": NUMBER, "action": "updated"}
    ]
    stored = state.snapshot()[NUMBER]
    assert stored["record"]["TrangThaiHoSo"] == "4"
    assert stored["pushes"] == 2
    assert [r["TrangThaiHoSo"] for r in stored["history"]] == ["2", "4"]


def test_one_invalid_record_refuses_the_whole_call() -> None:
    state = SimulatorState(SimulatorConfig())
    other = "000.00.01.H22-240101-0002"
    reply = state.apply_push([record(), record(other, GhiChu="x" * 2001)], "False")
    assert reply == {"error_code": "-1", "message": "data[1].GhiChu: longer than 2000 characters"}
    assert state.dossiers == {}


def test_history_is_bounded() -> None:
    state = SimulatorState(SimulatorConfig(keep_history=2))
    for status in ("1", "2", "4"):
        state.apply_push([record(TrangThaiHoSo=status)], "True")
    assert [r["TrangThaiHoSo"] for r in state.snapshot()[NUMBER]["history"]] == ["2", "4"]
    assert state.snapshot()[NUMBER]["pushes"] == 3

    none_kept = SimulatorState(SimulatorConfig(keep_history=0))
    none_kept.apply_push([record()], "True")
    assert none_kept.snapshot()[NUMBER]["history"] == []


def test_stored_records_do_not_alias_the_caller_data() -> None:
    state = SimulatorState(SimulatorConfig())
    sent = record()
    state.apply_push([sent], "True")
    sent["TrangThaiHoSo"] = "9"
    assert state.dossiers[NUMBER].record["TrangThaiHoSo"] == "2"


def test_steps_are_appended_in_arrival_order() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    assert state.apply_steps([step(content="một"), step(content="hai")])["error_code"] == "0"
    assert state.apply_steps([step(content="ba")])["error_code"] == "0"
    assert [s["NoiDungXuLy"] for s in state.dossiers[NUMBER].steps] == ["một", "hai", "ba"]


def test_steps_of_a_missing_dossier_are_refused_as_a_whole() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    missing = "000.00.01.H22-240101-0009"
    reply = state.apply_steps([step(), step(missing)])
    assert reply == {"error_code": "-1", "message": f"Hồ sơ {missing} không tồn tại"}
    assert state.dossiers[NUMBER].steps == []


def test_invalid_steps_are_refused() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    bad = step()
    bad["NoiDungXuLy"] = None
    assert state.apply_steps([bad]) == {
        "error_code": "-1",
        "message": "data[0].NoiDungXuLy: must be a string",
    }


def test_lookup_needs_a_dossier_number() -> None:
    state = SimulatorState(SimulatorConfig())
    assert state.lookup(None)["error_code"] == "-1"
    assert state.lookup("")["error_code"] == "-1"


def test_faults_are_used_up_in_order_and_skip_the_login_unless_named() -> None:
    state = SimulatorState(SimulatorConfig())
    state.add_fault(Fault(status=503, times=2))
    state.add_fault(Fault(status=500, service="login"))
    assert state.take_fault("login") == Fault(status=500, service="login")
    assert state.take_fault("login") is None
    assert state.take_fault("TraCuuHoSo") == Fault(status=503, times=2)
    assert state.take_fault("DongBoHoSoMC") == Fault(status=503, times=2)
    assert state.take_fault("DongBoHoSoMC") is None


def test_reset_forgets_everything() -> None:
    state = SimulatorState(SimulatorConfig())
    token = state.login(CREDENTIALS)["session"]
    state.apply_push([record()], "False")
    state.apply_push([record()], "True")
    state.apply_steps([step(), step()])
    state.count_call("DongBoHoSoMC", "ok")
    state.note_dstcode("X")
    state.add_fault(Fault())
    state.set_chaos(parse_profile({"error_rate": 1.0}))
    with state.meter.track():
        pass
    state.reset()
    assert state.snapshot() == {}
    assert state.stats(STATS_FIELDS) == {
        "logins": {}, "calls": {}, "dstcode": {}, "duplicate_pushes": 0, "duplicate_steps": 0
    }  # fmt: skip
    assert not state.use_session(token)
    assert state.take_fault("DongBoHoSoMC") is None
    assert state.chaos_verdict("DongBoHoSoMC").status is None
    assert state.meter.snapshot()["requests"] == 0


def test_clearing_faults_disarms_them_and_keeps_the_dossiers() -> None:
    from connector.dev.simulator.state import Fault, SimulatorConfig, SimulatorState

    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    state.add_fault(Fault(status=503, times=5))
    assert state.clear_faults() == 1
    assert state.take_fault("DongBoHoSoMC") is None
    assert NUMBER in state.dossiers


def test_an_identical_re_push_is_counted_as_a_duplicate() -> None:
    state = SimulatorState(SimulatorConfig())
    other = "000.00.01.H22-240101-0002"
    state.apply_push([record(), record(other)], "False")
    state.apply_push([record(), record(other, TrangThaiHoSo="4")], "True")  # one re-sent, one changed
    state.apply_push([record()], "True")
    assert state.apply_push([record()], "False")["error_code"] == "-3"  # refused: not a push that happened
    view = state.snapshot(DOSSIER_FIELDS)
    assert (view[NUMBER]["pushes"], view[NUMBER]["duplicate_pushes"]) == (3, 2)
    assert (view[other]["pushes"], view[other]["duplicate_pushes"]) == (2, 0)
    assert state.stats(["duplicate_pushes"]) == {"duplicate_pushes": 2}


def test_a_repeated_step_is_appended_and_counted() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    state.apply_steps([step(content="một"), step(content="hai")])
    state.apply_steps([step(content="hai"), step(content="ba"), step(content="ba")])
    stored = state.dossiers[NUMBER]
    assert [s["NoiDungXuLy"] for s in stored.steps] == ["một", "hai", "hai", "ba", "ba"]
    assert stored.duplicate_steps == 2
    assert state.stats(["duplicate_steps", "duplicate_pushes"]) == {"duplicate_pushes": 0, "duplicate_steps": 2}


def test_steps_differing_in_any_field_are_not_duplicates() -> None:
    state = SimulatorState(SimulatorConfig())
    state.apply_push([record()], "False")
    later = step()
    later["ThoiDiemXuLy"] = "20240102090001"
    extra = {**step(), "NewerField": ["x", {"y": 1}]}
    state.apply_steps([step(), later, extra, {**step(), "NewerField": ["x", {"y": 1}]}])
    assert state.dossiers[NUMBER].duplicate_steps == 1


def test_receipt_times_come_from_the_wall_clock() -> None:
    wall = FakeClock(1_700_000_000.0)
    state = SimulatorState(SimulatorConfig(), wall_clock=wall)
    state.apply_push([record()], "False")
    wall.now += 2.5
    state.apply_push([record(TrangThaiHoSo="4")], "True")
    times = ["first_received_at", "last_received_at"]
    assert state.snapshot(times)[NUMBER] == {"first_received_at": 1_700_000_000.0, "last_received_at": 1_700_000_002.5}
    wall.now += 1
    state.apply_steps([step()])
    assert state.snapshot(times)[NUMBER]["last_received_at"] == 1_700_000_003.5
    wall.now += 1
    state.apply_push([record(GhiChu="x" * 2001)], "True")  # refused: received, but nothing stored
    assert state.snapshot(times)[NUMBER]["last_received_at"] == 1_700_000_003.5


def test_views_keep_their_original_shape_unless_more_is_asked_for() -> None:
    state = SimulatorState(SimulatorConfig(), wall_clock=lambda: 5.0)
    state.apply_push([record()], "False")
    assert tuple(state.snapshot()[NUMBER]) == DEFAULT_DOSSIER_FIELDS == ("record", "steps", "pushes", "history")
    assert tuple(state.snapshot(DOSSIER_FIELDS)[NUMBER]) == DOSSIER_FIELDS
    assert state.snapshot(["pushes", "record"])[NUMBER] == {"record": record(), "pushes": 1}
    assert tuple(state.stats()) == ("logins", "calls", "dstcode")
    assert tuple(state.stats(STATS_FIELDS)) == STATS_FIELDS


@pytest.mark.parametrize("keep_history", [0, 100])
def test_many_records_in_a_batch_are_stored_and_re_sends_counted(keep_history: int) -> None:
    state = SimulatorState(SimulatorConfig(keep_history=keep_history))
    batch = [record(f"000.00.01.H22-240101-{i:04d}") for i in range(100)]
    assert state.apply_push(batch, "True")["error_code"] == "0"
    assert state.apply_push(batch, "True")["error_code"] == "0"
    assert len(state.dossiers) == 100
    assert state.stats(["duplicate_pushes"]) == {"duplicate_pushes": 100}
