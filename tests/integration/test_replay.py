"""The operators' scenario: dossiers fail because their procedure is missing from the mappings; the
operator lists them, fixes the mapping, dry-runs the replay (nothing is sent), replays, and the portal
holds every dossier at its newest version; one whose newer event synced meanwhile is not regressed.

The daemon runs in-process against the real broker and simulator; the operator's commands run as
``portal-sync`` processes, as an operator would type them."""

from __future__ import annotations

import json
import shutil

import pytest

from connector.config import DEFAULT_MAPPINGS_DIR
from tests.integration.pipeline_harness import (
    assert_portal_holds_newest,
    over_both_transports,
    portal_stats,
    records_pushed,
)
from tests.integration.replay_scenario import FAILING, UNMAPPED, numbered, portal_sync, run_with_an_unmapped_procedure
from tests.integration.test_admin_openapi import check_printed

pytestmark = [pytest.mark.broker, over_both_transports]

async def test_unmapped_procedure_failures_are_listed_fixed_and_replayed(topics, kafka_bootstrap, portal_url,
                                                                         tmp_path) -> None:
    failed = await run_with_an_unmapped_procedure(topics, kafka_bootstrap, portal_url, tmp_path)
    config_path, mappings_dir, messages = failed.config, failed.mappings_dir, failed.messages

    # The operator sees exactly the 50, with the reason.
    _, listed = await portal_sync(config_path, "failures", "list", "--reason", "unmapped_procedure")
    check_printed("FailurePage", listed)  # the admin API's listing
    assert (listed["total"], listed["next_after_id"]) == (FAILING, None)
    assert {f["dossier_no"] for f in listed["failures"]} == {numbered(i) for i in range(1, FAILING + 1)}
    assert {f["field"] for f in listed["failures"]} == {"dossier.procedure_code"}
    one = listed["failures"][0]["id"]
    _, shown = await portal_sync(config_path, "failures", "show", str(one))
    check_printed("FailureDetail", shown)
    assert shown["attempts_history"][0]["reason"] == "unmapped_procedure"
    _, page = await portal_sync(config_path, "failures", "list", "--limit", "20")
    assert page["next_after_id"] == page["failures"][-1]["id"]
    assert json.loads(shown["record_value"])["dossier"]["procedure_code"] == UNMAPPED

    # The mapping is fixed; a dry run lists the 50 and sends nothing.
    shutil.copy(DEFAULT_MAPPINGS_DIR / "procedures.yaml", mappings_dir / "procedures.yaml")
    pushed_before = await records_pushed(portal_url)
    calls_before = await portal_stats(portal_url)
    _, planned = await portal_sync(config_path, "replay", "--all", "--dry-run")
    check_printed("ReplayReport", planned)  # the admin API's reply to a dry run
    assert (planned["dry_run"], planned["dlq"]) == (True, None)
    assert planned["counts"] == {"send": FAILING - 1, "superseded": 1}
    assert {item["state"] for item in planned["failures"]} == {None}
    actions = {item["dossier_no"]: item["action"] for item in planned["failures"]}
    assert len(planned["failures"]) == FAILING
    assert actions.pop(numbered(1)) == "superseded"  # its version 2 is on the portal already
    assert set(actions.values()) == {"send"}
    assert await records_pushed(portal_url) == pushed_before
    assert await portal_stats(portal_url) == calls_before
    _, still_open = await portal_sync(config_path, "failures", "list")
    assert still_open["total"] == FAILING

    # The replay: 49 sent, the superseded one resolved without being sent, nothing left open.
    code, replayed = await portal_sync(config_path, "replay", "--all")
    assert code == 0
    check_printed("ReplayReport", replayed)  # the same shape as the dry run's
    assert (replayed["dry_run"], replayed["dlq"]) == (False, None)
    assert replayed["counts"] == {"replayed": FAILING - 1, "resolved": 1}
    done = {item["dossier_no"]: (item["action"], item["state"]) for item in replayed["failures"]}
    assert done.pop(numbered(1)) == ("superseded", "resolved")
    assert set(done.values()) == {("send", "replayed")}
    assert {item["failure_id"] for item in replayed["failures"]} == {item["failure_id"] for item in planned["failures"]}
    await assert_portal_holds_newest(portal_url, messages)
    _, after = await portal_sync(config_path, "failures", "list")
    assert after["total"] == 0
    _, resolved = await portal_sync(config_path, "failures", "list", "--state", "resolved")
    assert [f["dossier_no"] for f in resolved["failures"]] == [numbered(1)]

    # Nothing selected is nothing done: a second replay finds no open failure.
    code, again = await portal_sync(config_path, "replay", "--all")
    assert (code, again["counts"]) == (0, {})
    assert check_printed("ReplayReport", again)["failures"] == []
