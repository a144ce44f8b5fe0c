"""The wheel, installed: what a deployment gets, not the checkout.

The wheel is built from a copy of what the image's build stage gets (``pyproject.toml``, ``README.md``,
``connector/``) and installed into a new virtual environment outside the checkout. From a directory that
is not the checkout, the installed ``portal-sync`` then checks the shipped mappings, runs the demo, and runs
the daemon against the portal simulator (``portal-sync simulate-portal``, from the same environment) and the
session's broker until a dossier event is synced: the schemas and mappings are found as package data, and
nothing the daemon needs is left out of the wheel.

The new environment reuses the dependencies installed in the environment running the tests (a ``.pth``
file naming its site-packages) instead of installing them again: that would need the package index and
take minutes, and what is under test is the wheel's own content, not dependency resolution (pip and the
image do that). A path line in a ``.pth`` file does not run the ``.pth`` files of the directory it names,
so the editable install's import hook stays off and ``connector`` can only come from the wheel; the test
asserts that it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector.dev.samples import generate_events
from tests import REPO_ROOT
from tests.conftest import TopicFactory
from tests.kafkatools import produce

pytestmark = pytest.mark.broker

BUILD_TIMEOUT = 180.0  # building the wheel, creating the environment, installing: each
COMMAND_TIMEOUT = 60.0  # one short command (an import, mappings check)
DEMO_TIMEOUT = 180.0  # the demo bounds itself at 120 s of syncing
START_TIMEOUT = 60.0  # a process to come up (the simulator's first line, the daemon ready)
SYNC_TIMEOUT = 60.0  # a produced event to be synced
STOP_TIMEOUT = 30.0  # a process to exit after its stop signal (the daemon's grace period is set to 10 s)
POLL_INTERVAL = 0.1
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
SIM_USER, SIM_PASSWORD = "portal-sync", "secret"
# The source files the build needs: the same ones the image's build stage copies (deploy/Dockerfile).
SOURCES = ("pyproject.toml", "README.md", "connector")
# The oldest setuptools that reads the SPDX license expression in pyproject.toml.
OLDEST_SETUPTOOLS = (77,)


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path
    elsewhere: Path  # the working directory of every command: not the checkout
    env: dict[str, str]

    def command(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(args: list[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (f"{' '.join(args)} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return result


def _build_wheel(tmp: Path) -> Path:
    version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:1])
    if version < OLDEST_SETUPTOOLS:
        pytest.fail(f"setuptools {metadata.version('setuptools')} cannot build this project (the wheel is built "
                    "without build isolation, with the backend installed here): pip install -e '.[dev]' again")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", str(dist), str(source)], timeout=BUILD_TIMEOUT)
    wheels = sorted(dist.glob("portal_sync-*.whl"))
    assert len(wheels) == 1, wheels
    _assert_wheel_holds_the_package(wheels[0], source / "connector")
    return wheels[0]


def _assert_wheel_holds_the_package(wheel: Path, package: Path) -> None:
    """Every module and every data file of the package is in the wheel (a data file missing from
    ``[tool.setuptools.package-data]`` is found here, by name), and nothing from outside it."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {path.relative_to(package.parent).as_posix() for path in package.rglob("*") if path.is_file()}
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add data files to [tool.setuptools.package-data]): {missing}"
    foreign = sorted(n for n in names if not n.startswith(("connector/", "portal_sync-")))
    assert not foreign, f"in the wheel but not part of the package: {foreign}"


