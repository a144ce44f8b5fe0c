from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import ConfigError
from tests import REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(None)
    assert settings.kafka.topics.dossier_events == "dossier.events"
    assert settings.kafka.topics.dead_letter == "dossier.events.dlq"
    assert settings.state.url.startswith("sqlite+aiosqlite:///")
    assert settings.admin.port == 9464


def test_the_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_servers: file:9092\n  group_id: from-file\n")
    monkeypatch.setenv("PORTAL_SYNC__KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("PORTAL_SYNC__KAFKA__TOPICS__DEAD_LETTER", "custom.dlq")
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.group_id == "from-file"
    assert settings.kafka.topics.dead_letter == "custom.dlq"


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    settings = load_settings(write(tmp_path, f"portal:\n  password_file: {secret}\n"))
    assert settings.portal.password_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_password_is_never_shown_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "portal:\n  password: hunter2\n"))
    assert "hunter2" not in repr(settings) and settings.portal.password_value() == "hunter2"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("kafka:\n  bootstrap_server: x\n", "kafka.bootstrap_server"),
        ("portal:\n  adapter_url: ftp://x\n", "portal.adapter_url"),
        ("admin:\n  listen: nowhere\n", "admin.listen"),
        ("kafka:\n  max_poll_records: 0\n", "kafka.max_poll_records"),
        ("- a list\n", "top level"),
        ("kafka: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[")):
        load_settings(write(tmp_path, text))


def test_the_heartbeat_must_be_shorter_than_the_session(tmp_path: Path) -> None:
    # A session of 2 s with the default 3 s heartbeat would expire between two heartbeats.
    with pytest.raises(ConfigError, match=r"kafka: .*heartbeat_interval_ms must be less than session_timeout_ms"):
        load_settings(write(tmp_path, "kafka:\n  session_timeout_ms: 2000\n"))
    settings = load_settings(write(tmp_path, "kafka:\n  session_timeout_ms: 2000\n  heartbeat_interval_ms: 500\n"))
    assert (settings.kafka.session_timeout_ms, settings.kafka.heartbeat_interval_ms) == (2000, 500)


def test_a_yaml_error_does_not_echo_the_offending_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, 'portal:\n  password: "s3cr3t-P4ss\n  username: x\n'))
    assert "s3cr3t" not in str(caught.value)
    assert "line" in str(caught.value)


def test_the_example_config_is_valid() -> None:

    settings = load_settings(REPO_ROOT / "deploy" / "config.example.yaml")
    assert settings.portal.dstcode is None
    assert settings.portal.password_file is not None


def test_the_admin_token_comes_from_the_file_or_the_setting_never_both(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n", encoding="utf-8")
    assert load_settings(write(tmp_path, f"admin:\n  token_file: {token}\n")).admin.token_value() == "t0ken"
    settings = load_settings(write(tmp_path, "admin:\n  token: hunter3\n"))
    assert settings.admin.token_value() == "hunter3" and "hunter3" not in repr(settings)
    assert load_settings(write(tmp_path, "admin:\n  token: '  '\n")).admin.token_value() is None
    with pytest.raises(ConfigError, match="admin"):
        load_settings(write(tmp_path, f"admin:\n  token: x\n  token_file: {token}\n"))
    missing = load_settings(write(tmp_path, f"admin:\n  token_file: {tmp_path / 'gone'}\n"))
    with pytest.raises(ConfigError, match=r"admin\.token_file: cannot read"):
        missing.admin.token_value()


def test_payments_enabled_need_a_partner_code_and_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"payments: .*partner_code and secret"):
        load_settings(write(tmp_path, "payments:\n  enabled: true\n"))
    settings = load_settings(write(tmp_path, "payments:\n  enabled: true\n  partner_code: BXD\n  secret: s3cret\n"))
    assert settings.payments.secret_value() == "s3cret" and "s3cret" not in repr(settings)


def test_the_public_listener_is_off_unless_set_and_its_paths_must_differ(tmp_path: Path) -> None:
    assert load_settings(None).public.listen is None
    with pytest.raises(ConfigError, match="public"):
        load_settings(write(tmp_path, "public:\n  listen: nowhere\n"))
    with pytest.raises(ConfigError, match="must differ"):
        load_settings(write(tmp_path, "public:\n  submissions_path: /x\n  payments_path: x\n"))
