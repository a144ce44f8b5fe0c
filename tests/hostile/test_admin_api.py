"""Hostile calls on the admin listener (``connector.operators.admin``): the bearer-token guard of ``/api/``, the
query of ``GET /api/failures``, the failure ids in paths, and the bodies of ``POST /api/replay`` and
``POST /api/failures/{id}/discard``.

The listener runs as the daemon starts it (``start_admin``) with real operations: a real state store (SQLite;
PostgreSQL too for the text a PostgreSQL column cannot hold) seeded with failures, and the replayer the daemon
builds (``open_replayer``) over it. Every request is written as raw bytes over a loopback socket, so headers
and bodies no HTTP client would send reach the server as they are.

For every hostile input: a 4xx whose body is the API's JSON ``{"error": "..."}`` naming the field or parameter
and the rule, never a 500; no traceback and no error in the captured logs; the token in no log event; and
afterwards an authorised call is still answered. Two refusals come from aiohttp's HTTP parser, before the app
sees the request, and are plain text: a request line over 8190 bytes (a 10,000-character query value), and a
header broken by CR or LF (a token with "\\r\\n" injected). Both are a 400 and logged as the error's class only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.observability import Metrics
from connector.operators.admin import Operations, start_admin
from connector.operators.replay import open_replayer
from connector.push.mapping import load_mappings
from connector.store import StateStore
from tests.databases import state_database
from tests.integration.pipeline_harness import Topics, daemon_config
from tests.integration.raw_http import STEP_SECONDS, RawReply, chunked_request_parts, raw_request, request_bytes
from tests.integration.test_admin_api import TOKEN
from tests.integration.test_state_store import _failure

BEARER = b"Authorization: Bearer " + TOKEN.encode()
JSON_TYPE = b"Content-Type: application/json"
SEEDED = 3
REQUIRED = "a valid bearer token is required"


async def within(step: Any) -> Any:
    return await asyncio.wait_for(step, STEP_SECONDS * 3)


@dataclass
class Admin:
    port: int
    store: StateStore

    async def send(self, method: str, path: str, body: bytes = b"", *, headers: list[bytes] | None = None
                   ) -> RawReply:
        """One request, authorised unless ``headers`` says otherwise; raw_request bounds every step in time."""
        return await raw_request(self.port, request_bytes(method, path, headers=[BEARER, JSON_TYPE] if headers is None
                                                          else headers, body=body))

    async def state(self, ident: int) -> str:
        row = await within(self.store.failure(ident))
        return str(row["state"])

    async def still_serves(self) -> None:
        reply = await self.send("GET", "/api/failures")
        assert reply.status == 200, reply.body[:300]
        assert isinstance(reply.json()["failures"], list)


@pytest.fixture(params=["sqlite"])
async def admin(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Admin]:
    async with state_database(request.param, tmp_path) as url:
        config = daemon_config("127.0.0.1:9", "http://127.0.0.1:9", Topics("e", "d", "g"), tmp_path)
        config["state"] = {"url": url}
        settings = load_settings(None, **config)
        mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
        store = await within(StateStore.open(url))
        try:
            await within(store.record_failures([_failure(offset) for offset in range(1, SEEDED + 1)]))

            async def readiness() -> dict[str, str]:
                return {"state_store": "ok"}

            operations = Operations(store=store, readiness=readiness, replayer=lambda by: open_replayer(
                settings, mappings, changed_by=by, store=store))
            runner, base = await within(start_admin(Metrics(), "127.0.0.1", 0, token=TOKEN, operations=operations))
            try:
                yield Admin(int(base.rsplit(":", 1)[1]), store)
            finally:
                await within(runner.cleanup())
        finally:
            await within(store.close())


both_stores = pytest.mark.parametrize("admin", ["sqlite", "postgresql"], indirect=True)


def assert_clean(logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    """No error, no traceback, no token in what was logged (structlog events and standard logging records)."""
    text = repr(logs) + repr([(r.getMessage(), r.args) for r in caplog.records])
    assert not [e for e in logs if e.get("log_level") in ("error", "critical", "exception") or "exc_info" in e
                or "exception" in e], logs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.records
    assert "Traceback" not in text
    assert TOKEN not in text and TOKEN[:8] not in text


def assert_json_refusal(reply: RawReply, status: int, says: str | tuple[str, ...]) -> str:
    """The API's JSON error, its message holding ``says`` (or one of them: where two checks may each refuse)."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert any(part in body["error"] for part in ((says,) if isinstance(says, str) else says)), body["error"]
    return body["error"]


