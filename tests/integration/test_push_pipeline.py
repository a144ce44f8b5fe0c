"""The push pipeline end to end: real broker, real simulator over HTTP on loopback, real SQLite."""

from __future__ import annotations

import json
from collections import Counter

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.dev.samples import generate_events
from connector.kafka import ERROR_HEADER_PREFIX
from connector.push.mapping import load_mappings
from connector.service import Service
from tests.factories import encode, event_dict
from tests.integration.pipeline_harness import (
    Topics,
    assert_portal_holds_newest,
    daemon_settings,
    over_both_transports,
    portal_dossiers,
    run_until_committed,
    unique_group,
    version_in,
    wait_until,
)
from tests.kafkatools import consume_all, produce

pytestmark = [pytest.mark.broker, over_both_transports]


@pytest.fixture
async def pipeline_topics(topics) -> Topics:
    return Topics(
        events=await topics.create("dossier.events", partitions=3),
        dead_letter=await topics.create("dossier.events.dlq", partitions=1),
        group=unique_group(),
    )


async def drained_admin_pages(service: Service, topics: Topics, partitions: list[int]) -> dict[str, tuple[int, str]]:
    # The lag gauge is refreshed right after a commit; wait for it to show the drained partitions.
    await wait_until(lambda: lag_is_zero(service.admin_url, topics.events, partitions),
                     timeout=10, what="consumer lag 0 on every partition")
    return await admin_pages(service.admin_url)


async def admin_pages(base_url: str) -> dict[str, tuple[int, str]]:
    pages = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for path in ("/healthz", "/metrics"):
            async with http.get(base_url + path) as reply:
                pages[path] = (reply.status, await reply.text())
    return pages


async def lag_is_zero(base_url: str, topic: str, partitions: list[int]) -> bool:
    metrics = (await admin_pages(base_url))["/metrics"][1]
    return all(metric_value(metrics, "portal_sync_consumer_lag", topic=topic, partition=str(p)) == 0
               for p in partitions)


