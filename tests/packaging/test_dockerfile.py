"""deploy/Dockerfile read as text (no image is built here): the runtime stage installs the built wheel and no
source tree, runs as a user other than root, and probes the admin listener's /healthz on the port the
settings use."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

import yaml

from connector.config import AdminSettings
from tests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]


def _stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))  # continuation lines joined
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def _exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), arguments
    return words


def test_the_build_stage_builds_the_wheel_from_files_that_exist() -> None:
    build, *_ = _stages()
    copied = [shlex.split(arguments) for arguments in build.all("COPY")]
    sources = {source for words in copied for source in words[:-1]}
    assert {"pyproject.toml", "README.md", "connector"} <= sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
    assert any("pip wheel" in run or "-m build" in run for run in build.all("RUN"))


def test_the_runtime_stage_installs_only_the_built_wheel_and_runs_unprivileged() -> None:
    stages = _stages()
    build, runtime = stages[0], stages[-1]
    assert runtime.base == "python:3.11-slim"
    assert build.name, "the build stage needs a name for COPY --from"
    copies = runtime.all("COPY")
    assert copies and all(f"--from={build.name}" in copy for copy in copies), copies  # nothing from the context
    assert any(re.search(r"pip install .*\.whl", run) for run in runtime.all("RUN"))
    user = runtime.last("USER").split(":")[0]
    assert user not in ("root", "0"), user
    assert any("useradd --system" in run and user in run for run in runtime.all("RUN"))
    assert runtime.last("WORKDIR") == "/var/lib/portal-sync"


def test_the_runtime_stage_keeps_the_daemons_entry_point_port_and_stop_signal() -> None:
    runtime = _stages()[-1]
    port = str(AdminSettings().port)
    assert port in runtime.last("EXPOSE").split()
    assert runtime.last("STOPSIGNAL") == "SIGTERM"
    assert _exec_form(runtime.last("ENTRYPOINT")) == ["portal-sync"]
    assert _exec_form(runtime.last("CMD")) == ["run", "--config", "/etc/portal-sync/config.yaml"]


def test_the_healthcheck_asks_healthz_on_the_admin_port_with_the_standard_library() -> None:
    runtime = _stages()[-1]
    healthcheck = runtime.last("HEALTHCHECK")
    options, found, command = healthcheck.partition("CMD ")
    assert found, healthcheck
    assert "--timeout=" in options
    python, flag, code = _exec_form(command)
    assert (python, flag) == ("python", "-c")
    compile(code, "HEALTHCHECK", "exec")  # a typo would leave the container unhealthy for ever
    example = yaml.safe_load((REPO_ROOT / "deploy" / "config.example.yaml").read_text(encoding="utf-8"))
    port = example["admin"]["listen"].rpartition(":")[2]
    assert port == str(AdminSettings().port)
    assert f"http://127.0.0.1:{port}/healthz" in code
    assert "urllib.request" in code
