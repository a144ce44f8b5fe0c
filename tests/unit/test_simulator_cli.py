"""``portal-sync simulate-portal`` refuses chaos flags it cannot use before it serves anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from connector.cli import main


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--outage", "30"], "--outage: '30' is not 2 numbers separated by ':'"),
        (["--error-rate", "DongBoHoSoMC=2"], "error_rate.DongBoHoSoMC: Input should be less than or equal to 1"),
        (["--latency-ms", "lognormal:200:10"], "p99_ms must not be below p50_ms"),
        (["--burst", "2:5"], "for_seconds must be shorter than every_seconds"),
        (["--error-statuses", "404"], "error_statuses.0: Input should be greater than or equal to 500"),
        (["--apply-then-timeout-rate", "1.1"], "apply_then_timeout_rate: Input should be less than or equal to 1"),
    ],
)
def test_unusable_chaos_flags_are_refused_naming_the_problem(flags: list[str], problem: str) -> None:
    result = CliRunner().invoke(main, ["simulate-portal", "--listen", "127.0.0.1:0", *flags])
    assert result.exit_code == 2
    assert problem in result.output
