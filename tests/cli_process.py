"""``portal-sync`` commands as processes of their own, started without paying for the interpreter's imports.

A command run as ``python -m connector ...`` spends ~1.5 s of CPU importing its libraries (SQLAlchemy,
aiohttp, aiokafka, pydantic, structlog, rich, ...) before it does anything, and the integration tests run
some fifty commands. Here each command is forked from a server process (``multiprocessing`` forkserver, one
per test process) that imported those libraries once and nothing else: the command still runs in a process
of its own, with its own arguments, environment, working directory, stdout, stderr and exit code, and
imports the ``connector`` package itself as it starts, as it would from a shell. ``python -m connector``
as a real interpreter start stays tested by the daemon tests (``start_daemon``) and the wheel test.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# Third-party only: what the package itself does at import time happens in each command's process.
PRELOAD = [
    "aiohttp", "aiokafka", "aiolimiter", "aiosqlite", "asyncpg", "click", "jsonschema", "jsonschema_rs",
    "prometheus_client", "pydantic", "pydantic_settings", "rich.console", "rich.progress", "rich.table",
    "sqlalchemy.ext.asyncio", "sqlalchemy.dialects.sqlite.aiosqlite", "sqlalchemy.dialects.postgresql.asyncpg",
    "structlog", "tenacity", "yaml",
]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def _command(args: Sequence[str], env: Mapping[str, str], stdout: str, stderr: str) -> None:
    """In the forked process: the environment, output files and argv a shell would give, then the CLI."""
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["portal-sync", *args]
    from connector.cli import main

    main(args=list(args), prog_name="portal-sync")  # exits: SystemExit carries the exit code


async def run_command(args: Sequence[str], env: Mapping[str, str], scratch: Path, *,
                      timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``portal-sync ARGS``; its exit code, stdout and stderr (kept in a new directory under ``scratch``).
    Killed, and TimeoutError, after ``timeout`` seconds."""
    workdir = Path(tempfile.mkdtemp(prefix="command-", dir=scratch))
    stdout, stderr = workdir / "stdout", workdir / "stderr"
    process = _context.Process(target=_command, args=(list(args), dict(env), str(stdout), str(stderr)),
                               daemon=True)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.to_thread(process.start)  # the first start waits for the server's imports
            await asyncio.to_thread(process.join)
    except TimeoutError:
        if process.pid is not None:
            process.kill()
            await asyncio.wait_for(asyncio.to_thread(process.join), timeout=10)
        raise
    code = process.exitcode
    assert code is not None
    return code, stdout.read_bytes(), stderr.read_bytes()
