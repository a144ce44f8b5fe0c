"""Log redaction: secrets and personal identifiers never reach a log line, by field name and by pattern, in the
event dict and on the rendered line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from connector.dev.samples import generate_events
from connector.observability import REDACTED, configure_logging, redact, scrub_text


def test_sensitive_keys_are_redacted_wherever_they_are() -> None:
    event = redact(None, "info", {
        "event": "x", "password": "hunter2", "Session": "tok-123",
        "record": {"SoDienThoai": "0912345678", "Email": "a@b.vn", "MaHoSo": "000.00.01.G12-201005-0001",
                   "DinhDanhCHS": [{"SoDinhDanh": "001089012345"}]},
    })
    assert event["password"] == REDACTED
    assert event["Session"] == REDACTED
    assert event["record"]["SoDienThoai"] == REDACTED
    assert event["record"]["Email"] == REDACTED
    assert event["record"]["DinhDanhCHS"] == REDACTED
    assert event["record"]["MaHoSo"] == "000.00.01.G12-201005-0001"  # a dossier number is not personal


def test_identifiers_inside_free_text_are_scrubbed() -> None:
    text = scrub_text("gọi 0912 345 678 hoặc +84912345678, email an.nguyen@example.vn, CCCD 001089012345")
    for secret in ("0912 345 678", "+84912345678", "an.nguyen@example.vn", "001089012345"):
        assert secret not in text


def test_dossier_numbers_offsets_and_dates_survive_scrubbing() -> None:
    text = "dossier 000.00.01.G12-201005-0001 offset 41 at 20201005083000"
    assert "000.00.01.G12-201005-0001" in scrub_text(text)
    assert "offset 41" in scrub_text(text)


def test_the_configured_chain_redacts_before_rendering() -> None:
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger().info("login", password="hunter2", note="call 0912345678")
    assert logs[0]["password"] == REDACTED
    assert "0912345678" not in logs[0]["note"]


def test_the_service_logging_setup_redacts_what_it_writes() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, cache=False)
    try:
        structlog.get_logger("audit").warning(
            "portal refused", password="hunter2", session="tok-abc", applicant={"name": "Nguyễn Văn An"},
            error="gọi 0912345678 hoặc an.nguyen@example.vn, CCCD 001089012345",
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    text = out.getvalue()
    for secret in ("hunter2", "tok-abc", "Nguyễn Văn An", "0912345678", "an.nguyen@example.vn", "001089012345"):
        assert secret not in text, secret
    assert line["event"] == "portal refused" and line["password"] == REDACTED


# --- identities glued to other text, names by key, exceptions, and the rendered line ------------------------

def sample_applicants() -> list[dict[str, Any]]:
    """The identities ``connector.dev.samples`` generates: names, ID numbers, phones, e-mail addresses."""
    found = {}
    for message in generate_events(dossiers=12, include_bad=False):
        applicant = json.loads(message.value)["dossier"]["applicant"]
        found[applicant["id_number"]] = applicant
    return list(found.values())


APPLICANTS = sample_applicants()
CITIZEN = next(a for a in APPLICANTS if a["type"] == "citizen")


def secrets_of(applicant: dict[str, Any]) -> list[str]:
    return [applicant["name"], applicant["id_number"], applicant["phone"], applicant["email"]]


@pytest.mark.parametrize("template", [
    "CCCD:{id}", "CCCD {id}", "CCCD{id}", "id={id};", "so_cccd={id},", "({id})", "[{id}]", "{id}.",
    "tel{phone}", "tel:{phone}", "SĐT{phone}.", "phone={phone}&x=1", "gọi {phone}.", "+84{phone_tail}",
    "email:{email}", "<{email}>",
])
def test_identities_glued_to_other_text_are_scrubbed(template: str) -> None:
    for applicant in APPLICANTS:
        text = template.format(id=applicant["id_number"], phone=applicant["phone"], email=applicant["email"],
                               phone_tail=applicant["phone"][1:])
        scrubbed = scrub_text(text)
        assert REDACTED in scrubbed, text
        for secret in secrets_of(applicant)[1:]:
            assert secret not in scrubbed, text


@pytest.mark.parametrize("text", [
    "dossier 000.00.01.G12-201005-0001", "procedure 1.003560.000.00.00.H56", "at 20201005083000",
    "offset 41", "partition 2 offset 1234567", "took 0.123456789012 s", "version 3 of 12", "port 9464",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
])
def test_what_is_not_an_identity_survives_scrubbing(text: str) -> None:
    assert scrub_text(text) == text


def test_names_are_redacted_by_key_under_any_nesting() -> None:
    name = CITIZEN["name"]
    event = redact(None, "info", {
        "event": "x",
        "payload": {"data": [{"MaHoSo": "000.00.01.G12-201005-0001", "ChuHoSo": name, "TenChuHoSo": name,
                              "HoTen": name, "NguoiNop": {"HoVaTen": name}, "DiaChiChuHoSo": "12 Phố Huế"}],
                    "applicant_name": name, "name": name, "TrichYeuHoSo": f"Cấp phép cho {name}"},
        "records": [[{"hoten": name}]],
    })
    rendered = json.dumps(event, ensure_ascii=False)
    assert name not in rendered and "Phố Huế" not in rendered
    assert "000.00.01.G12-201005-0001" in rendered


@pytest.fixture
def rendered_log() -> Iterator[io.StringIO]:
    """The service's own logging set-up, writing JSON lines to a buffer."""
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, cache=False)
    try:
        yield out
    finally:
        structlog.reset_defaults()


