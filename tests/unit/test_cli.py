import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.config import DEFAULT_MAPPINGS_DIR
from connector.store import StateStore
from connector.store.way_back import InboundStore, PaymentRow


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


def test_payments_list_shows_the_payments_newest_first_with_counts_by_state(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    async def register() -> None:
        store = await StateStore.open(url)
        try:
            for n, dossier in enumerate(("000.00.01.H12-260302-0001", "000.00.01.H12-260302-0002")):
                requested = at + timedelta(minutes=n)
                row = PaymentRow(f"REF-{n}", dossier, 150_000, "VND", requested, requested + timedelta(days=1),
                                 f"event-{n}", "pending", requested, 0, None, None, None)
                assert await InboundStore(store).register_payment(row, requested) is None
        finally:
            await store.close()

    asyncio.run(register())
    config = tmp_path / "config.yaml"
    config.write_text(f"state:\n  url: {url}\n", encoding="utf-8")
    shown = CliRunner().invoke(main, ["payments", "list", "--config", str(config), "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert listed["counts"] == {"pending": 2}
    assert [p["reference"] for p in listed["payments"]] == ["REF-1", "REF-0"]
    only = CliRunner().invoke(main, ["payments", "list", "--config", str(config), "--dossier",
                                     "000.00.01.H12-260302-0001"])
    assert only.exit_code == 0, only.output
    assert "REF-0" in only.output and "REF-1" not in only.output and "2 pending" in only.output