# --- the bearer-token guard ---------------------------------------------------------------------------------------

T = TOKEN.encode()
NOT_THE_TOKEN = {
    "bytes that are not UTF-8": b"Authorization: Bearer \xff\xfe",
    "the token and a stray byte": b"Authorization: Bearer " + T + b"\xc0",
    "the token, UTF-8 of a lone surrogate appended": b"Authorization: Bearer " + T + b"\xed\xa0\x80",
    "Basic with the token": b"Authorization: Basic " + T,
    "Basic with user:token": b"Authorization: Basic " + base64.b64encode(b"admin:" + T),
    "the scheme alone": b"Authorization: Bearer",
    "the scheme and a space": b"Authorization: Bearer ",
    "an empty value": b"Authorization: ",
    "no value at all": b"Authorization:",
    "the token alone, no scheme": b"Authorization: " + T,
    "the token twice, spaced": b"Authorization: Bearer " + T + b" " + T,
    "the token twice, joined": b"Authorization: Bearer " + T + T,
    "the token and a comma": b"Authorization: Bearer " + T + b",",
    "a tab instead of the space": b"Authorization: Bearer\t" + T,
    "the token in capitals": b"Authorization: Bearer " + T.upper(),
    "the token less its last character": b"Authorization: Bearer " + T[:-1],
    "the token in quotes": b'Authorization: Bearer "' + T + b'"',
    "the token as a query-style value": b"Authorization: Bearer token=" + T,
    "another header carries it": b"X-Authorization: Bearer " + T,
}


