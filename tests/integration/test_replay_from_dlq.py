"""``replay --from-dlq``: failures on the DLQ topic that the failure table lacks (its rows lost with a
restored backup, or written by an instance with a store of its own) are taken back into the table and
replayed, so nothing on the DLQ is out of reach. The ledger still decides what is superseded."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import delete

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.kafka import ERROR_HEADER_PREFIX
from connector.store import StateStore
from connector.store.tables import failure_attempts, sync_failures
from tests.integration.pipeline_harness import (
    assert_portal_holds_newest,
    over_both_transports,
    records_pushed,
)
from tests.integration.replay_scenario import FAILING, numbered, portal_sync, run_with_an_unmapped_procedure
from tests.integration.test_admin_openapi import check_printed
from tests.kafkatools import produce

pytestmark = [pytest.mark.broker, over_both_transports]


async def test_dlq_records_missing_from_the_failure_table_are_taken_back_and_replayed(
    topics, kafka_bootstrap, portal_url, tmp_path
) -> None:
    failed = await run_with_an_unmapped_procedure(topics, kafka_bootstrap, portal_url, tmp_path, dlq_partitions=2)
    config_path, mappings_dir, messages, stream = failed.config, failed.mappings_dir, failed.messages, failed.stream

    # With the table intact, the DLQ holds nothing it lacks: each record is matched to its row by the
    # original's coordinates.
    _, intact = await portal_sync(config_path, "replay", "--from-dlq", "--dry-run")
    check_printed("ReplayReport", intact)
    assert intact["dlq"] == {"read": FAILING, "known": FAILING, "missing": 0}
    assert (intact["dry_run"], intact["failures"], intact["counts"]) == (True, [], {})
    _, before = await portal_sync(config_path, "failures", "list", "--limit", "1000")
    coordinates = {(f["topic"], f["partition"], f["offset"]) for f in before["failures"]}
    assert {topic for topic, _, _ in coordinates} == {stream.events}

    # The failure rows are lost (the ledger is not); something else also put a record of its own on the DLQ.
    store = await StateStore.open(load_settings(config_path).state.url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(delete(failure_attempts))
            await conn.execute(delete(sync_failures))
    finally:
        await store.close()
    await produce(kafka_bootstrap, stream.dead_letter, [(b"foreign-key", b"not an event")],
                  headers=[(ERROR_HEADER_PREFIX + "note", b"no coordinates")])
    _, listed = await portal_sync(config_path, "failures", "list", "--state", "all")
    assert listed["total"] == 0

    shutil.copy(DEFAULT_MAPPINGS_DIR / "procedures.yaml", mappings_dir / "procedures.yaml")
    pushed = await records_pushed(portal_url)

    # Nothing dead-lettered after a time to come: nothing read.
    _, none = await portal_sync(config_path, "replay", "--from-dlq", "--since", "2999-01-01", "--dry-run")
    assert none["dlq"] == {"read": 0, "known": 0, "missing": 0}

    code, planned = await portal_sync(config_path, "replay", "--from-dlq", "--dry-run")
    assert code == 0
    check_printed("ReplayReport", planned)
    assert planned["counts"] == {"send": FAILING - 1, "superseded": 1, "unreadable": 1}
    assert planned["dlq"] == {"read": FAILING + 1, "known": 0, "missing": FAILING + 1}
    actions = {item["dossier_no"]: item["action"] for item in planned["failures"]}
    assert actions.pop(numbered(1)) == "superseded"  # the ledger knows its version 2 is on the portal
    assert actions.pop("foreign-key") == "unreadable"
    assert set(actions.values()) == {"send"}
    assert {item["failure_id"] for item in planned["failures"]} == {None}
    assert {item["state"] for item in planned["failures"]} == {None}
    assert await records_pushed(portal_url) == pushed, "a dry run sent something"
    _, still = await portal_sync(config_path, "failures", "list", "--state", "all")
    assert still["total"] == 0, "a dry run changed the failure table"

    code, replayed = await portal_sync(config_path, "replay", "--from-dlq")
    assert code == 3  # the foreign record cannot be read: it stays open, for an operator to look at
    check_printed("ReplayReport", replayed)
    assert (replayed["dry_run"], replayed["dlq"]) == (False, {"read": FAILING + 1, "known": 0, "missing": FAILING + 1})
    assert replayed["counts"] == {"replayed": FAILING - 1, "resolved": 1, "open": 1}
    done = {item["dossier_no"]: (item["action"], item["state"]) for item in replayed["failures"]}
    assert (done.pop(numbered(1)), done.pop("foreign-key")) == (("superseded", "resolved"), ("unreadable", "open"))
    assert set(done.values()) == {("send", "replayed")}
    await assert_portal_holds_newest(portal_url, messages)
    _, taken_back = await portal_sync(config_path, "failures", "list", "--state", "all", "--limit", "1000")
    # Taken back under the original records' coordinates; the foreign record under its DLQ ones.
    now_held = {(f["topic"], f["partition"], f["offset"]) for f in taken_back["failures"]}
    assert coordinates <= now_held
    assert [topic for topic, _, _ in now_held - coordinates] == [stream.dead_letter]
    _, still_open = await portal_sync(config_path, "failures", "list")
    [foreign] = still_open["failures"]
    assert (foreign["topic"], foreign["dossier_no"]) == (stream.dead_letter, "foreign-key")
    _, shown = await portal_sync(config_path, "failures", "show", str(foreign["id"]))
    assert [(a["origin"], a["reason"]) for a in shown["attempts_history"]] == [
        ("dlq", "dlq_without_error_headers"), ("replay", "malformed_json")]

    # Everything on the DLQ is in the table now: a second run takes nothing.
    _, again = await portal_sync(config_path, "replay", "--from-dlq")
    check_printed("ReplayReport", again)
    assert again["dlq"] == {"read": FAILING + 1, "known": FAILING + 1, "missing": 0}
    assert again["counts"] == {}