def _new_environment(tmp: Path, wheel: Path) -> Installed:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=BUILD_TIMEOUT)
    python = venv / "bin" / "python"
    # This environment's pip, run against the new interpreter; the dependencies are reused (the docstring says why).
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
          "--no-compile", str(wheel)], timeout=BUILD_TIMEOUT)
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              timeout=COMMAND_TIMEOUT).stdout.strip())
    reused = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (site_packages / "zz_reused_dependencies.pth").write_text("".join(f"{path}\n" for path in reused),
                                                              encoding="utf-8")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    hidden = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "KAFKA_BOOTSTRAP_SERVERS")
    env = {k: v for k, v in os.environ.items() if k not in hidden and not k.startswith("PORTAL_SYNC__")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Installed(venv=venv, site_packages=site_packages, elsewhere=elsewhere, env=env)


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    """The wheel built from the checkout and installed into a new environment under ``tmp_path``."""
    assert not tmp_path.resolve().is_relative_to(REPO_ROOT), "the new environment must be outside the checkout"
    began = time.monotonic()
    wheel = _build_wheel(tmp_path)
    built = time.monotonic()
    environment = _new_environment(tmp_path, wheel)
    print(f"wheel built in {built - began:.1f} s, installed in {time.monotonic() - built:.1f} s")
    return environment


async def test_the_installed_wheel_checks_mappings_runs_the_demo_and_syncs_an_event(
    installed: Installed, kafka_bootstrap: str, topics: TopicFactory, tmp_path: Path
) -> None:
    began = time.monotonic()
    _assert_the_wheel_is_what_runs_and_its_mappings_pass(installed)
    processes = Processes(tmp_path)
    try:
        # The demo brings its own broker and simulator: it runs meanwhile, and is awaited at the end.
        demo = await processes.start("demo", installed, "demo", "--dossiers", "5")
        portal_url = await _start_simulator(processes, installed)
        await _run_daemon_until_an_event_is_synced(processes, installed, kafka_bootstrap, topics, portal_url,
                                                   tmp_path)
        await processes.stop("simulator", signal.SIGTERM)
        await processes.wait("demo", DEMO_TIMEOUT)
        summary = processes.log("demo", "stdout")
        assert demo.returncode == 0, summary[-3000:] + processes.log("demo", "stderr")[-3000:]
        assert "done" in summary, summary[-3000:]
        assert (installed.elsewhere / "var" / "demo.log").is_file()
    finally:
        await processes.close()
    print(f"installed commands ran in {time.monotonic() - began:.1f} s")


def _assert_the_wheel_is_what_runs_and_its_mappings_pass(installed: Installed) -> None:
    where = Path(_run([installed.command("python"), "-c", "import connector; print(connector.__file__)"],
                      cwd=installed.elsewhere, env=installed.env, timeout=COMMAND_TIMEOUT).stdout.strip()).resolve()
    assert where.is_relative_to(installed.site_packages.resolve()), where
    assert not where.is_relative_to(REPO_ROOT), where

    checked = _run([installed.command("portal-sync"), "mappings", "check"], cwd=installed.elsewhere,
                   env=installed.env, timeout=COMMAND_TIMEOUT).stdout
    assert ": ok — " in checked, checked  # the shipped mappings, the default directory
    assert Path(checked.split(": ok — ")[0]).resolve().is_relative_to(installed.site_packages.resolve()), checked


async def _start_simulator(processes: Processes, installed: Installed) -> str:
    simulator = await processes.start("simulator", installed, "simulate-portal", "--listen", "127.0.0.1:0",
                                      "--username", SIM_USER, "--password", SIM_PASSWORD, stdout_pipe=True)
    assert simulator.stdout is not None
    line = (await asyncio.wait_for(simulator.stdout.readline(), START_TIMEOUT)).decode()
    assert "listening on " in line, line + processes.log("simulator", "stderr")[-3000:]
    return line.split("listening on ")[1].split()[0]


async def _run_daemon_until_an_event_is_synced(processes: Processes, installed: Installed, bootstrap: str,
                                               topics: TopicFactory, portal_url: str, tmp_path: Path) -> None:
    events = await topics.create("dossier.events")
    dead_letter = await topics.create("dossier.events.dlq")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": topics.group_id(),
                  "topics": {"dossier_events": events, "dead_letter": dead_letter},
                  # A short session makes the group form quickly (the local broker waits half of it).
                  "session_timeout_ms": 6000},
        "portal": {"adapter_url": portal_url, "username": SIM_USER, "password": SIM_PASSWORD,
                   "madonvi": "000.00.01.G12", "timeout_seconds": 10,
                   "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.5}},
        "state": {"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
        "push": {"shutdown_grace_seconds": 10},
        "admin": {"listen": "127.0.0.1:0"},
        "log": {"level": "info", "format": "json"},
        # No mappings directory: the daemon must find the shipped ones.
    }), encoding="utf-8")
    await processes.start("daemon", installed, "run", "--config", str(config))

    async def started() -> str | None:
        lines = processes.json_lines("daemon")
        return next((line["admin"] for line in lines if line.get("event") == "service started"), None)

    admin_url = await processes.until(started, "the daemon to start", START_TIMEOUT)
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        async with http.get(f"{admin_url}/healthz") as reply:
            assert reply.status == 200, await reply.text()

        async def ready() -> bool:
            async with http.get(f"{admin_url}/readyz") as reply:
                return reply.status == 200  # once the broker, the store and a login to the simulator answered

        await processes.until(ready, "the daemon to be ready (/readyz)", START_TIMEOUT)
        event = next(m for m in generate_events(dossiers=3, seed=2019, include_bad=False)
                     if json.loads(m.value)["dossier"]["origin"] == "local")
        await produce(bootstrap, events, [event])

        async def synced() -> bool:
            async with http.get(f"{admin_url}/metrics") as reply:
                text = await reply.text()
            return any(sample.value >= 1 for family in text_string_to_metric_families(text)
                       if family.name == "portal_sync_event_outcomes" for sample in family.samples
                       if sample.name.endswith("_total") and sample.labels.get("outcome") == "synced")

        await processes.until(synced, "the event to be synced", SYNC_TIMEOUT)
        assert event.key is not None
        async with http.get(f"{portal_url}/_sim/dossiers/{event.key.decode()}") as reply:
            assert reply.status == 200, await reply.text()
            assert (await reply.json())["pushes"] >= 1
    assert await processes.stop("daemon", signal.SIGTERM) == 0, processes.log("daemon", "stderr")[-3000:]


