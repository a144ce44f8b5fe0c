"""The replay scenario both operator interfaces are tested on (the CLI and the admin API)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.samples import SampleMessage
from tests.factories import encode, event_dict

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