@pytest.mark.parametrize("name", sorted(NOT_THE_TOKEN))
async def test_an_authorization_header_that_is_not_the_token_is_a_401_with_a_json_reason(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("GET", "/api/failures", headers=[NOT_THE_TOKEN[name]])
        assert_json_refusal(reply, 401, REQUIRED)
        assert reply.headers["www-authenticate"] == "Bearer"
        refused_post = await admin.send("POST", "/api/replay", b'{"all": true}', headers=[NOT_THE_TOKEN[name]])
        assert_json_refusal(refused_post, 401, REQUIRED)
    assert_clean(logs, caplog)
    await admin.still_serves()


async def test_no_authorization_header_is_a_401_and_probes_need_none(admin: Admin) -> None:
    assert_json_refusal(await admin.send("GET", "/api/failures/1", headers=[]), 401, REQUIRED)
    for probe in ("/healthz", "/readyz"):
        assert (await admin.send("GET", probe, headers=[])).status == 200


BROKEN_HEADERS = {
    "CRLF inside the token": b"Authorization: Bearer " + T[:6] + b"\r\n" + T[6:],
    "CRLF and a space (obsolete folding)": b"Authorization: Bearer " + T[:6] + b"\r\n " + T[6:],
    "a bare CR inside the token": b"Authorization: Bearer " + T[:6] + b"\r" + T[6:],
    "a bare LF inside the token": b"Authorization: Bearer " + T[:6] + b"\n" + T[6:],
    "CRLF before the token": b"Authorization: Bearer\r\n " + T,
    "NUL after the token": b"Authorization: Bearer " + T + b"\x00",
}


@pytest.mark.parametrize("name", sorted(BROKEN_HEADERS))
async def test_a_token_with_cr_or_lf_injected_breaks_the_request_and_is_never_let_in(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("GET", "/api/failures", headers=[BROKEN_HEADERS[name]])
    assert reply.status in (400, 401), reply.body[:200]
    assert_clean(logs, caplog)
    await admin.still_serves()


@pytest.mark.parametrize("second", [b"Authorization: Bearer wrong", b"Authorization: Bearer " + T],
                         ids=["then another", "then the token again"])
async def test_two_authorization_headers_are_a_401(admin: Admin, second: bytes) -> None:
    assert_json_refusal(await admin.send("GET", "/api/failures", headers=[BEARER, second]), 401, REQUIRED)


# --- the query of GET /api/failures -----------------------------------------------------------------------------

BAD_QUERIES = {
    "limit=1e400": ("limit=1e400", "limit: must be a whole number from 1 to 1000"),
    "limit=-1": ("limit=-1", "limit: must be a whole number from 1 to 1000"),
    "limit=NaN": ("limit=NaN", "limit: must be a whole number from 1 to 1000"),
    "limit=20 nines": ("limit=99999999999999999999", "limit: must be a whole number from 1 to 1000"),
    "limit=0": ("limit=0", "limit: must be a whole number from 1 to 1000"),
    "limit=1001": ("limit=1001", "limit: must be a whole number from 1 to 1000"),
    "limit empty": ("limit=", "limit: must be a whole number from 1 to 1000"),
    "limit=+5": ("limit=%2B5", "limit: must be a whole number from 1 to 1000"),
    "limit in full-width digits": ("limit=%EF%BC%95", "limit: must be a whole number from 1 to 1000"),
    "limit=1_0": ("limit=1_0", "limit: must be a whole number from 1 to 1000"),
    "after_id=abc": ("after_id=abc", "after_id: must be a whole number from 0 to 2147483647"),
    "after_id beyond 32 bits": ("after_id=2147483648", "after_id: must be a whole number from 0 to 2147483647"),
    "after_id NUL": ("after_id=%00", ("after_id: must be a whole number", "after_id: must not contain")),
    "since offset +25:00": ("since=2024-01-01T00:00:00%2B25:00", "since: must be an ISO 8601 date or date-time"),
    "since a leap second": ("since=2016-12-31T23:59:60Z", "since: must be an ISO 8601 date or date-time"),
    "since a lone surrogate": ("since=%ED%A0%80", "since: must be an ISO 8601 date or date-time"),
    "since NUL": ("since=%00", ("since: must be an ISO 8601 date", "since: must not contain")),
    "since month 13": ("since=2024-13-01", "since: must be an ISO 8601 date or date-time"),
    "until 24:01": ("until=2024-01-01T24:01", "until: must be an ISO 8601 date or date-time"),
    "state unknown": ("state=lost", "state: must be one of"),
    "state NUL": ("state=%00", ("state: must be one of", "state: must not contain")),
    "an unknown parameter": ("colour=red", "unknown query parameter(s): colour"),
    "a lone-surrogate parameter name": ("%ED%A0%80=1", "unknown query parameter(s)"),
}


@pytest.mark.parametrize("name", sorted(BAD_QUERIES))
async def test_a_hostile_query_parameter_is_a_400_naming_the_parameter_and_the_rule(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    query, says = BAD_QUERIES[name]
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("GET", f"/api/failures?{query}")
    assert_json_refusal(reply, 400, says)
    assert_clean(logs, caplog)
    await admin.still_serves()


@pytest.mark.parametrize("query", ["dossier=%ED%A0%80", "reason=%ED%A0%80", "dossier=" + "x" * 4000,
                                   "error_class=%C0%AF"], ids=["lone surrogate", "surrogate reason", "4000 characters",
                                                               "overlong UTF-8"])
async def test_a_text_filter_that_matches_nothing_is_an_empty_page(admin: Admin, query: str) -> None:
    reply = await admin.send("GET", f"/api/failures?{query}")
    assert (reply.status, reply.json()) == (200, {"total": 0, "failures": [], "next_after_id": None})


@pytest.mark.parametrize("query", ["reason=" + "x" * 10_000, "since=" + "1" * 10_000, "limit=" + "9" * 10_000,
                                   "k" * 10_000 + "=1"], ids=["reason", "since", "limit", "a parameter name"])
async def test_a_10000_character_query_value_is_a_400_from_the_http_parser_with_only_its_class_logged(
        admin: Admin, caplog: pytest.LogCaptureFixture, query: str) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("GET", f"/api/failures?{query}")
    assert reply.status == 400 and b"8190 bytes" in reply.body
    assert [(e["event"], e["status"]) for e in logs] == [("listener.request_failed", 400)]
    assert_clean(logs, caplog)
    await admin.still_serves()


EDGE_MOMENTS = {
    "the last moment, west of UTC": "9999-12-31T23:59:59-23:59",
    "the first moment, east of UTC": "0001-01-01T00:00:00%2B14:00",
}


@pytest.mark.parametrize("parameter", ["since", "until"])
@pytest.mark.parametrize("name", sorted(EDGE_MOMENTS))
async def test_a_moment_beyond_the_calendar_once_in_utc_is_a_400_not_a_500(
        admin: Admin, parameter: str, name: str) -> None:
    reply = await admin.send("GET", f"/api/failures?{parameter}={EDGE_MOMENTS[name]}")
    assert_json_refusal(reply, 400, f"{parameter}:")


NUL_TEXT = {
    "dossier": ("GET", "/api/failures?dossier=a%00b", b"", "dossier:"),
    "reason": ("GET", "/api/failures?reason=%00", b"", "reason:"),
    "discard reason": ("POST", "/api/failures/1/discard", b'{"reason": "a\\u0000b"}', "reason:"),
    "discard by": ("POST", "/api/failures/1/discard", b'{"reason": "dup", "by": "a\\u0000"}', "by:"),
    "replay dossier": ("POST", "/api/replay", b'{"dossier": "a\\u0000b", "dry_run": true}', "dossier:"),
}


@both_stores
@pytest.mark.parametrize("name", sorted(NUL_TEXT))
async def test_a_nul_in_a_text_value_is_a_400_naming_it_on_either_store(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    method, path, body, says = NUL_TEXT[name]
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send(method, path, body)
    assert_clean(logs, caplog)
    assert_json_refusal(reply, 400, says)


# --- failure ids in paths -------------------------------------------------------------------------------------------

BAD_IDS = ["1e400", "-1", "0", "..%2F..%2Fetc", "99999999999999999999999", "2147483648", "%EF%BC%91", "1.0",
           "0x1", "%201", "%00", "%ED%A0%80", "x" * 4000]
ID_RULE = "failure id: must be a whole number from 1 to 2147483647"


@pytest.mark.parametrize("ident", BAD_IDS, ids=lambda i: i[:24])
@pytest.mark.parametrize(("method", "suffix", "body"), [("GET", "", b""), ("POST", "/discard", b'{"reason": "dup"}'),
                                                        ("POST", "/replay", b'{"dry_run": true}')],
                         ids=["show", "discard", "replay"])
async def test_a_failure_id_that_is_not_a_row_number_is_a_400_naming_the_id(
        admin: Admin, caplog: pytest.LogCaptureFixture, ident: str, method: str, suffix: str, body: bytes) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send(method, f"/api/failures/{ident}{suffix}", body)
    assert_json_refusal(reply, 400, ID_RULE)
    assert_clean(logs, caplog)
    await admin.still_serves()


async def test_an_id_of_no_failure_is_a_404_naming_it(admin: Admin) -> None:
    assert_json_refusal(await admin.send("GET", "/api/failures/2147483647"), 404, "no failure 2147483647")
    assert_json_refusal(await admin.send("POST", "/api/failures/999/discard", b'{"reason": "dup"}'), 404,
                        "no failure 999")


# --- POST bodies ----------------------------------------------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000
UNREADABLE = "(body): "  # the body is not one JSON value of usable text
BAD_REPLAY_BODIES = {
    "not JSON": (b"not json", UNREADABLE),
    "a byte-order mark": (b'\xef\xbb\xbf{"all": true, "dry_run": true}', UNREADABLE),
    "invalid UTF-8": (b'{"dossier": "\xff\xfe"}', UNREADABLE),
    "overlong UTF-8": (b'{"dossier": "\xc0\xaf"}', UNREADABLE),
    "a raw NUL": (b'{"dossier": "a\x00b"}', UNREADABLE),
    "a lone surrogate escape": (b'{"dossier": "\\ud800"}', "dossier: must be text: a lone surrogate"),
    "two JSON values": (b'{"all": true} {"all": true}', UNREADABLE),
    "NaN": (b'{"ids": [NaN]}', ("ids.0: Input should be a finite number", "(body): NaN is not JSON")),
    "depth 10,000": (DEEP, UNREADABLE),
    "depth 10,000 inside ids": (b'{"ids": ' + DEEP + b"}", UNREADABLE),
    "UTF-16": ('{"all": true}'.encode("utf-16"), UNREADABLE),
    "a list": (b"[]", "(body): Input should be an object"),
    "null": (b"null", "(body): Input should be an object"),
    "a string": (b'"all"', "(body): Input should be an object"),
    "empty": (b"", "select failures: ids, all: true, and/or filters"),
    "an empty object": (b"{}", "select failures: ids, all: true, and/or filters"),
    "an unknown field": (b'{"all": true, "colour": "red"}', "colour: Extra inputs are not permitted"),
    "a NUL-named unknown field": (b'{"a\\u0000": 1}', ("Extra inputs are not permitted", "every key must not contain")),
    "ids a number": (b'{"ids": 1}', "ids: Input should be a valid array"),
    "ids an object": (b'{"ids": {"0": 1}}', "ids: Input should be a valid array"),
    "ids zero": (b'{"ids": [0]}', "ids.0: Input should be greater than or equal to 1"),
    "ids negative": (b'{"ids": [-1]}', "ids.0: Input should be greater than or equal to 1"),
    "ids beyond 32 bits": (b'{"ids": [2147483648]}', "ids.0: Input should be less than or equal to 2147483647"),
    "ids 1e400": (b'{"ids": [1e400]}', ("ids.0: Input should be a finite number", "(body): a number too large")),
    "ids 23 digits": (b'{"ids": [99999999999999999999999]}', "ids.0: Input should be less than or equal to"),
    "ids a fraction": (b'{"ids": [1.5]}', "ids.0: Input should be a valid integer"),
    "ids null": (b'{"ids": [null]}', "ids.0: Input should be a valid integer"),
    "ids over 10,000": (b'{"ids": [' + b",".join([b"1"] * 10_001) + b"]}", "ids: List should have at most 10000"),
    "all a word": (b'{"all": "maybe"}', "all: Input should be a valid boolean"),
    "all a list": (b'{"all": [true]}', "all: Input should be a valid boolean"),
    "dry_run 2": (b'{"all": true, "dry_run": 2}', "dry_run: Input should be a valid boolean"),
    "dry_run null": (b'{"all": true, "dry_run": null}', "dry_run: Input should be a valid boolean"),
    "by empty": (b'{"all": true, "by": ""}', "by: String should have at least 1 character"),
    "by null": (b'{"all": true, "by": null}', "by: Input should be a valid string"),
    "by a number": (b'{"all": true, "by": 1}', "by: Input should be a valid string"),
    "by 101 characters": (b'{"all": true, "by": "' + b"x" * 101 + b'"}', "by: String should have at most 100"),
    "dossier a number": (b'{"dossier": 5}', "dossier: Input should be a valid string"),
    "service a list": (b'{"service": []}', "service: Input should be a valid string"),
    "error_class true": (b'{"error_class": true}', "error_class: Input should be a valid string"),
    "reason an object": (b'{"reason": {}}', "reason: Input should be a valid string"),
    "state a number": (b'{"state": 3}', "state: Input should be a valid string"),
    "state unknown": (b'{"state": "lost"}', "state: Value error, must be one of"),
    "since offset +25:00": (b'{"since": "2024-01-01T00:00:00+25:00"}', "since: Input should be a valid datetime"),
    "since a leap second": (b'{"since": "2016-12-31T23:59:60Z"}', "since: Input should be a valid datetime"),
    "since 1e400": (b'{"since": 1e400}', ("since: Input should be a valid datetime", "(body): a number too large")),
    "since 20 digits": (b'{"since": 99999999999999999999}', "since: Input should be a valid datetime"),
    "since a list": (b'{"since": []}', "since: Input should be a valid datetime"),
    "until a word": (b'{"until": "tomorrow"}', "until: Input should be a valid datetime"),
}


@pytest.mark.parametrize("name", sorted(BAD_REPLAY_BODIES))
async def test_a_hostile_replay_body_is_a_400_naming_the_field_and_the_rule(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    body, says = BAD_REPLAY_BODIES[name]
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("POST", "/api/replay", body)
    assert_json_refusal(reply, 400, says)
    assert_clean(logs, caplog)
    await admin.still_serves()
    assert await admin.state(1) == "open"  # nothing was replayed


BAD_DISCARD_BODIES = {
    "empty": (b"", "reason: Field required"),
    "an empty object": (b"{}", "reason: Field required"),
    "not JSON": (b"discard it", UNREADABLE),
    "a byte-order mark": (b'\xef\xbb\xbf{"reason": "dup"}', UNREADABLE),
    "invalid UTF-8": (b'{"reason": "\xff"}', UNREADABLE),
    "a raw NUL": (b'{"reason": "\x00"}', UNREADABLE),
    "a lone surrogate escape": (b'{"reason": "\\udfff"}', "reason: must be text: a lone surrogate"),
    "depth 10,000": (DEEP, UNREADABLE),
    "depth 10,000 as the reason": (b'{"reason": ' + DEEP + b"}", UNREADABLE),
    "a list": (b'["dup"]', "(body): Input should be an object"),
    "reason a number": (b'{"reason": 5}', "reason: Input should be a valid string"),
    "reason null": (b'{"reason": null}', "reason: Input should be a valid string"),
    "reason empty": (b'{"reason": ""}', "reason: String should have at least 1 character"),
    "reason 2001 characters": (b'{"reason": "' + b"x" * 2001 + b'"}', "reason: String should have at most 2000"),
    "by a number": (b'{"reason": "dup", "by": 1}', "by: Input should be a valid string"),
    "by empty": (b'{"reason": "dup", "by": ""}', "by: String should have at least 1 character"),
    "an unknown field": (b'{"reason": "dup", "state": "open"}', "state: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("name", sorted(BAD_DISCARD_BODIES))
async def test_a_hostile_discard_body_is_a_400_naming_the_field_and_the_failure_stays_open(
        admin: Admin, caplog: pytest.LogCaptureFixture, name: str) -> None:
    body, says = BAD_DISCARD_BODIES[name]
    with structlog.testing.capture_logs() as logs:
        reply = await admin.send("POST", "/api/failures/1/discard", body)
    assert_json_refusal(reply, 400, says)
    assert_clean(logs, caplog)
    assert await admin.state(1) == "open"
    await admin.still_serves()


LAX_BODIES = {
    "all as the number 1 (a real replay)": b'{"all": 1}',
    "all as the text true (a real replay)": b'{"all": "true"}',
    "dry_run as the text no (a real replay)": b'{"ids": [1], "dry_run": "no"}',
    "dry_run as 0 (a real replay)": b'{"ids": [1], "dry_run": 0}',
    "an id as true": b'{"ids": [true], "dry_run": true}',
    "an id as text": b'{"ids": ["1"], "dry_run": true}',
    "an id as a float": b'{"ids": [1.0], "dry_run": true}',
}


@pytest.mark.parametrize("name", sorted(LAX_BODIES))
async def test_a_value_of_the_wrong_type_is_refused_not_converted(admin: Admin, name: str) -> None:
    reply = await admin.send("POST", "/api/replay", LAX_BODIES[name])
    assert_json_refusal(reply, 400, "Input should be a valid")


DUPLICATES = {
    "dry_run true then false": ("/api/replay", b'{"ids": [1], "dry_run": true, "dry_run": false}'),
    "two reasons": ("/api/failures/1/discard", b'{"reason": "dup", "reason": "another"}'),
}


@pytest.mark.parametrize("name", sorted(DUPLICATES))
async def test_a_duplicate_key_is_refused(admin: Admin, name: str) -> None:
    path, body = DUPLICATES[name]
    assert_json_refusal(await admin.send("POST", path, body), 400, "appears twice")


@pytest.mark.parametrize("member", ["since", "until"])
@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"])
async def test_a_replay_filter_moment_beyond_the_calendar_once_in_utc_is_a_400(
        admin: Admin, member: str, moment: str) -> None:
    body = json.dumps({member: moment, "dry_run": True}).encode()
    assert_json_refusal(await admin.send("POST", "/api/replay", body), 400, f"{member}:")


@pytest.mark.parametrize("path", ["/api/replay", "/api/failures/1/discard"])
@pytest.mark.parametrize("chunked", [False, True], ids=["with a length", "chunked"])
async def test_a_10_mb_body_is_a_413_in_json_and_the_listener_goes_on(
        admin: Admin, caplog: pytest.LogCaptureFixture, path: str, chunked: bool) -> None:
    body = b'{"reason": "' + b"x" * 10_000_000 + b'"}'
    request = (chunked_request_parts("POST", path, body, chunk=65_536, headers=[BEARER, JSON_TYPE]) if chunked
               else request_bytes("POST", path, headers=[BEARER, JSON_TYPE], body=body))
    with structlog.testing.capture_logs() as logs:
        reply = await raw_request(admin.port, request)
    assert_json_refusal(reply, 413, "the request body is over 1 MiB")
    assert_clean(logs, caplog)
    assert await admin.state(1) == "open"
    await admin.still_serves()


async def test_a_body_in_one_byte_chunks_is_read_whole(admin: Admin) -> None:
    parts = chunked_request_parts("POST", "/api/replay", b'{"ids": [1, 2], "dry_run": true, "by": "an operator"}',
                                  chunk=1, headers=[BEARER, JSON_TYPE])
    reply = await raw_request(admin.port, parts)
    assert reply.status == 200, reply.body[:300]
    assert [item["failure_id"] for item in reply.json()["failures"]] == [1, 2]
    discard = chunked_request_parts("POST", "/api/failures/3/discard", b'{"reason": "a duplicate"}', chunk=1,
                                    headers=[BEARER, JSON_TYPE])
    assert ((await raw_request(admin.port, discard)).json()) == {"id": 3, "state": "discarded"}
    assert await admin.state(3) == "discarded"


@pytest.mark.parametrize("name", ["depth 10,000", "a lone surrogate escape", "an unknown field", "ids zero"])
async def test_a_hostile_body_in_one_byte_chunks_is_refused_as_it_is_whole(admin: Admin, name: str) -> None:
    body, says = BAD_REPLAY_BODIES[name]
    parts = chunked_request_parts("POST", "/api/replay", body, chunk=1 if len(body) < 1000 else 97,
                                  headers=[BEARER, JSON_TYPE])
    assert_json_refusal(await raw_request(admin.port, parts), 400, says)


async def test_after_every_kind_of_refusal_a_dry_run_and_a_discard_still_work(admin: Admin) -> None:
    for body in (b"", DEEP, b'\xef\xbb\xbf{}', b'{"ids": [1e400]}'):
        assert (await admin.send("POST", "/api/replay", body)).status == 400
    assert (await admin.send("GET", "/api/failures", headers=[b"Authorization: Bearer \xff"])).status == 401
    planned = await admin.send("POST", "/api/replay", b'{"all": true, "dry_run": true}')
    assert planned.status == 200 and len(planned.json()["failures"]) == SEEDED
    assert set(planned.json()) == {"dry_run", "failures", "counts", "dlq"} and planned.json()["dry_run"] is True
    assert (await admin.send("POST", "/api/failures/2/discard", b'{"reason": "dup"}')).json() == {
        "id": 2, "state": "discarded"}
    assert_json_refusal(await admin.send("POST", "/api/failures/2/discard", b'{"reason": "dup"}'), 409, "not open")
