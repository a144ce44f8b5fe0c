"""No citizen's identity reaches a log line, through every log-producing path that can be reached cheaply: the
failure recorder's "event failed", the adapter client's call log and its session, an exception logged with
``exc_info``, a configuration error. The identities are ``connector.dev.samples``' own (names, ID numbers, phones,
e-mail addresses). ``capture_logs`` shows the event dicts before redaction (what the code puts in log
fields: never a name, never a value the far side wrote); a StringIO shows the rendered lines (after it)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from connector import failures
from connector.config import RetrySettings, load_settings
from connector.dev.samples import generate_events
from connector.errors import ConfigError, InvalidInput
from connector.failures import FailureRecorder
from connector.observability import configure_logging
from connector.portal import client as rest
from connector.portal.errors import LoginFailed, PortalRejected
from connector.store import StateStore
from tests.factories import portal_record
from tests.hostile.fake_adapter import STEP_SECONDS, FakeAdapter, adapter, json_reply

APPLICANTS = {}
for _message in generate_events(dossiers=8, include_bad=False):
    _applicant = json.loads(_message.value)["dossier"]["applicant"]
    APPLICANTS[_applicant["id_number"]] = _applicant
PEOPLE = list(APPLICANTS.values())
A = PEOPLE[0]


def identities(people: list[dict[str, Any]] = PEOPLE) -> list[str]:
    return [value for p in people for value in (p["name"], p["id_number"], p["phone"], p["email"])]


def glued(p: dict[str, Any]) -> str:
    """An identity as careless text carries it: glued to labels and punctuation."""
    return f"CCCD:{p['id_number']}; tel{p['phone']}; <{p['email']}>"


@dataclass
class Consumed:
    topic: str = "dossier.events"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"000.00.01.G12-201005-0001"
    value: bytes | None = b"{}"
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The daemon's logging set-up writing JSON lines to a buffer; the modules under test get fresh loggers (one
    cached under an earlier configuration would write elsewhere)."""
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, cache=False)
    for module in (failures, rest):
        monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
    try:
        yield out
    finally:
        structlog.reset_defaults()


def assert_no_identity(text: str, people: list[dict[str, Any]] = PEOPLE) -> None:
    for secret in identities(people):
        assert secret not in text, secret


async def record_failures(store: StateStore) -> None:
    recorder = FailureRecorder(store, None, RetrySettings())
    recorder.start()
    try:
        mapped = {"DongBoHoSoMC": {"MaHoSo": "000.00.01.G12-201005-0001", "ChuHoSo": A["name"],
                                   "SoDienThoai": A["phone"], "Email": A["email"],
                                   "DinhDanhCHS": [{"SoDinhDanh": A["id_number"]}]}}
        # The adapter's own words quote the citizen: failure table and DLQ headers only.
        remote = PortalRejected(f"Hồ sơ của {A['name']} ({glued(A)}) không hợp lệ", error_code="-1")
        # Our own message, were it careless enough to quote a value.
        ours = InvalidInput(f"dossier.applicant.id_number: {glued(A)} is not one", reason="schema",
                            field="dossier.applicant.id_number")
        for offset, error in enumerate((remote, ours)):
            await asyncio.wait_for(recorder.record(Consumed(offset=offset), error, service="DongBoHoSoMC",
                                                   mapped_payload=mapped), STEP_SECONDS)
    finally:
        await recorder.close()


async def test_the_event_failed_line_names_no_one(tmp_path: Path, rendered: io.StringIO,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    try:
        with capture_logs() as events:
            monkeypatch.setattr(failures, "log", structlog.get_logger(failures.__name__))
            await record_failures(store)
        failed = [e for e in events if e["event"] == "event failed"]
        assert len(failed) == 2
        assert failed[0]["error"] is None  # the far side's text is not a log field
        logged = json.dumps(events, ensure_ascii=False, default=str)
        assert A["name"] not in logged  # a name is never put in a log field: no pattern could find it
        monkeypatch.setattr(failures, "log", structlog.get_logger(failures.__name__))
        await record_failures(store)  # now through the configured chain, to the buffer
    finally:
        await store.close()
    text = rendered.getvalue()
    assert text.count('"event failed"') == 2
    assert_no_identity(text, [A])


async def test_the_client_and_session_log_no_identity(adapter: FakeAdapter, rendered: io.StringIO) -> None:
    adapter.login = json_reply({"error_code": "-1", "message": f"Tài khoản {A['name']} {glued(A)} bị khóa"})
    record = portal_record("000.00.01.H22-240101-0001", ChuHoSo=A["name"], SoDienThoai=A["phone"], Email=A["email"])
    async with adapter.client() as client:
        with pytest.raises(LoginFailed) as refused:
            await asyncio.wait_for(client.push_dossiers([record], updating=False), STEP_SECONDS)
        assert refused.value.quotes_remote_text  # the adapter's words, kept out of log lines
    adapter.login = json_reply({"error_code": 0, "session": "s"})
    adapter.answer("DongBoHoSoMC", json_reply({"error_code": "3", "message": f"Hồ sơ của {A['name']} đã tồn tại"}),
                   json_reply({"error_code": "-1", "message": f"{A['name']}: {glued(A)}"}))
    async with adapter.client() as client:
        with pytest.raises(PortalRejected):
            await asyncio.wait_for(client.push_dossiers([record], updating=False), STEP_SECONDS)
    text = rendered.getvalue()
    assert {json.loads(line)["event"] for line in text.splitlines()} >= {"portal.call",
                                                                         "portal.create_switched_to_update"}
    assert_no_identity(text, [A])


def test_an_exception_quoting_identities_logged_with_exc_info(rendered: io.StringIO) -> None:
    log = structlog.get_logger("test")
    for p in PEOPLE:
        try:
            raise ValueError(f"cannot map {glued(p)}")
        except ValueError:
            log.exception("mapping failed")
        log.warning("as a value", error=KeyError(glued(p)), where=Consumed(value=glued(p).encode()))
    text = rendered.getvalue()
    assert text.count("Traceback") == len(PEOPLE)
    assert_no_identity(text)


def test_a_config_error_quoting_identities_neither_says_nor_logs_them(tmp_path: Path, rendered: io.StringIO) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"portal:\n  username: {A['email']}\n  password: {A['id_number']}\n"
                    f"  timeout_seconds: {A['phone']}x\n  {A['email']}: {A['name']}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "portal.timeout_seconds" in message
    assert_no_identity(message, [A])
    try:
        raise caught.value
    except ConfigError:
        structlog.get_logger("test").exception("configuration refused")
    assert_no_identity(rendered.getvalue(), [A])


__all__ = ["adapter"]
