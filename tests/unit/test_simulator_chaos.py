"""The simulated adapter's chaos knobs, through the pure state with a fake clock and a seeded RNG."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import pytest

from connector.dev.simulator.chaos import Chaos, ChaosInvalid, ChaosProfile, parse_profile, profile_from_flags
from connector.dev.simulator.state import SimulatorConfig, SimulatorState
from tests.factories import portal_record

CREDENTIALS = {"username": "portal-sync", "password": "secret"}
PUSH = "DongBoHoSoMC"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_with(chaos: dict[str, Any], clock: FakeClock | None = None) -> SimulatorState:
    state = SimulatorState(SimulatorConfig(), clock=clock or FakeClock())
    state.set_chaos(parse_profile(chaos))
    return state


def outcomes(state: SimulatorState, service: str, calls: int) -> Counter[str]:
    return Counter(state.chaos_verdict(service).outcome for _ in range(calls))


def test_the_default_profile_is_a_well_behaved_adapter() -> None:
    state = SimulatorState(SimulatorConfig(), clock=FakeClock())
    for service in ("login", PUSH, "TraCuuHoSo"):
        for _ in range(1000):
            verdict = state.chaos_verdict(service)
            assert (verdict.status, verdict.close, verdict.delay_seconds) == (None, False, 0.0)
    assert state.withhold_seconds(PUSH, {"error_code": "0"}) is None


def test_the_error_rate_answers_5xx_about_that_often_with_the_listed_statuses() -> None:
    state = state_with({"seed": 7, "error_rate": 0.3})
    calls = 20_000
    seen = outcomes(state, PUSH, calls)
    errors = calls - seen["served"]
    assert abs(errors / calls - 0.3) < 0.015  # about five standard deviations
    assert set(seen) == {"served", "chaos_500", "chaos_502", "chaos_503"}
    for status in ("chaos_500", "chaos_502", "chaos_503"):
        assert abs(seen[status] / errors - 1 / 3) < 0.03


def test_error_statuses_are_chosen_from_the_list() -> None:
    state = state_with({"seed": 1, "error_rate": 1, "error_statuses": [502]})
    verdict = state.chaos_verdict(PUSH)
    assert (verdict.status, verdict.outcome, verdict.retry_after) == (502, "chaos_502", None)


def test_the_error_rate_per_service_and_the_login_only_by_name() -> None:
    state = state_with({"seed": 3, "error_rate": {PUSH: 1.0, "*": 0.0}})
    assert outcomes(state, PUSH, 100)["served"] == 0
    assert outcomes(state, "TraCuuHoSo", 100) == {"served": 100}

    everywhere = state_with({"seed": 3, "error_rate": {"*": 1.0}})
    assert outcomes(everywhere, "CapNhatTienDoHoSoMC", 10)["served"] == 0
    assert outcomes(everywhere, "login", 10) == {"served": 10}
    assert outcomes(state_with({"error_rate": 1.0}), "login", 10) == {"served": 10}
    assert outcomes(state_with({"error_rate": {"login": 1.0}}), "login", 10)["served"] == 0


def test_a_seed_reproduces_the_same_run() -> None:
    profile = {"seed": 42, "error_rate": 0.5, "latency": {"distribution": "uniform", "min_ms": 0, "max_ms": 100}}

    def run(chaos: dict[str, Any]) -> list[tuple[int | None, float]]:
        state = state_with(chaos)
        return [(v.status, v.delay_seconds) for v in (state.chaos_verdict(PUSH) for _ in range(200))]

    assert run(profile) == run(profile)
    assert run(profile) != run({**profile, "seed": 43})


def test_fixed_latency() -> None:
    state = state_with({"latency": {"distribution": "fixed", "ms": 20}})
    assert {state.chaos_verdict(s).delay_seconds for s in ("login", PUSH)} == {0.02}


def test_uniform_latency_stays_within_its_bounds() -> None:
    state = state_with({"seed": 5, "latency": {"distribution": "uniform", "min_ms": 10, "max_ms": 30}})
    delays = [state.chaos_verdict(PUSH).delay_seconds for _ in range(5000)]
    assert min(delays) >= 0.010
    assert max(delays) <= 0.030
    assert abs(statistics.fmean(delays) - 0.020) < 0.001


def test_lognormal_latency_has_the_given_median_and_99th_percentile() -> None:
    state = state_with({"seed": 9, "latency": {"distribution": "lognormal", "p50_ms": 10, "p99_ms": 200}})
    delays = sorted(state.chaos_verdict(PUSH).delay_seconds * 1000 for _ in range(40_000))
    assert abs(delays[len(delays) // 2] / 10 - 1) < 0.05
    assert abs(delays[int(len(delays) * 0.99)] / 200 - 1) < 0.15


def test_lognormal_latency_can_be_capped() -> None:
    capped = {"distribution": "lognormal", "p50_ms": 10, "p99_ms": 1000, "max_ms": 50}
    state = state_with({"seed": 9, "latency": capped})
    assert max(state.chaos_verdict(PUSH).delay_seconds for _ in range(5000)) == 0.05


def test_latency_applies_to_refusals_too() -> None:
    state = state_with({"latency": {"distribution": "fixed", "ms": 5}, "error_rate": 1.0})
    verdict = state.chaos_verdict(PUSH)
    assert verdict.status is not None
    assert verdict.delay_seconds == 0.005


def test_the_throttle_answers_429_beyond_the_limit_of_each_one_second_window() -> None:
    clock = FakeClock()
    state = state_with({"throttle": {"requests_per_second": 3, "retry_after_seconds": 2}}, clock)
    answers = []
    for offset in (0.0, 0.1, 0.2, 0.3, 0.99):
        clock.now = 1000.0 + offset
        verdict = state.chaos_verdict("login" if offset == 0.0 else PUSH)  # the login counts
        answers.append((verdict.status, verdict.retry_after))
    assert answers == [(None, None)] * 3 + [(429, 2)] * 2
    clock.now = 1001.0  # the next window
    assert [state.chaos_verdict(PUSH).status for _ in range(4)] == [None, None, None, 429]
    assert state.stats()["calls"] == {}  # the verdict is counted by whoever answers it


def test_throttle_windows_count_from_when_the_profile_was_put() -> None:
    clock = FakeClock()
    clock.now = 1000.5
    state = state_with({"throttle": {"requests_per_second": 1}}, clock)
    clock.now = 1001.4
    assert state.chaos_verdict(PUSH).status is None
    clock.now = 1001.5  # 1.0 s after the PUT: a new window
    assert state.chaos_verdict(PUSH).status is None
    assert state.chaos_verdict(PUSH).status == 429


def test_bursts_of_forced_429s() -> None:
    clock = FakeClock()
    state = state_with({"burst": {"every_seconds": 10, "for_seconds": 2, "retry_after_seconds": 3}}, clock)

    def status_at(elapsed: float) -> int | None:
        clock.now = 1000.0 + elapsed
        verdict = state.chaos_verdict(PUSH)
        assert verdict.retry_after == (3 if verdict.status == 429 else None)
        return verdict.status

    assert [status_at(t) for t in (0, 1, 9.99)] == [None, None, None]
    assert [status_at(t) for t in (10, 11.99, 12, 19.9, 20, 21, 22)] == [429, 429, None, None, 429, 429, None]


def test_outage_windows_answer_503_to_every_call_including_the_login() -> None:
    clock = FakeClock()
    state = state_with({"outages": [{"start_in_seconds": 30, "duration_seconds": 20}]}, clock)

    def at(elapsed: float, service: str = PUSH) -> str:
        clock.now = 1000.0 + elapsed
        return state.chaos_verdict(service).outcome

    assert at(29.99) == "served"
    assert [at(30), at(30, "login"), at(49.99, "TraCuuHoSo")] == ["outage"] * 3
    assert at(50) == "served"
    clock.now = 1040.0
    assert state.chaos_verdict("login").status == 503


def test_a_reset_outage_closes_the_connection() -> None:
    clock = FakeClock()
    outages = [
        {"start_in_seconds": 0, "duration_seconds": 5, "mode": "reset"},
        {"start_in_seconds": 10, "duration_seconds": 5},
    ]
    state = state_with({"outages": outages, "latency": {"distribution": "fixed", "ms": 50}}, clock)
    verdict = state.chaos_verdict("login")
    assert (verdict.close, verdict.status, verdict.delay_seconds, verdict.outcome) == (
        True, None, 0.0, "outage_reset"
    )  # fmt: skip
    clock.now += 5
    assert not state.chaos_verdict("login").close
    clock.now += 5
    assert state.chaos_verdict("login").status == 503


def test_outages_count_from_the_put() -> None:
    clock = FakeClock()
    state = SimulatorState(SimulatorConfig(), clock=clock)
    clock.now = 5000.0
    state.set_chaos(parse_profile({"outages": [{"start_in_seconds": 1, "duration_seconds": 1}]}))
    assert state.chaos_verdict(PUSH).outcome == "served"
    clock.now = 5001.0
    assert state.chaos_verdict(PUSH).outcome == "outage"


def test_an_outage_after_so_many_calls_starts_with_the_next_call_whatever_the_time() -> None:
    clock = FakeClock()
    state = state_with({"outages": [{"start_in_seconds": 0, "after_calls": 3, "duration_seconds": 2}]}, clock)
    assert [state.chaos_verdict(PUSH).outcome for _ in range(3)] == ["served"] * 3
    clock.now += 3600  # time alone opens nothing: the fourth call does
    assert [state.chaos_verdict(s).outcome for s in (PUSH, "login")] == ["outage", "outage"]
    clock.now += 1.99
    assert state.chaos_verdict(PUSH).outcome == "outage"
    clock.now += 0.01
    assert state.chaos_verdict(PUSH).outcome == "served"


def test_session_lifetime_override_applies_to_sessions_already_issued() -> None:
    clock = FakeClock()
    state = SimulatorState(SimulatorConfig(session_ttl_seconds=600), clock=clock)
    token = state.login(CREDENTIALS)["session"]
    clock.now += 5
    assert state.use_session(token)
    state.set_chaos(parse_profile({"session_ttl_seconds": 3}))
    assert not state.use_session(token)
    fresh = state.login(CREDENTIALS)["session"]
    clock.now += 2.9
    assert state.use_session(fresh)
    clock.now += 0.1
    assert not state.use_session(fresh)
    state.set_chaos(ChaosProfile())  # back to normal: the configured lifetime again
    assert state.use_session(fresh)


def test_apply_then_timeout_applies_the_push_and_withholds_its_reply() -> None:
    state = state_with({"apply_then_timeout_rate": 1.0, "hang_seconds": 45})
    reply = state.apply_push([portal_record()], "True")
    assert state.withhold_seconds(PUSH, reply) == 45
    assert state.dossiers[portal_record()["MaHoSo"]].record == portal_record()
    step_reply = {"error_code": "0", "result": []}
    assert state.withhold_seconds("CapNhatTienDoHoSoMC", step_reply) == 45
    assert state.withhold_seconds("TraCuuHoSo", {"error_code": "0", "result": []}) is None
    refused = state.apply_push([portal_record()], "False")  # exists: refused, so nothing to withhold
    assert refused["error_code"] == "-3"
    assert state.withhold_seconds(PUSH, refused) is None


def test_apply_then_timeout_rate() -> None:
    chaos = Chaos(parse_profile({"seed": 11, "apply_then_timeout_rate": 0.1}), installed_at=0.0)
    withheld = sum(chaos.withhold_seconds(PUSH) is not None for _ in range(20_000))
    assert abs(withheld / 20_000 - 0.1) < 0.01


def test_reset_puts_the_configured_chaos_back_from_now() -> None:
    clock = FakeClock()
    configured = parse_profile({"outages": [{"start_in_seconds": 10, "duration_seconds": 5}]})
    state = SimulatorState(SimulatorConfig(chaos=configured), clock=clock)
    clock.now += 10
    assert state.chaos_verdict(PUSH).outcome == "outage"
    state.set_chaos(parse_profile({"error_rate": 1.0}))
    clock.now += 100
    state.reset()
    assert state.chaos.profile == configured
    assert state.chaos_verdict(PUSH).outcome == "served"
    clock.now += 10
    assert state.chaos_verdict(PUSH).outcome == "outage"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"error_rate": 1.5}, "error_rate.*: Input should be less than or equal to 1"),
        ({"error_rate": {PUSH: -0.1}}, f"error_rate.{PUSH}: Input should be greater than or equal to 0"),
        ({"error_rate": True}, "error_rate: Value error, must be a probability"),
        ({"error_rate": "0.3"}, "error_rate: Value error, must be a probability"),
        ({"error_statuses": [429]}, "error_statuses.0: Input should be greater than or equal to 500"),
        ({"error_statuses": []}, "error_statuses: List should have at least 1 item"),
        ({"latency": {"ms": 5}}, "latency: Unable to extract tag using discriminator 'distribution'"),
        ({"latency": {"distribution": "fixed"}}, "latency.fixed.ms: Field required"),
        ({"latency": {"distribution": "uniform", "min_ms": 9, "max_ms": 1}}, "min_ms must not exceed max_ms"),
        ({"latency": {"distribution": "lognormal", "p50_ms": 9, "p99_ms": 1}}, "p99_ms must not be below p50_ms"),
        ({"throttle": {"retry_after_seconds": 1}}, "throttle.requests_per_second: Field required"),
        ({"throttle": {"requests_per_second": 5, "retry_after_seconds": 0.5}}, "throttle.retry_after_seconds"),
        ({"burst": {"every_seconds": 2, "for_seconds": 2}}, "for_seconds must be shorter than every_seconds"),
        ({"outages": [{"start_in_seconds": 1}]}, "outages.0.duration_seconds: Field required"),
        ({"outages": [{"start_in_seconds": 1, "duration_seconds": 1, "mode": "x"}]}, "outages.0.mode"),
        ({"session_ttl_seconds": 0}, "session_ttl_seconds: Input should be greater than 0"),
        ({"apply_then_timeout_rate": 2}, "apply_then_timeout_rate: Input should be less than or equal to 1"),
        ({"seed": "1"}, "seed: Input should be a valid integer"),
        ({"error_rates": 0.3}, "error_rates: Extra inputs are not permitted"),
        ([], "Input should be a valid dictionary"),
    ],
)
def test_bad_profiles_are_refused_naming_the_problem(body: Any, problem: str) -> None:
    with pytest.raises(ChaosInvalid) as caught:
        parse_profile(body)
    assert problem in str(caught.value)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ChaosInvalid) as caught:
        parse_profile({"error_rate": 2, "hang_seconds": -1})
    assert str(caught.value).count(";") == 1


def test_a_profile_reads_back_as_it_was_put() -> None:
    profile = parse_profile({
        "seed": 1,
        "error_rate": {PUSH: 0.3, "*": 0.1},
        "latency": {"distribution": "lognormal", "p50_ms": 10, "p99_ms": 250, "max_ms": 2000},
        "throttle": {"requests_per_second": 500, "retry_after_seconds": 2},
        "burst": {"every_seconds": 10, "for_seconds": 2},
        "outages": [{"start_in_seconds": 30, "duration_seconds": 20, "mode": "reset"}],
        "session_ttl_seconds": 3,
        "apply_then_timeout_rate": 0.1,
        "hang_seconds": 5,
    })
    assert parse_profile(profile.model_dump(mode="json")) == profile
    assert parse_profile({"error_rate": 0.2}).error_rate == {"*": 0.2}


def test_command_line_flags_make_a_profile() -> None:
    profile = profile_from_flags(
        seed=1, error_rates=["0.3", "login=0.05"], error_statuses="502,504", latency_ms="20",
        throttle_rps=500, retry_after=2, burst="10:2", outages=["30:20", "60:5:reset"],
        apply_then_timeout_rate=0.1, hang_seconds=30, crashing_dossiers=["X-1", "X-2"],
    )  # fmt: skip
    assert profile == parse_profile({
        "seed": 1,
        "error_rate": {"*": 0.3, "login": 0.05},
        "error_statuses": [502, 504],
        "latency": {"distribution": "fixed", "ms": 20},
        "throttle": {"requests_per_second": 500, "retry_after_seconds": 2},
        "burst": {"every_seconds": 10, "for_seconds": 2, "retry_after_seconds": 2},
        "outages": [
            {"start_in_seconds": 30, "duration_seconds": 20},
            {"start_in_seconds": 60, "duration_seconds": 5, "mode": "reset"},
        ],
        "apply_then_timeout_rate": 0.1,
        "hang_seconds": 30,
        "crashing_dossiers": ["X-1", "X-2"],
    })
    assert profile_from_flags() == ChaosProfile()
    assert profile_from_flags(latency_ms="uniform:5:50").latency == parse_profile(
        {"latency": {"distribution": "uniform", "min_ms": 5, "max_ms": 50}}
    ).latency
    assert profile_from_flags(latency_ms="lognormal:10:200").latency == parse_profile(
        {"latency": {"distribution": "lognormal", "p50_ms": 10, "p99_ms": 200}}
    ).latency


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        ({"error_rates": ["lots"]}, "--error-rate: 'lots' is not a number"),
        ({"error_rates": ["1.5"]}, "error_rate.*: Input should be less than or equal to 1"),
        ({"error_statuses": "500;502"}, "--error-statuses: '500;502' is not a ','-separated list"),
        ({"latency_ms": "uniform:5"}, "--latency-ms: '5' is not 2 numbers separated by ':'"),
        ({"latency_ms": "normal:5:6"}, "--latency-ms: 'normal:5:6' is not a number"),
        ({"burst": "10"}, "--burst: '10' is not 2 numbers separated by ':'"),
        ({"outages": ["30"]}, "--outage: '30' is not 2 numbers separated by ':'"),
        ({"outages": ["30:20:later"]}, "must be 'reset' or 'unavailable', not 'later'"),
        ({"throttle_rps": -1}, "throttle.requests_per_second: Input should be greater than or equal to 0"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(flags: dict[str, Any], problem: str) -> None:
    with pytest.raises(ChaosInvalid) as caught:
        profile_from_flags(**flags)
    assert problem in str(caught.value)


def test_a_push_naming_a_crashing_dossier_always_crashes_and_others_pass() -> None:
    chaos = Chaos(parse_profile({"crashing_dossiers": ["X-1"], "crash_status": 502}), installed_at=0)
    poisoned = [{"MaHoSo": "A-1"}, {"MaHoSo": "X-1"}]
    assert [chaos.crash_status(PUSH, poisoned) for _ in range(5)] == [502] * 5
    assert chaos.crash_status("CapNhatTienDoHoSoMC", [{"MaHoSo": "X-1"}]) == 502
    assert chaos.crash_status(PUSH, [{"MaHoSo": "A-1"}, "not a record"]) is None
    assert chaos.crash_status("TraCuuHoSo", [{"MaHoSo": "X-1"}]) is None  # only pushes
    assert Chaos(ChaosProfile(), installed_at=0).crash_status(PUSH, poisoned) is None
