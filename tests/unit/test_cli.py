from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.config import DEFAULT_MAPPINGS_DIR


def test_mappings_check_accepts_the_shipped_mappings() -> None:
    result = CliRunner().invoke(main, ["mappings", "check", str(DEFAULT_MAPPINGS_DIR)])
    assert result.exit_code == 0, result.output
    assert "9 procedures" in result.output


def test_mappings_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    (tmp_path / "status.yaml").write_text("status:\n  by_status: {new: 12}\n", encoding="utf-8")
    (tmp_path / "procedures.yaml").write_text("procedures:\n  X: {national_code: bad}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["mappings", "check", str(tmp_path)])
    assert result.exit_code == 1
    for expected in ("status.yaml", "new=12", "procedures.yaml", "national_code", "codes"):
        assert expected in result.output, expected


def test_run_refuses_a_config_with_a_typo_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("kafka:\n  bootstrap_server: localhost:9092\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code != 0
    assert "kafka.bootstrap_server" in result.output


def test_run_refuses_broken_mappings_before_connecting(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"mappings:\n  dir: {tmp_path / 'nowhere'}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code != 0
    assert "not a directory" in result.output