@dataclass
class Holder:
    payload: dict[str, Any]


class Opaque:
    def __init__(self, applicant: dict[str, Any]) -> None:
        self.applicant = applicant

    def __repr__(self) -> str:
        a = self.applicant
        return f"Opaque(ChuHoSo={a['name']!r}, SoDienThoai={a['phone']!r}, text='CCCD:{a['id_number']}')"


def test_values_inside_exceptions_and_reprs_are_scrubbed_on_the_rendered_line(rendered_log: io.StringIO) -> None:
    a = CITIZEN
    log = structlog.get_logger("test")
    log.warning("exception as a value", error=ValueError(f"CCCD:{a['id_number']} tel{a['phone']} <{a['email']}>"))
    log.warning("repr of an object holding a dict", holder=Holder({"ChuHoSo": a["name"], "SoDienThoai": a["phone"],
                                                                   "HoTen": a["name"]}))
    log.warning("an object with its own repr", thing=Opaque(a))
    log.warning("bytes and sets", raw=f"id={a['id_number']};".encode(), many={a["phone"]})
    try:
        raise RuntimeError(f"refused {a['id_number']} / {a['email']} / tel{a['phone']}")
    except RuntimeError:
        log.exception("exc_info with an identity in its message")
    text = rendered_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 5  # every line still JSON
    for secret in secrets_of(a):
        assert secret not in text, secret
    assert "RuntimeError" in lines[-1]["exception"]


def test_the_final_step_scrubs_what_the_event_dict_step_cannot_see(rendered_log: io.StringIO) -> None:
    a = CITIZEN

    class Sneaky:
        def __repr__(self) -> str:  # produced only when the renderer formats the value
            return json.dumps({"HoTen": a["name"], "phone": a["phone"], "x": f"tel{a['phone']}"},
                              ensure_ascii=False)

    structlog.get_logger("test").info("late", value=Sneaky(), **{"key with CCCD001089012345": 1})
    text = rendered_log.getvalue()
    assert a["name"] not in text and a["phone"] not in text and "001089012345" not in text
    json.loads(text)  # still one JSON document


def test_the_console_renderer_is_scrubbed_too() -> None:
    out = io.StringIO()
    configure_logging("debug", "console", stream=out, cache=False)
    try:
        structlog.get_logger("test").warning("console", error=ValueError(f"tel{CITIZEN['phone']}"),
                                             record={"ChuHoSo": CITIZEN["name"]})
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert CITIZEN["phone"] not in text and CITIZEN["name"] not in text
    assert "console" in text