def metric_value(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def header(record, name: str) -> str:
    return dict(record.headers)[ERROR_HEADER_PREFIX + name].decode()


async def test_a_stream_of_dossiers_ends_with_the_newest_state_of_each_on_the_portal(
    kafka_bootstrap, pipeline_topics, portal_url, tmp_path
) -> None:
    messages = generate_events(dossiers=100, seed=7, min_events_per_dossier=5, max_events_per_dossier=5)
    valid = [m for m in messages if m.label == "valid"]
    bad = {m.label: m for m in messages if m.label != "valid"}
    assert len(valid) == 500 and set(bad) == {"malformed-json", "schema-invalid", "unmapped-status"}
    expected_offsets = await produce(kafka_bootstrap, pipeline_topics.events, messages)
    assert len(expected_offsets) == 3  # the stream really spans three partitions

    settings = daemon_settings(kafka_bootstrap, portal_url, pipeline_topics, tmp_path)
    service, admin = await run_until_committed(
        settings, kafka_bootstrap, pipeline_topics, expected_offsets,
        while_running=lambda svc: drained_admin_pages(svc, pipeline_topics, list(expected_offsets)))

    await assert_portal_holds_newest(portal_url, messages)

    # The dossiers that started on the national portal have their status sent back (DongBoTrangThaiHoSo), which
    # this portal refuses: it never had them (tests/integration/test_status_back.py registers them first).
    from_portal = [m for m in valid if json.loads(m.value)["dossier"]["origin"] == "portal"]
    assert from_portal, "the sample has no dossier from the national portal: the test would prove less"
    dead = await consume_all(kafka_bootstrap, pipeline_topics.dead_letter, count=3 + len(from_portal), timeout=30)
    by_reason = {header(r, "reason"): r for r in dead}
    assert set(by_reason) == {"malformed_json", "schema", "unmapped_status", "portal_rejected"}
    refused = [(r.key, r.value) for r in dead if header(r, "reason") == "portal_rejected"]
    assert sorted(refused) == sorted((m.key, m.value) for m in from_portal)
    for reason, label in (("malformed_json", "malformed-json"), ("schema", "schema-invalid"),
                          ("unmapped_status", "unmapped-status")):
        record = by_reason[reason]
        assert record.key == bad[label].key and record.value == bad[label].value  # byte-identical
        assert header(record, "topic") == pipeline_topics.events
        assert header(record, "exception.class.name") in {"InvalidEvent", "MappingError"}
        assert header(record, "exception.message")
        assert int(header(record, "offset")) >= 0 and int(header(record, "partition")) in range(3)

    outcomes = Counter()
    for metric in service.metrics.event_outcomes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                outcomes[sample.labels["outcome"]] += int(sample.value)
    assert outcomes["failed"] == 3 + len(from_portal)
    assert outcomes["synced"] + outcomes["skipped"] + outcomes["failed"] == len(messages)

    # What a dashboard reads: the same numbers over HTTP, in Prometheus text format.
    assert admin["/healthz"][0] == 200
    status, metrics = admin["/metrics"]
    assert status == 200
    assert metric_value(metrics, "portal_sync_events_consumed_total", topic=pipeline_topics.events) == len(messages)
    for reason in ("malformed_json", "schema", "unmapped_status"):
        assert metric_value(metrics, "portal_sync_event_outcomes_total", outcome="failed", reason=reason) == 1
    # Batched: far fewer calls than records, and every step arrived (checked above) in some call.
    assert 1 <= metric_value(metrics, "portal_sync_portal_calls_total", service="DongBoHoSoMC", result="ok") < len(
        valid)
    assert metric_value(metrics, "portal_sync_portal_calls_total", service="CapNhatTienDoHoSoMC", result="ok") >= 1
    # One dossier per status back, never a whole record: nothing of theirs went with DongBoHoSoMC (checked above).
    assert 1 <= metric_value(metrics, "portal_sync_portal_calls_total", service="DongBoTrangThaiHoSo",
                             result="portal_rejected") <= len(from_portal)
    assert metric_value(metrics, "portal_sync_push_latency_seconds_count") == outcomes["synced"]


async def test_refused_and_oversized_records_are_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap, pipeline_topics, portal_url, tmp_path
) -> None:
    # Without the declared length limit, a long note reaches the adapter, which refuses it for good; over SOAP
    # the WSDL's schema refuses it first, before anything is sent.
    refusal = "portal_rejected" if portal_url.transport == "rest" else "request_invalid"
    unlimited = load_mappings(DEFAULT_MAPPINGS_DIR).model_copy(update={"limits": {}})
    refused = encode(event_dict(no="000.00.01.G12-201005-0100", note="x" * 2500))
    oversized = encode(event_dict(no="000.00.01.G12-201005-0101", summary="y" * 9000))
    accepted = encode(event_dict(no="000.00.01.G12-201005-0100", version=2))
    expected_offsets = await produce(kafka_bootstrap, pipeline_topics.events, [refused, oversized, accepted])

    config = daemon_settings(kafka_bootstrap, portal_url, pipeline_topics, tmp_path)
    settings = config.model_copy(update={"kafka": config.kafka.model_copy(update={"max_event_bytes": 8192})})
    _, admin = await run_until_committed(
        settings, kafka_bootstrap, pipeline_topics, expected_offsets, mappings=unlimited,
        while_running=lambda svc: drained_admin_pages(svc, pipeline_topics, list(expected_offsets)))

    dead = {header(r, "reason"): r for r in
            await consume_all(kafka_bootstrap, pipeline_topics.dead_letter, count=2, timeout=30)}
    assert set(dead) == {refusal, "too_large"}
    assert header(dead[refusal], "kind") == "permanent"
    assert "GhiChu" in header(dead[refusal], "exception.message")
    assert dead[refusal].value == refused[1]
    # Too large to forward whole: the key and the coordinates are kept, the size is said.
    assert dead["too_large"].key == oversized[0] and dead["too_large"].value is None
    assert header(dead["too_large"], "original.size") == str(len(oversized[1]))

    portal = await portal_dossiers(portal_url)
    assert set(portal) == {"000.00.01.G12-201005-0100"}
    assert version_in(portal["000.00.01.G12-201005-0100"]["record"]) == 2
    assert metric_value(admin["/metrics"][1], "portal_sync_portal_calls_total", service="DongBoHoSoMC",
                        result=refusal) == 1