class Processes:
    """The installed commands this test started, each logging to files under ``tmp_path``; :meth:`close`
    stops whatever is still running (on failure too)."""

    # How each is asked to stop: the demo cleans up (its broker too) on SIGINT, the others on SIGTERM.
    GENTLE: ClassVar[dict[str, signal.Signals]] = {"demo": signal.SIGINT}

    def __init__(self, tmp_path: Path) -> None:
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.started: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str, installed: Installed, *args: str, stdout_pipe: bool = False
                    ) -> asyncio.subprocess.Process:
        with (self.logs / f"{name}.stdout").open("wb") as stdout, (self.logs / f"{name}.stderr").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                installed.command("portal-sync"), *args, cwd=installed.elsewhere, env=installed.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE if stdout_pipe else stdout,
                stderr=stderr,
            )
        self.started[name] = process
        return process

    def log(self, name: str, stream: str) -> str:
        return (self.logs / f"{name}.{stream}").read_text(encoding="utf-8", errors="replace")

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log(name, "stderr").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return [line for line in found if isinstance(line, dict)]

    async def until(self, condition: Callable[[], Awaitable[Any]], what: str, timeout: float) -> Any:
        """Poll ``condition`` until it answers something true; fail at once if a started process exited
        with an error, and after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if result := await condition():
                    return result
            for name, process in self.started.items():
                if process.returncode not in (None, 0):
                    pytest.fail(f"waiting for {what}: {name} exited {process.returncode}:\n"
                                f"{self.log(name, 'stderr')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s; the daemon's log ends with:\n"
                            f"{self.log('daemon', 'stderr')[-3000:] if 'daemon' in self.started else '(not started)'}")
            await asyncio.sleep(POLL_INTERVAL)

    async def wait(self, name: str, timeout: float) -> int:
        return await asyncio.wait_for(self.started[name].wait(), timeout)

    async def stop(self, name: str, signum: signal.Signals) -> int:
        process = self.started[name]
        if process.returncode is None:
            process.send_signal(signum)
        return await self.wait(name, STOP_TIMEOUT)

    async def close(self) -> None:
        for name, process in reversed(self.started.items()):  # the daemon before the simulator it calls
            if process.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await self.stop(name, self.GENTLE.get(name, signal.SIGTERM))
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
