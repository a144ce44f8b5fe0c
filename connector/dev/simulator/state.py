"""The simulated adapter's memory and rules, without HTTP: sessions, dossiers, steps, faults, chaos,
counters and load measurements; citizen submissions (``submissions.SubmissionDesk``), the statistics reports
(``statistics.StatisticsDesk``) and the Payment Platform (``payment_platform.PaymentPlatform``) hang off it.

Every service method takes decoded JSON values and returns the adapter-shaped reply
``{"error_code", "message", "result"}``, so the aiohttp layer only moves bytes. Time comes from two
injectable clocks: a monotonic one for sessions, chaos windows and the rate meter, and the wall clock
for the receipt times a benchmark compares with events' ``occurred_at``. The monotonic one also decides
when a registered submission becomes visible.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.dev.simulator.chaos import Chaos, ChaosProfile, Verdict
from connector.dev.simulator.meter import RateMeter
from connector.dev.simulator.payment_platform import PaymentPlatform
from connector.dev.simulator.statistics import StatisticRefused, StatisticsDesk
from connector.dev.simulator.submissions import SubmissionDesk, SubmissionRefused
from connector.dev.simulator.validation import push_problem, steps_problem

Reply = dict[str, Any]

OK_MESSAGE = "Thành công"
SESSION_INVALID: Reply = {"error_code": "-2", "message": "Phiên làm việc không hợp lệ hoặc đã hết hạn"}


@dataclass(frozen=True)
class SimulatorConfig:
    username: str = "portal-sync"
    password: str = "secret"  # noqa: S105 - the simulator's own test credential
    session_ttl_seconds: float = 600
    # A session is refused after this many service calls (None: only the TTL applies). 0 = every
    # session is dead on arrival; 1 = it expires right after one use. Expiry in tests without sleeping.
    session_max_uses: int | None = None
    auth_endpoint: str = "/api/auth"
    integration_endpoint: str = "/api/integration"
    share_endpoint: str = "/api/share"
    keep_history: int = 100  # pushed records kept per dossier (0 = none), for tests
    # Misbehaviour from the start (and again after a reset); PUT /_sim/chaos replaces it at run time.
    chaos: ChaosProfile = field(default_factory=ChaosProfile)
    # The Payment Platform served by the same app: its partner code for us, the shared secret, the QUERY path.
    pp_partner_code: str = "PORTALSYNC"
    pp_secret: str = "pp-secret"  # noqa: S105 - the simulator's own test secret
    pp_query_path: str = "/pp/query"
    # The SOAP face (``soap_face``): its path, its WSDL (None: the one the project ships), and how far a
    # UsernameToken's Created may be from now.
    soap_path: str = "/soap"
    soap_wsdl: Path | None = None
    soap_skew_seconds: float = 300


class Fault(BaseModel):
    """An injected failure: the next ``times`` matching calls answer ``status`` after ``delay_seconds``.

    ``status`` None means "answer normally, only late" (the push is applied: a client that timed out
    does not know it was). ``service`` None matches every service call but not the login; "login"
    matches the login.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int | None = Field(503, ge=200, le=599)
    times: int = Field(1, ge=1)
    delay_seconds: float = Field(0.0, ge=0, le=3600)
    retry_after: str | None = None
    service: str | None = None
    body: str = "simulated fault"
    content_type: str = Field("text/plain", max_length=200)  # a hostile reply may claim to be SOAP or JSON

    def matches(self, service: str) -> bool:
        if self.service is None:
            return service != "login"
        return self.service == service


DOSSIER_FIELDS = (
    "record", "steps", "pushes", "history",
    "duplicate_pushes", "duplicate_steps", "first_received_at", "last_received_at",
)  # fmt: skip
DEFAULT_DOSSIER_FIELDS = DOSSIER_FIELDS[:4]  # the original view; ask for the rest by name or "all"
STATS_FIELDS = ("logins", "calls", "dstcode", "duplicate_pushes", "duplicate_steps")
DEFAULT_STATS_FIELDS = STATS_FIELDS[:3]


