"""Hostile SOAP replies met by the running daemon: the simulator answers pushes with them (one-shot faults
carrying a SOAP content type) in the middle of a stream. Each is a classified error; the daemon waits out the
ones that are the platform's trouble and retries, a fault with a code nobody knows is the record's refusal;
the stream drains, every other dossier ends at its newest version, and nothing is lost. (Each reply on its own,
with the memory it costs: ``test_soap_reply``.)"""

from __future__ import annotations

import json

import pytest

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.dev.samples import generate_events, own_dossiers
from connector.push.mapping import load_mappings
from connector.store import StateStore
from tests.integration.pipeline_harness import (
    Topics,
    daemon_config,
    expected_portal_state,
    portal_dossiers,
    run_until_committed,
    simulator_call,
    unique_group,
)
from tests.kafkatools import produce

pytestmark = [pytest.mark.broker, pytest.mark.parametrize("transport", ["soap"], indirect=True)]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SECRET_MARKER = "secret-marker-7f3a"


def envelope(payload: str, *, prolog: str = "") -> str:
    return f'<?xml version="1.0"?>{prolog}<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body>{payload}</s:Body></s:Envelope>'


def ok_reply(namespace: str = "urn:portal-sync:dvcqg:v1", code: str = "0") -> str:
    return (f'<DongBoHoSoMCResponse xmlns="{namespace}"><DongBoHoSoMCResult><error_code>{code}</error_code>'
            "<message>ok</message></DongBoHoSoMCResult></DongBoHoSoMCResponse>")


def hostile_replies(secret_file: str) -> dict[str, tuple[int, str, str]]:
    """name → (HTTP status, body, the reason the call must end with)."""
    laughs = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    return {
        "XXE reading a local file": (200, envelope(
            ok_reply().replace("<message>ok", "<message>&xxe;"),
            prolog=f'<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file://{secret_file}">]>'), "unsafe_xml"),
        "billion laughs": (200, envelope(ok_reply().replace("<message>ok", "<message>&l9;"),
                                         prolog=f"<!DOCTYPE s:Envelope [{laughs}]>"), "unsafe_xml"),
        "a DTD": (200, envelope(ok_reply(), prolog="<!DOCTYPE s:Envelope [<!ELEMENT x ANY>]>"), "unsafe_xml"),
        "a reply the XSD refuses": (200, envelope(ok_reply(code="0" * 40)), "invalid_reply"),
        "the wrong namespace": (200, envelope(ok_reply(namespace="urn:another:platform")), "unexpected_reply"),
        "not XML under a SOAP content type": (200, "<html><body>Bad gateway<br></body></html>", "malformed_reply"),
        "over the reply bound": (200, envelope(ok_reply().replace("ok", "x" * (9 * 1024 * 1024))), "reply_too_large"),
        "a fault with an unknown code": (500, envelope(
            '<s:Fault><faultcode>s:Server</faultcode><faultstring>?</faultstring><detail>'
            '<PortalFault xmlns="urn:portal-sync:dvcqg:types:v1"><error_code>XYZ-42</error_code>'
            "<message>không rõ</message></PortalFault></detail></s:Fault>"), "portal_rejected"),
    }


async def test_hostile_soap_replies_are_classified_and_the_stream_drains_with_nothing_lost(
    kafka_bootstrap, topics, portal_url, tmp_path
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET_MARKER)
    replies = hostile_replies(str(secret_file))
    for status, body, _ in replies.values():
        fault = {"status": status, "body": body, "content_type": "text/xml; charset=utf-8",
                 "service": "DongBoHoSoMC", "times": 1}
        await simulator_call("POST", f"{portal_url}/_sim/faults", expect=201, json=fault)

    stream = Topics(await topics.create("dossier.events", partitions=2),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    messages = own_dossiers(generate_events(dossiers=20, seed=41, include_bad=False))
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)
    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    config["push"] = {"max_batch_records": 5}
    service, _ = await run_until_committed(load_settings(None, **config), kafka_bootstrap, stream, expected_offsets)

    # Every hostile reply was served, and each ended as the error of its kind.
    served = (await simulator_call("GET", f"{portal_url}/_sim/stats"))["calls"]["DongBoHoSoMC"]
    assert served.get("fault_200") == len(replies) - 1 and served.get("fault_500") == 1, served
    registry = service.metrics.registry
    for name, (_, _, reason) in replies.items():
        calls = registry.get_sample_value("portal_sync_portal_calls_total",
                                          {"service": "DongBoHoSoMC", "result": reason}) or 0
        assert calls >= 1, f"{name}: no call ended as {reason}"

    # The unknown code is one record's refusal at most (the batch it met is split, the others go through);
    # every other dossier holds its newest version. Nothing read from the local file went anywhere.
    store = await StateStore.open(config["state"]["url"])
    try:
        failures = await store.failures(state=None)
    finally:
        await store.close()
    assert len(failures) <= 1, [(f.reason, f.message) for f in failures]
    refused = {f.dossier_no for f in failures}
    for failure in failures:
        assert (failure.reason, failure.error_kind) == ("portal_rejected", "permanent")
        assert "XYZ-42" in failure.message or "không rõ" in failure.message
    expected = expected_portal_state([m for m in messages if m.key.decode() not in refused],
                                     load_mappings(DEFAULT_MAPPINGS_DIR))
    portal = await portal_dossiers(portal_url)
    for no, record in expected.records.items():
        assert portal[no]["record"] == record, f"{no}: not at its newest version"
    assert SECRET_MARKER not in json.dumps(portal, ensure_ascii=False)
    assert all(SECRET_MARKER not in f.message for f in failures)
