"""The simulated adapter's memory and rules, without HTTP: sessions, dossiers, steps, faults, counters.

Every method takes decoded JSON values and returns the adapter-shaped reply
``{"error_code", "message", "result"}``, so the aiohttp layer only moves bytes.
"""

from __future__ import annotations

import copy
import hmac
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.simulator.validation import push_problem, steps_problem

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

    def matches(self, service: str) -> bool:
        if self.service is None:
            return service != "login"
        return self.service == service


@dataclass
class StoredDossier:
    record: dict[str, Any]
    history: deque[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    pushes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "steps": self.steps,
            "pushes": self.pushes,
            "history": list(self.history),
        }


@dataclass
class _ArmedFault:
    fault: Fault
    calls_left: int


@dataclass
class _Session:
    expires_at: float
    uses_left: int | None


class SimulatorState:
    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.sessions: dict[str, _Session] = {}
        self.dossiers: dict[str, StoredDossier] = {}
        self._faults: list[_ArmedFault] = []
        self._logins: Counter[str] = Counter()
        self._calls: dict[str, Counter[str]] = {}
        self._dstcodes: Counter[str] = Counter()

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
        self.sessions = {t: s for t, s in self.sessions.items() if s.expires_at > now}
        token = secrets.token_urlsafe(32)
        self.sessions[token] = _Session(now + self.config.session_ttl_seconds, self.config.session_max_uses)
        self._logins["ok"] += 1
        return {"error_code": 0, "message": "Đăng nhập thành công", "session": token}

    def use_session(self, token: Any) -> bool:
        """True when ``token`` is a live session; counts one use of it."""
        session = self.sessions.get(token) if isinstance(token, str) else None
        if session is None or session.expires_at <= self._clock():
            return False
        if session.uses_left is not None:
            if session.uses_left <= 0:
                return False
            session.uses_left -= 1
        return True

    # --- services ---------------------------------------------------------------------------------

    def apply_push(self, data: Any, is_updating: Any) -> Reply:
        """``DongBoHoSoMC``: all records or none. Create of an existing one fails; update upserts."""
        problem = push_problem(data, is_updating)
        if problem is not None:
            return _error(problem)
        if is_updating == "False":
            existing = next((r["MaHoSo"] for r in data if r["MaHoSo"] in self.dossiers), None)
            if existing is not None:
                return {"error_code": "-3", "message": f"Hồ sơ {existing} đã tồn tại"}
        return _ok([self._store(copy.deepcopy(record)) for record in data])

    def apply_steps(self, data: Any) -> Reply:
        """``CapNhatTienDoHoSoMC``: steps of existing dossiers, appended in arrival order."""
        problem = steps_problem(data)
        if problem is not None:
            return _error(problem)
        missing = next((s["MaHoSo"] for s in data if s["MaHoSo"] not in self.dossiers), None)
        if missing is not None:
            return _error(f"Hồ sơ {missing} không tồn tại")
        for step in data:
            self.dossiers[step["MaHoSo"]].steps.append(copy.deepcopy(step))
        return _ok([{"MaHoSo": step["MaHoSo"]} for step in data])

    def lookup(self, dossier_no: Any) -> Reply:
        """``TraCuuHoSo``: ``[record]`` when the portal has the dossier, else ``[]``."""
        if not isinstance(dossier_no, str) or not dossier_no:
            return _error("mahoso: required")
        stored = self.dossiers.get(dossier_no)
        return _ok([stored.record] if stored is not None else [])

    def _store(self, record: dict[str, Any]) -> dict[str, str]:
        number = record["MaHoSo"]
        stored = self.dossiers.get(number)
        action = "updated"
        if stored is None:
            stored = StoredDossier(record=record, history=deque(maxlen=self.config.keep_history))
            self.dossiers[number] = stored
            action = "created"
        stored.record = record
        stored.pushes += 1
        stored.history.append(record)
        return {"MaHoSo": number, "action": action}

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

    def stats(self) -> dict[str, Any]:
        return {
            "logins": dict(self._logins),
            "calls": {service: dict(outcomes) for service, outcomes in self._calls.items()},
            "dstcode": dict(self._dstcodes),
        }

    def snapshot(self) -> dict[str, Any]:
        return {number: stored.as_json() for number, stored in self.dossiers.items()}

    def reset(self) -> None:
        self.sessions.clear()
        self.dossiers.clear()
        self._faults.clear()
        self._logins.clear()
        self._calls.clear()
        self._dstcodes.clear()


def outcome_of(reply: Reply) -> str:
    """A short token for the stats: ok, already_exists, session_expired or rejected."""
    code = str(reply.get("error_code"))
    return {"0": "ok", "-3": "already_exists", "-2": "session_expired"}.get(code, "rejected")


def _ok(result: list[Any]) -> Reply:
    return {"error_code": "0", "message": OK_MESSAGE, "result": result}


def _error(message: str) -> Reply:
    return {"error_code": "-1", "message": message}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


__all__ = [
    "SESSION_INVALID",
    "Fault",
    "Reply",
    "SimulatorConfig",
    "SimulatorState",
    "StoredDossier",
    "outcome_of",
]
