import structlog
from structlog.testing import capture_logs

from connector.observability import REDACTED, redact, scrub_text


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
    import io
    import json

    from connector.observability import configure_logging

    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
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
