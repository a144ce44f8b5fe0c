"""Hostile configuration files: each is a ``ConfigError`` naming the field and the rule, never a traceback,
and never echoing a secret; an empty Payment Platform secret (which would make every checksum anyone can
compute verify) is refused whichever way it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import ConfigError

SECRET = "hunter2-s3cret"

HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "alias bomb": (b'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
                   b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                   b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", "problem"),
    "python object tag": (b"kafka: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "invalid UTF-8": (b"portal:\n  username: \xff\xfe\n", "cannot read"),
    "a list at the top": (b"- kafka\n- portal\n", "top level must be a mapping"),
    "a section as a number": (b"portal: 5\n", "portal"),
    "a number as text": (b"kafka:\n  max_poll_records: many\n", "kafka.max_poll_records"),
    "unknown key": (b"portal:\n  pasword: x\n", "portal.pasword"),
    "unknown section": (b"portl: {}\n", "portl"),
    "a broken line holding a secret": (f'portal:\n  password: "{SECRET}\n  username: [\n'.encode(), "not valid YAML"),
    "a wrong type next to a secret": (f"portal:\n  password: {SECRET}\n  timeout_seconds: soon\n".encode(),
                                      "portal.timeout_seconds"),
    "payments with an empty secret": (b'payments:\n  enabled: true\n  partner_code: BXD\n  secret: ""\n',
                                      "payments.secret"),
    "payments with a blank secret": (b'payments:\n  enabled: true\n  partner_code: BXD\n  secret: "  "\n',
                                     "payments.secret"),
    "a negative limit": (b"kafka:\n  max_event_bytes: -1\n", "kafka.max_event_bytes"),
    "an adapter URL of another scheme": (b"portal:\n  adapter_url: file:///etc/passwd\n", "portal.adapter_url"),
    "a statistics push at 25 o'clock": (b'stats:\n  daily_at: "25:00"\n', "stats.daily_at"),
    "final figures for 0 days": (b"stats:\n  final_days: 0\n", "stats.final_days"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_a_hostile_config_file_is_a_config_error_naming_the_field(tmp_path: Path, name: str) -> None:
    content, says = HOSTILE_FILES[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert says in str(caught.value), str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_empty_payment_secret_file_is_refused_where_the_secret_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "pp-secret"
    secret.write_text("\n", encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(f"payments:\n  enabled: true\n  partner_code: BXD\n  secret_file: {secret}\n", encoding="utf-8")
    settings = load_settings(path)
    with pytest.raises(ConfigError, match=r"payments\.secret_file: must not be empty"):
        settings.payments.secret_value()


# --- the file itself: size, encoding, YAML features, structure, types at every section ------------------------

SECTIONS = ("kafka", "portal", "push", "state", "mappings", "admin", "submissions", "payments", "public", "log")


def laughs(levels: int, under: bytes = b"") -> bytes:
    """The billion laughs: each level a list of nine aliases of the one before (9 ** levels values)."""
    lines = [b'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]".encode() for i in range(1, levels)]
    return b"\n".join(lines) + b"\n" + under


# name → (file content, what the message must say); none may hold SECRET, a traceback, or be long.
HOSTILE_YAML: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "billion laughs, nine levels": (laughs(9), ("aliases expand", "100000")),
    "billion laughs under a known field": (laughs(7, b"submissions:\n  agencies: *l6\n"), ("aliases expand",)),
    "merge-key bomb": (b"a: &a {x: 1, y: 2}\nb: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a]}\n"
                       + b"".join(f"c{i}: &c{i} {{<<: [{', '.join(['*b' if i == 0 else f'*c{i - 1}'] * 9)}]}}\n".encode()  # noqa: E501
                                  for i in range(6)), ("aliases expand",)),
    "an alias named like a secret": (f"portal:\n  password: *{SECRET}\n".encode(), ("line 2", "alias")),
    "nesting 10,000 deep (flow)": (b"portal: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", ("nested deeper than 32",)),
    "nesting 100 deep (block)": (b"".join(b"  " * i + f"k{i}:\n".encode() for i in range(100)) + b"  " * 100 + b"x\n",
                                 ("nested deeper than 32",)),
    "a 10 MB file": (b"# " + b"x" * 10_000_000 + b"\n", ("over the limit of 1048576 bytes",)),
    "binary": (bytes(range(256)) * 4, ("cannot read", "not UTF-8")),
    "invalid UTF-8 after a secret": (f"portal:\n  password: {SECRET}\xff\n".encode("latin-1"), ("not UTF-8",)),
    "UTF-16 with its BOM": ("portal: {}\n".encode("utf-16"), ("not UTF-8",)),
    "a NUL in a value": (b"portal:\n  username: a\x00b\n", ("line 2", "control character")),
    "an escape character in a secret": (f"portal:\n  password: {SECRET}\x1b\n".encode(), ("control character",)),
    "tab indentation": (b"portal:\n\tusername: x\n", ("line 2", "not valid YAML")),
    "a tab before a secret": (f"portal:\n  password:\t\t{SECRET}\n\tx: 1\n".encode(), ("not valid YAML",)),
    "a duplicate section": (b"portal: {}\nkafka: {}\nportal: {}\n", ("line 3", "appears twice")),
    "a duplicate key": (f"portal:\n  password: {SECRET}\n  password: other\n".encode(), ("line 3", "appears twice")),
    "a duplicate key in flow style": (b"{log: {level: info, level: debug}}\n", ("appears twice",)),
    "!!python/object/apply": (b"kafka: !!python/object/apply:os.system ['true']\n", ("line 1", "tag")),
    "!!python/name": (b"portal:\n  username: !!python/name:os.system\n", ("line 2", "tag")),
    "!!python/object/new": (b"x: !!python/object/new:collections.OrderedDict [[]]\n", ("tag",)),
    "a tag named like a secret": (f"portal:\n  password: !{SECRET} x\n".encode(), ("line 2", "tag")),
    "a key that is a number": (b"1: x\n", ("key", "text")),
    "a key that is a list": (b"? [a, b]\n: c\n", ("not valid YAML",)),
    "a key that is null, nested": (b"portal:\n  ~: x\n", ("line 2", "key", "text")),
    "an unknown key that is a secret": (f'portal:\n  "{SECRET} x": 1\n'.encode(), ("portal.(a key that is not",)),
    "an unknown key": (b"portal:\n  pasword: x\n", ("portal.pasword", "Extra inputs")),
    "an unterminated quote after a secret": (f'portal:\n  password: "{SECRET}\n  username: x\n'.encode(),
                                             ("not valid YAML",)),
    "a colon inside a secret": (f"portal:\n  password: {SECRET}: x: y\n".encode(), ("not valid YAML", "line 2")),
    "an unclosed list holding a secret": (f"portal:\n  password: [{SECRET}\n".encode(), ("not valid YAML",)),
    "a secret where a number goes": (f"portal:\n  timeout_seconds: {SECRET}\n".encode(), ("portal.timeout_seconds",)),
    "infinity where seconds go": (b"portal:\n  timeout_seconds: .inf\n", ("portal.timeout_seconds",)),
    "a 5,000-digit number": (b"kafka:\n  max_poll_records: " + b"9" * 5000 + b"\n",
                             ("line 2, column 21", "too many digits")),
    "a list where a text goes": (b"kafka:\n  bootstrap_servers: [a, b]\n", ("kafka.bootstrap_servers",)),
    "a mapping where a level goes": (b"log:\n  level: {a: 1}\n", ("log.level",)),
    "a date where a secret goes": (b"payments:\n  secret: 2026-12-02\n", ("payments.secret",)),
    "binary data where a path goes": (b"mappings:\n  dir: !!binary aGVsbG8=\n", ("mappings.dir",)),
    **{f"{section} as a number": (f"{section}: 5\n".encode(), (section, "valid dictionary"))
       for section in SECTIONS},
    **{f"{section} as a list": (f"{section}: [{SECRET}]\n".encode(), (section, "valid dictionary"))
       for section in SECTIONS},
    **{f"{section} as text": (f"{section}: {SECRET}\n".encode(), (section, "valid dictionary"))
       for section in SECTIONS},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_a_hostile_yaml_file_is_a_config_error_naming_where_and_the_rule(tmp_path: Path, name: str) -> None:
    content, says = HOSTILE_YAML[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    for part in says:
        assert part in message, message
    assert SECRET not in message and "Traceback" not in message
    assert len(message) < 2000


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("\ufeffportal:\n  username: x\n".encode())
    assert load_settings(path).portal.username == "x"


def test_anchors_and_merge_keys_of_ordinary_size_are_plain_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("x-retry: &retry {initial_backoff_seconds: 1.5, max_backoff_seconds: 30}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="x-retry"):  # an unknown section, but read: the anchor itself is fine
        load_settings(path)
    path.write_text("portal:\n  retry: &retry {initial_backoff_seconds: 1.5}\npush:\n  linger_ms: 5\n",
                    encoding="utf-8")
    assert load_settings(path).portal.retry.initial_backoff_seconds == 1.5


@pytest.mark.parametrize("where", ["a directory", "a device that never ends"])
def test_a_config_path_that_is_no_file_is_a_config_error(tmp_path: Path, where: str) -> None:
    path = tmp_path if where == "a directory" else Path("/dev/zero")
    if not path.exists():
        pytest.skip("no /dev/zero here")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "cannot read" in str(caught.value) or "over the limit" in str(caught.value)


def test_the_cli_reports_a_hostile_file_without_a_traceback_or_the_secret(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from connector.cli import main

    for name in ("a duplicate key", "a tag named like a secret", "an unterminated quote after a secret"):
        path = tmp_path / "config.yaml"
        path.write_bytes(HOSTILE_YAML[name][0])
        result = CliRunner().invoke(main, ["run", "--config", str(path)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and "Traceback" not in result.output
        assert SECRET not in result.output