@dataclass
class StoredDossier:
    """One dossier as the portal holds it.

    ``duplicate_pushes`` counts pushes whose record equalled the stored one exactly (a harmless re-send);
    ``duplicate_steps`` counts steps equal to one already stored (they are appended all the same).
    ``first_received_at``/``last_received_at`` are wall-clock seconds of the first push and of the last
    push of a record or a step that took effect.
    """

    record: dict[str, Any]
    history: deque[dict[str, Any]]
    first_received_at: float
    last_received_at: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    pushes: int = 0
    duplicate_pushes: int = 0
    duplicate_steps: int = 0
    _step_hashes: set[int] = field(default_factory=set, repr=False)

    def as_json(self, fields: Collection[str] = DEFAULT_DOSSIER_FIELDS) -> dict[str, Any]:
        view = {
            "record": self.record,
            "steps": self.steps,
            "pushes": self.pushes,
            "history": list(self.history) if "history" in fields else [],
            "duplicate_pushes": self.duplicate_pushes,
            "duplicate_steps": self.duplicate_steps,
            "first_received_at": self.first_received_at,
            "last_received_at": self.last_received_at,
        }
        return {name: view[name] for name in DOSSIER_FIELDS if name in fields}

    def add_step(self, step: dict[str, Any], now: float) -> bool:
        """Append ``step``; True when an identical step was already stored.

        Steps are remembered by a 64-bit hash (a fraction of their size): a false match, which could only
        miscount, is vanishingly unlikely.
        """
        key = hash(_frozen(step))
        repeated = key in self._step_hashes
        if repeated:
            self.duplicate_steps += 1
        else:
            self._step_hashes.add(key)
        self.steps.append(step)
        self.last_received_at = now
        return repeated


@dataclass
class _ArmedFault:
    fault: Fault
    calls_left: int


@dataclass
class _Session:
    issued_at: float
    uses_left: int | None


