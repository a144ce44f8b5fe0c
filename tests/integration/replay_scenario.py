"""The replay scenario both operator interfaces are tested on (the CLI and the admin API), and the operator's
command as a ``portal-sync`` process."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.dev.samples import SampleMessage
from tests.cli_process import run_command
from tests.factories import encode, event_dict
from tests.integration.pipeline_harness import Topics, daemon_config, run_until_committed, unique_group, write_config
from tests.kafkatools import produce

UNMAPPED = "BXD-NLHD-01"  # the procedure the deployment forgot
MAPPED = "BXD-CCHN-02"
FAILING = 50


def numbered(i: int) -> str:
    return f"000.00.01.G12-201005-{i:04d}"


def scenario_events() -> list[SampleMessage]:
    """50 dossiers on the unmapped procedure, 10 on a mapped one; dossier 1 then moves to the mapped
    procedure in version 2, which syncs while version 1 waits in the failure table."""
    events = [event_dict(no=numbered(i), version=1, procedure_code=UNMAPPED) for i in range(1, FAILING + 1)]
    events += [event_dict(no=numbered(i), version=1, procedure_code=MAPPED) for i in range(101, 111)]
    events.append(event_dict(no=numbered(1), version=2, procedure_code=MAPPED, status="processing"))
    return [SampleMessage(*encode(event), event["dossier"]["no"], event["dossier"]["version"], "scenario")
            for event in events]


def mappings_without(procedure: str, directory: Path) -> Path:
    shutil.copytree(DEFAULT_MAPPINGS_DIR, directory)
    path = directory / "procedures.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    del document["procedures"][procedure]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return directory


@dataclass
class Failed:
    """The scenario run by the daemon: 50 failures in the table and on the DLQ, the rest synced."""

    config: Path
    mappings_dir: Path  # without the procedure; copy the shipped procedures.yaml in to fix it
    stream: Topics
    messages: list[SampleMessage]


async def run_with_an_unmapped_procedure(topics: Any, bootstrap: str, portal_url: str, directory: Path, *,
                                         dlq_partitions: int = 1) -> Failed:
    """The daemon (in-process) syncs ``scenario_events`` with the procedure missing from its mappings."""
    stream = Topics(await topics.create("dossier.events", partitions=3),
                    await topics.create("dossier.events.dlq", partitions=dlq_partitions), unique_group())
    mappings_dir = mappings_without(UNMAPPED, directory / "mappings")
    config = daemon_config(bootstrap, portal_url, stream, directory)
    config["mappings"] = {"dir": str(mappings_dir)}
    config_path = write_config(directory / "config.yaml", config)
    messages = scenario_events()
    ends = await produce(bootstrap, stream.events, messages)
    await run_until_committed(load_settings(config_path), bootstrap, stream, ends)
    return Failed(config_path, mappings_dir, stream, messages)


CLI_TIMEOUT = 120.0


async def portal_sync(config: Path, *args: str) -> tuple[int, Any]:
    """Run ``portal-sync ARGS --config CONFIG --json``; its exit code and parsed output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SYNC__")}
    # A process of its own, forked from one that has the libraries imported (see tests/cli_process.py).
    code, out, err = await run_command([*args, "--config", str(config), "--json"], env, config.parent,
                                       timeout=CLI_TIMEOUT)
    assert code in (0, 3), f"portal-sync {' '.join(args)} failed: {err.decode(errors='replace')}"
    return code, json.loads(out)