class SimulatorState:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall_clock = wall_clock
        self.sessions: dict[str, _Session] = {}
        self.dossiers: dict[str, StoredDossier] = {}
        self._faults: list[_ArmedFault] = []
        self._logins: Counter[str] = Counter()
        self._calls: dict[str, Counter[str]] = {}
        self._dstcodes: Counter[str] = Counter()
        self._duplicate_pushes = 0
        self._duplicate_steps = 0
        self.chaos = Chaos(config.chaos, installed_at=clock())
        self.meter = RateMeter(clock)
        self.submissions = SubmissionDesk(clock=clock, wall_clock=wall_clock)
        self.statistics = StatisticsDesk(wall_clock=wall_clock)
        self.payments = PaymentPlatform(config.pp_partner_code, config.pp_secret, wall_clock=wall_clock)

    # --- sessions ---------------------------------------------------------------------------------

    def login(self, body: Any) -> Reply:
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not (
            isinstance(username, str)
            and isinstance(password, str)
            and _same(username, self.config.username)
            and _same(password, self.config.password)
        ):
            self._logins["rejected"] += 1
            return _error("Tên đăng nhập hoặc mật khẩu không đúng")
        now = self._clock()
        self.sessions = {t: s for t, s in self.sessions.items() if self._alive(s, now)}
        token = secrets.token_urlsafe(32)
        self.sessions[token] = _Session(now, self.config.session_max_uses)
        self._logins["ok"] += 1
        return {"error_code": 0, "message": "Đăng nhập thành công", "session": token}

    def use_session(self, token: Any) -> bool:
        """True when ``token`` is a live session; counts one use of it."""
        session = self.sessions.get(token) if isinstance(token, str) else None
        if session is None or not self._alive(session, self._clock()):
            return False
        if session.uses_left is not None:
            if session.uses_left <= 0:
                return False
            session.uses_left -= 1
        return True

    @property
    def session_ttl_seconds(self) -> float:
        """The lifetime of every session, issued or to be issued: the chaos profile's, else the config's."""
        override = self.chaos.profile.session_ttl_seconds
        return override if override is not None else self.config.session_ttl_seconds

    def _alive(self, session: _Session, now: float) -> bool:
        return now < session.issued_at + self.session_ttl_seconds

    # --- services ---------------------------------------------------------------------------------

    def apply_push(self, data: Any, is_updating: Any, *, copy: bool = True) -> Reply:
        """``DongBoHoSoMC``: all records or none. Create of an existing one fails; update upserts.

        ``copy=False`` stores the records themselves: for data decoded for this call alone.
        """
        problem = push_problem(data, is_updating)
        if problem is not None:
            return _error(problem)
        if is_updating == "False":
            existing = next((r["MaHoSo"] for r in data if r["MaHoSo"] in self.dossiers), None)
            if existing is not None:
                return {"error_code": "-3", "message": f"Hồ sơ {existing} đã tồn tại"}
        now = self._wall_clock()
        return _ok([self._store(_json_copy(record) if copy else record, now) for record in data])

    def apply_steps(self, data: Any, *, copy: bool = True) -> Reply:
        """``CapNhatTienDoHoSoMC``: steps of existing dossiers, appended in arrival order.

        ``copy=False`` stores the steps themselves: for data decoded for this call alone.
        """
        problem = steps_problem(data)
        if problem is not None:
            return _error(problem)
        missing = next((s["MaHoSo"] for s in data if s["MaHoSo"] not in self.dossiers), None)
        if missing is not None:
            return _error(f"Hồ sơ {missing} không tồn tại")
        now = self._wall_clock()
        for step in data:
            if self.dossiers[step["MaHoSo"]].add_step(_json_copy(step) if copy else step, now):
                self._duplicate_steps += 1
        return _ok([{"MaHoSo": step["MaHoSo"]} for step in data])

    def lookup(self, dossier_no: Any) -> Reply:
        """``TraCuuHoSo``: ``[record]`` for a visible citizen submission (its current revision) or a pushed
        dossier, else ``[]``."""
        if not isinstance(dossier_no, str) or not dossier_no:
            return _error("mahoso: required")
        submitted = self.submissions.current_record(dossier_no)
        if submitted is not None:
            return _ok([submitted])
        stored = self.dossiers.get(dossier_no)
        return _ok([stored.record] if stored is not None else [])

    # --- the way back: citizen submissions ------------------------------------------------------------

    def list_submissions(self, params: dict[str, Any]) -> Reply:
        """``DanhSachHoSo``: one page of an agency's visible submissions in a window of days."""
        try:
            return _ok(self.submissions.listing(params))
        except SubmissionRefused as exc:
            return _error(str(exc))

    def fetch_file(self, path: Any) -> Reply:
        """``LayTaiLieuHoSo``: a submitted file, base64 in ``TepTinDinhKem``."""
        try:
            stored = self.submissions.file(path)
        except SubmissionRefused as exc:
            return _error(str(exc))
        encoded = base64.b64encode(stored.content).decode("ascii")
        return {"error_code": "0", "message": OK_MESSAGE, "TepTinDinhKem": [{"TenTep": stored.name, "Base64": encoded}]}

    def acknowledge_submission(self, params: dict[str, Any]) -> Reply:
        """``CapNhatDaNhanHoSo``: the agency received a revision. Acknowledging it again is harmless."""
        try:
            self.submissions.acknowledge(params)
        except SubmissionRefused as exc:
            return _error(str(exc))
        return _ok(None)

    def apply_status_back(self, kind: Any, data: Any) -> Reply:
        """``DongBoTrangThaiHoSo``: the status of a submission that started on the portal."""
        try:
            self.submissions.status_back(kind, data)
        except SubmissionRefused as exc:
            return _error(str(exc))
        return _ok(None)

    # --- statistics -------------------------------------------------------------------------------

    def apply_statistic(self, params: dict[str, Any]) -> Reply:
        """``UpdateStatistic``: the report (the call's own fields) replaces the one kept for its agency × year ×
        month × ``IsMonthStatistic``; refused as a whole naming the field and the rule."""
        try:
            return _ok(self.statistics.push(params))
        except StatisticRefused as exc:
            return _error(str(exc))

    def _store(self, record: dict[str, Any], now: float) -> dict[str, str]:
        number = record["MaHoSo"]
        stored = self.dossiers.get(number)
        action = "updated"
        if stored is None:
            history: deque[dict[str, Any]] = deque(maxlen=self.config.keep_history)
            stored = StoredDossier(record, history, first_received_at=now, last_received_at=now)
            self.dossiers[number] = stored
            action = "created"
        elif stored.record == record:
            stored.duplicate_pushes += 1
            self._duplicate_pushes += 1
        stored.record = record
        stored.pushes += 1
        stored.last_received_at = now
        stored.history.append(record)
        return {"MaHoSo": number, "action": action}

    # --- chaos ------------------------------------------------------------------------------------

    def set_chaos(self, profile: ChaosProfile) -> None:
        """Put ``profile`` in force from now (its outage windows count from this moment)."""
        self.chaos = Chaos(profile, installed_at=self._clock())

    def chaos_verdict(self, service: str) -> Verdict:
        """What the chaos profile does to a call of ``service`` arriving now ("login" for the login)."""
        return self.chaos.verdict(service, self._clock())

    def withhold_seconds(self, service: str, reply: Reply) -> float | None:
        """For a served call: how long to withhold ``reply`` (a push that took effect), or None."""
        if outcome_of(reply) != "ok":
            return None
        return self.chaos.withhold_seconds(service)

    # --- faults, counters, inspection ------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.append(_ArmedFault(fault, fault.times))

    def clear_faults(self) -> int:
        """Disarm every fault (the dossiers stay); returns how many were armed."""
        armed = len(self._faults)
        self._faults.clear()
        return armed

    def take_fault(self, service: str) -> Fault | None:
        """The first injected fault matching ``service``, used up by one call."""
        armed = next((a for a in self._faults if a.fault.matches(service)), None)
        if armed is None:
            return None
        armed.calls_left -= 1
        if armed.calls_left == 0:
            self._faults.remove(armed)
        return armed.fault

    def count_call(self, service: str, outcome: str) -> None:
        if service == "login":
            self._logins[outcome] += 1
        else:
            self._calls.setdefault(service, Counter())[outcome] += 1

    def note_dstcode(self, dstcode: str | None) -> None:
        if dstcode is not None:
            self._dstcodes[dstcode] += 1

    def stats(self, fields: Collection[str] = DEFAULT_STATS_FIELDS) -> dict[str, Any]:
        """Counters: ``fields`` picks among ``STATS_FIELDS`` (the duplicates are asked for by name)."""
        view: dict[str, Any] = {
            "logins": dict(self._logins),
            "calls": {service: dict(outcomes) for service, outcomes in self._calls.items()},
            "dstcode": dict(self._dstcodes),
            "duplicate_pushes": self._duplicate_pushes,
            "duplicate_steps": self._duplicate_steps,
        }
        return {name: view[name] for name in STATS_FIELDS if name in fields}

    def snapshot(self, fields: Collection[str] = DEFAULT_DOSSIER_FIELDS) -> dict[str, Any]:
        return {number: stored.as_json(fields) for number, stored in self.dossiers.items()}

    def reset(self) -> None:
        """Forget every dossier, submission, statistics report, payment, session, fault and count; the configured
        chaos starts over from now."""
        self.sessions.clear()
        self.dossiers.clear()
        self._faults.clear()
        self._logins.clear()
        self._calls.clear()
        self._dstcodes.clear()
        self._duplicate_pushes = 0
        self._duplicate_steps = 0
        self.meter.reset()
        self.submissions.reset()
        self.statistics.reset()
        self.payments.reset()
        self.set_chaos(self.config.chaos)


def _json_copy(value: Any) -> Any:
    """A copy of decoded JSON sharing nothing mutable with it (a third of ``copy.deepcopy``'s cost)."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for decoded JSON: equal values give equal stand-ins."""
    if isinstance(value, dict):
        return ("{", frozenset((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("[", tuple(_frozen(item) for item in value))
    scalar: Hashable = value  # str, int, float, bool or None
    return scalar


def outcome_of(reply: Reply) -> str:
    """A short token for the stats: ok, already_exists, session_expired or rejected."""
    code = str(reply.get("error_code"))
    return {"0": "ok", "-3": "already_exists", "-2": "session_expired"}.get(code, "rejected")


def _ok(result: Any) -> Reply:
    return {"error_code": "0", "message": OK_MESSAGE, "result": result}


def _error(message: str) -> Reply:
    return {"error_code": "-1", "message": message}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


__all__ = [
    "DEFAULT_DOSSIER_FIELDS",
    "DEFAULT_STATS_FIELDS",
    "DOSSIER_FIELDS",
    "SESSION_INVALID",
    "STATS_FIELDS",
    "ChaosProfile",
    "Fault",
    "Reply",
    "SimulatorConfig",
    "SimulatorState",
    "StoredDossier",
    "outcome_of",
]
