"""The admin API's OpenAPI description against the code: the same routes; schemas that are valid JSON
Schema, every reference resolving; field names as the code writes them; and real replies (of the
listener alone, and of a running daemon through the operators' scenario) valid against the schema the
file declares for their route, status and content type. A replay answers one shape, dry run or not; the
operators' commands print the same shapes with ``--json`` (the CLI's tests hold them to the file with
``check_printed``)."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from connector.config import DEFAULT_MAPPINGS_DIR, SCHEMAS_DIR
from connector.observability import Metrics
from connector.operators.admin import DiscardBody, Operations, ReplayBody, ReplayOneBody, create_admin_app
from connector.operators.replay import DlqIntake, ReplayAction, ReplayItem, ReplayReport, ReplayState
from connector.operators.values import plain
from connector.store import StoreUnavailable
from connector.store.tables import failure_attempts, sync_failures
from tests.integration import test_admin_api as admin_scenario
from tests.integration.pipeline_harness import HTTP_TIMEOUT
from tests.integration.replay_scenario import FAILING

SPEC_PATH = SCHEMAS_DIR / "admin-api.openapi.yaml"
SPEC_URI = "urn:portal-sync:admin-api"  # where the file is registered, for its "#/..." references
OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TOKEN, AUTH = admin_scenario.TOKEN, admin_scenario.AUTH

# The running daemon with the unmapped-procedure scenario consumed (the admin API test's own fixture).
daemon = admin_scenario.daemon


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """Every node of a JSON document, with its JSON pointer."""
    yield pointer, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{pointer}/{_escape(str(key))}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{index}")


def _explain(error: ValidationError) -> str:
    """Where and why; for a oneOf/anyOf, why each alternative fails."""
    where = "/".join(map(str, error.absolute_path)) or "(reply)"
    if not error.context:
        return f"{where}: {error.message}"
    return "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(reply)'}: {e.message} (alternative "
                     f"{e.relative_schema_path[0]})" for e in error.context)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: Mapping[str, str]
    body: Any


class Contract:
    """The file, with its references resolvable, and the checks of requests and replies against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(document))
        self.resolver = self.registry.resolver(base_uri=SPEC_URI)

    def follow(self, node: Mapping[str, Any], pointer: str) -> tuple[Mapping[str, Any], str]:
        """A Reference Object followed to what it names; with the pointer of what is found."""
        while "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = self.resolver.lookup(node["$ref"]).contents
        return node, pointer

    def operation(self, method: str, path: str) -> tuple[Mapping[str, Any], str]:
        operations = self.document["paths"][path]
        assert method.lower() in operations, f"the file has no {method} {path}"
        return operations[method.lower()], f"/paths/{_escape(path)}/{method.lower()}"

    def parameters(self, method: str, path: str) -> list[Mapping[str, Any]]:
        """The operation's parameters, those of its path item included."""
        declared = [*self.document["paths"][path].get("parameters", ()),
                    *self.operation(method, path)[0].get("parameters", ())]
        return [self.follow(p, "")[0] for p in declared]

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)

    def check_request(self, method: str, path: str, body: Any, *, valid: bool) -> None:
        """The declared request body schema takes ``body`` (when the server does) or refuses it (when the
        server answers 400)."""
        operation, pointer = self.operation(method, path)
        request, pointer = self.follow(operation["requestBody"], f"{pointer}/requestBody")
        assert "application/json" in request["content"]
        errors = list(self.validator(f"{pointer}/content/application~1json/schema").iter_errors(body))
        assert (not errors) == valid, (f"{method} {path}: the file's request schema "
                                       f"{'refuses' if valid else 'takes'} {body!r}: {[e.message for e in errors]}")

    def check_reply(self, method: str, path: str, reply: Reply) -> Any:
        """``reply`` is valid against what the file declares for its route, status and content type."""
        operation, pointer = self.operation(method, path)
        responses = operation["responses"]
        assert str(reply.status) in responses, (f"{method} {path} answered {reply.status}, which the file does not "
                                                f"declare: {reply.body!r}")
        response, pointer = self.follow(responses[str(reply.status)], f"{pointer}/responses/{reply.status}")
        assert reply.content_type in response.get("content", {}), (
            f"{method} {path} {reply.status} came as {reply.content_type}; the file declares "
            f"{sorted(response.get('content', {}))}")
        for name, header in response.get("headers", {}).items():
            assert name in reply.headers, f"{method} {path} {reply.status}: no {name} header"
            Draft202012Validator(header["schema"]).validate(reply.headers[name])
        schema = f"{pointer}/content/{_escape(reply.content_type)}/schema"
        errors = [_explain(e) for e in self.validator(schema).iter_errors(reply.body)]
        assert not errors, f"{method} {path} {reply.status}: the reply differs from the file:\n" + "\n".join(errors)
        return reply.body


@functools.cache
def _contract() -> Contract:
    return Contract(yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def contract() -> Contract:
    return _contract()


def check_printed(schema: str, printed: Any) -> Any:
    """What ``portal-sync ... --json`` printed, valid against the file's ``components/schemas/<schema>``:
    the commands print the shapes the API replies."""
    errors = [_explain(e) for e in _contract().validator(f"/components/schemas/{schema}").iter_errors(printed)]
    assert not errors, f"the command's --json output differs from {schema} in the file:\n" + "\n".join(errors)
    return printed


async def fetch(http: aiohttp.ClientSession | TestClient, method: str, url: str, *,
                headers: Mapping[str, str] = AUTH, **kwargs: Any) -> Reply:
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return Reply(response.status, response.content_type, response.headers, body)


# --------------------------------------------------------------------------------------------------------
# The file itself


def test_the_file_describes_the_routes_the_app_registers(contract: Contract) -> None:
    app = create_admin_app(Metrics(), token=TOKEN)
    registered = {(route.method, route.resource.canonical) for route in app.router.routes()
                  if route.method != "HEAD" and route.resource is not None}
    described = {(method.upper(), path) for path, item in contract.document["paths"].items()
                 for method in item if method in OPERATIONS}
    assert described == registered

    for method, path in described:
        in_template = {segment[1:-1] for segment in path.split("/") if segment.startswith("{")}
        declared = {p["name"] for p in contract.parameters(method, path) if p["in"] == "path"}
        assert declared == in_template, f"{method} {path}: path parameters"
        # Probes and scrapers carry no token; everything under /api/ needs the bearer token.
        operation, _ = contract.operation(method, path)
        security = operation.get("security", contract.document["security"])
        assert security == ([{"bearer": []}] if path.startswith("/api/") else []), f"{method} {path}: security"
    scheme = contract.document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_schema_is_valid_json_schema_and_every_reference_resolves(contract: Contract) -> None:
    for name, schema in contract.document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"components/schemas/{name}: {exc}")
    nodes = list(_walk(contract.document))
    # The schemas written inline (parameters, bodies, replies, headers) too.
    inline = [(pointer, node["schema"]) for pointer, node in nodes
              if isinstance(node, Mapping) and isinstance(node.get("schema"), Mapping)]
    assert len(inline) > 20
    for pointer, schema in inline:
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"{pointer}/schema: {exc}")
    references = [(pointer, node["$ref"]) for pointer, node in nodes
                  if isinstance(node, Mapping) and isinstance(node.get("$ref"), str)]
    assert len(references) > 40
    for pointer, reference in references:
        try:
            contract.resolver.lookup(reference)
        except Exception as exc:
            pytest.fail(f"{pointer}: {reference} does not resolve: {exc!r}")


def _names(contract: Contract, schema: str) -> set[str]:
    return set(contract.document["components"]["schemas"][schema]["properties"])


def test_the_field_names_are_those_the_code_writes_and_reads(contract: Contract) -> None:
    not_in_listing = {"record_key", "record_value", "mapped_payload"}
    assert _names(contract, "FailureFields") == set(sync_failures.c.keys()) - not_in_listing
    assert _names(contract, "FailureDetail") == not_in_listing | {"attempts_history"}
    assert _names(contract, "Attempt") == set(failure_attempts.c.keys())
    assert _names(contract, "ReplayItem") == {f.name for f in fields(ReplayItem)}
    assert _names(contract, "DlqIntake") == {f.name for f in fields(DlqIntake)}
    assert _names(contract, "ReplayReport") == set(ReplayReport(dry_run=False, failures=[]).as_json())
    assert _names(contract, "DiscardRequest") == set(DiscardBody.model_fields)
    assert _names(contract, "ReplayOneRequest") == set(ReplayOneBody.model_fields)
    assert _names(contract, "ReplayRequest") == set(ReplayBody.model_fields)


def _item(failure_id: int | None, action: ReplayAction, state: ReplayState | None) -> ReplayItem:
    payload = {"DongBoHoSoMC": {"MaHoSo": "H-1"}, "CapNhatTienDoHoSoMC": None}
    return ReplayItem(failure_id, "H-1", 2, action, state, "a detail", None if action == "unreadable" else payload)


def test_a_dry_run_and_a_replay_answer_one_shape_that_tells_them_apart(contract: Contract) -> None:
    """One ReplayReport for both, as the code writes it; a state in a dry run, or a real run's item without
    one (or without a failure), is not that shape."""
    report = contract.validator("/components/schemas/ReplayReport")
    dry = ReplayReport(True, [_item(1, "send", None), _item(None, "unreadable", None)], DlqIntake(3, 1, 2))
    real = ReplayReport(False, [_item(1, "send", "replayed"), _item(2, "superseded", "resolved"),
                                _item(3, "unreadable", "open")])
    for written in (dry, real, ReplayReport(True, []), ReplayReport(False, [])):
        body = plain(written.as_json())
        assert set(body) == {"dry_run", "failures", "counts", "dlq"}
        assert not [_explain(e) for e in report.iter_errors(body)], body
    assert plain(dry.as_json())["counts"] == {"send": 1, "unreadable": 1}
    assert plain(real.as_json())["counts"] == {"replayed": 1, "resolved": 1, "open": 1}
    assert plain(dry.as_json())["dlq"] == {"read": 3, "known": 1, "missing": 2}
    assert plain(real.as_json())["dlq"] is None

    not_the_shape = {
        "a state in a dry run": ReplayReport(True, [_item(1, "send", "replayed")]),
        "no state after a replay": ReplayReport(False, [_item(1, "send", None)]),
        "no failure after a replay": ReplayReport(False, [_item(None, "send", "replayed")]),
    }
    for name, written in not_the_shape.items():
        assert list(report.iter_errors(plain(written.as_json()))), name
    counted_as_the_other = {**plain(real.as_json()), "dry_run": True, "failures": []}
    assert list(report.iter_errors(counted_as_the_other)), "a dry run's counts are per action"
    assert list(report.iter_errors({"failures": [], "counts": {}, "dlq": None})), "dry_run is required"


# --------------------------------------------------------------------------------------------------------
# Real replies


class _StoreDown:
    """A state store that does not answer."""

    async def failure(self, *_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("state store unavailable (OSError)", reason="state_store_unavailable")

    list_failures = set_failure_state = failure


async def _broker_down() -> dict[str, str]:
    return {"broker": "KafkaConnectionError", "state_store": "ok", "portal": "ok"}


def _no_replays(_changed_by: str) -> Any:
    raise AssertionError("no replay is started here")


async def test_the_listener_alone_answers_as_the_file_says(contract: Contract) -> None:
    """The replies a running daemon seldom gives: no token configured, no operations, the store down,
    a body over the size limit."""
    async with TestClient(TestServer(create_admin_app(Metrics())), timeout=HTTP_TIMEOUT) as http:
        reply = await fetch(http, "GET", "/api/failures")
        assert reply.status == 401 and "no admin token" in contract.check_reply("GET", "/api/failures", reply)["error"]

    async with TestClient(TestServer(create_admin_app(Metrics(), token=TOKEN)), timeout=HTTP_TIMEOUT) as http:
        reply = await fetch(http, "GET", "/readyz", headers={})
        assert (reply.status, contract.check_reply("GET", "/readyz", reply)) == (200, {"status": "ok"})
        reply = await fetch(http, "GET", "/api/failures")
        assert reply.status == 503 and contract.check_reply("GET", "/api/failures", reply)["error"] == "not running"
        reply = await fetch(http, "POST", "/api/failures/1/discard", data=b" " * ((1 << 20) + 1))
        assert reply.status == 413
        assert "over 1 MiB" in contract.check_reply("POST", "/api/failures/{id}/discard", reply)["error"]
        reply = await fetch(http, "GET", "/api/nothing-here")
        assert (reply.status, reply.content_type) == (404, "application/json")

    down = Operations(store=_StoreDown(), replayer=_no_replays, readiness=_broker_down)
    async with TestClient(TestServer(create_admin_app(Metrics(), token=TOKEN, operations=down)),
                          timeout=HTTP_TIMEOUT) as http:
        # Numbers a naive digit test lets through (a superscript two) or the table cannot hold: 400, not 500.
        for url, route in (("/api/failures/%C2%B2", "/api/failures/{id}"),
                           ("/api/failures/2147483648", "/api/failures/{id}"),
                           ("/api/failures?limit=%C2%B2", "/api/failures"),
                           ("/api/failures?after_id=2147483648", "/api/failures")):
            reply = await fetch(http, "GET", url)
            assert reply.status == 400, url
            contract.check_reply("GET", route, reply)
        reply = await fetch(http, "POST", "/api/replay", json={"ids": [2**31]})
        assert reply.status == 400 and "ids" in contract.check_reply("POST", "/api/replay", reply)["error"]
        reply = await fetch(http, "GET", "/readyz", headers={})
        assert reply.status == 503 and contract.check_reply("GET", "/readyz", reply)["status"] == "not ready"
        for method, path, url, body in (("GET", "/api/failures", "/api/failures", None),
                                        ("GET", "/api/failures/{id}", "/api/failures/7", None),
                                        ("POST", "/api/failures/{id}/discard", "/api/failures/7/discard",
                                         {"reason": "a duplicate"})):
            reply = await fetch(http, method, url, json=body)
            assert reply.status == 503, (url, reply)
            assert "state store is unavailable" in contract.check_reply(method, path, reply)["error"]


@pytest.mark.broker
async def test_the_running_daemon_answers_as_the_file_says(daemon, contract: Contract) -> None:
    service, _stream, mappings_dir, _messages = daemon
    api = service.admin_url
    failure, discard, replay_one = "/api/failures/{id}", "/api/failures/{id}/discard", "/api/failures/{id}/replay"

    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:

        async def check(method: str, path: str, url: str, status: int, *, body: Any = None, **kwargs: Any) -> Any:
            """Call, check the status the scenario expects, and the reply against the file."""
            if body is not None:
                kwargs["json"] = body
                contract.check_request(method, path, body, valid=status != 400)
            reply = await fetch(http, method, f"{api}{url}", **kwargs)
            assert reply.status == status, f"{method} {url}: {reply.status} {reply.body!r}"
            return contract.check_reply(method, path, reply)

        # Probes, and the token.
        assert (await check("GET", "/healthz", "/healthz", 200, headers={})) == {"status": "ok"}
        assert (await check("GET", "/readyz", "/readyz", 200, headers={}))["status"] == "ready"
        assert "portal_sync" in await check("GET", "/metrics", "/metrics", 200, headers={})
        await check("GET", "/api/failures", "/api/failures", 401, headers={})
        await check("GET", "/api/failures", "/api/failures", 401, headers={"Authorization": "Bearer wrong"})

        # Listing: a full page (an id to go on from), and a last page.
        page = await check("GET", "/api/failures", "/api/failures", 200, params={"limit": "20"})
        assert page["next_after_id"] == page["failures"][-1]["id"]
        listed = await check("GET", "/api/failures", "/api/failures", 200,
                             params={"reason": "unmapped_procedure", "limit": "1000"})
        assert (listed["total"], len(listed["failures"]), listed["next_after_id"]) == (FAILING, FAILING, None)
        first, second = listed["failures"][0]["id"], listed["failures"][1]["id"]
        # The 400 for an unknown query parameter lists the known ones: those the file declares.
        error = (await check("GET", "/api/failures", "/api/failures", 400, params={"colour": "red"}))["error"]
        known = set(error.split("; known: ")[1].split(", "))
        assert known == {p["name"] for p in contract.parameters("GET", "/api/failures") if p["in"] == "query"}
        await check("GET", "/api/failures", "/api/failures", 400, params={"state": "lost"})
        await check("GET", "/api/failures", "/api/failures", 400, params={"limit": "0"})

        # One failure; unknown ids, bad ids and bad bodies.
        shown = await check("GET", failure, f"/api/failures/{first}", 200)
        assert shown["state"] == "open" and shown["attempts_history"]
        await check("GET", failure, "/api/failures/abc", 400)
        await check("GET", failure, "/api/failures/999999", 404)
        await check("POST", discard, "/api/failures/999999/discard", 404, body={"reason": "a duplicate"})
        await check("POST", replay_one, "/api/failures/999999/replay", 404, body={})
        await check("POST", discard, f"/api/failures/{first}/discard", 400, body={})
        await check("POST", discard, f"/api/failures/{first}/discard", 400, body={"reason": "x", "by": ""})
        await check("POST", replay_one, f"/api/failures/{first}/replay", 400, body={"dry_run": True, "all": True})
        await check("POST", "/api/replay", "/api/replay", 400, body={"dry_run": True})
        await check("POST", "/api/replay", "/api/replay", 400, body={"all": True, "colour": "red"})
        await check("POST", "/api/replay", "/api/replay", 400, body={"all": True, "state": "lost"})

        # Before the mapping fix: unreadable in a dry run, and failing again in a replay (still open).
        planned = await check("POST", replay_one, f"/api/failures/{first}/replay", 200, body={"dry_run": True})
        assert [(item["action"], item["payload"]) for item in planned["failures"]] == [("unreadable", None)]
        assert (planned["dry_run"], planned["counts"], planned["dlq"]) == (True, {"unreadable": 1}, None)
        assert [(item["failure_id"], item["state"]) for item in planned["failures"]] == [(first, None)]
        replayed = await check("POST", replay_one, f"/api/failures/{first}/replay", 200, body={})
        assert replayed["counts"] == {"open": 1}
        assert (replayed["dry_run"], replayed["dlq"]) == (False, None)
        assert [(item["failure_id"], item["action"], item["state"]) for item in replayed["failures"]] == [
            (first, "unreadable", "open")]
        assert set(replayed) == set(planned)
        shown = await check("GET", failure, f"/api/failures/{first}", 200)
        assert (shown["state"], [a["origin"] for a in shown["attempts_history"]]) == ("open", ["pipeline", "replay"])

        # Mappings on disk that do not load: a replay is refused.
        procedures = mappings_dir / "procedures.yaml"
        procedures.write_text("procedures: [\n", encoding="utf-8")
        await check("POST", "/api/replay", "/api/replay", 409, body={"all": True, "dry_run": True})
        await check("POST", replay_one, f"/api/failures/{first}/replay", 409, body={"dry_run": True})
        shutil.copy(DEFAULT_MAPPINGS_DIR / "procedures.yaml", procedures)  # the fix

        # Dry runs: one, and every open failure.
        planned = await check("POST", replay_one, f"/api/failures/{first}/replay", 200, body={"dry_run": True})
        assert [item["failure_id"] for item in planned["failures"]] == [first]
        planned = await check("POST", "/api/replay", "/api/replay", 200, body={"all": True, "dry_run": True})
        assert len(planned["failures"]) == FAILING and planned["dry_run"] is True
        assert planned["counts"] == {"send": FAILING - 1, "superseded": 1}

        # Discard one (then again: it is not open), replay the others.
        discarded = await check("POST", discard, f"/api/failures/{second}/discard", 200,
                                body={"reason": "a duplicate", "by": "an operator"})
        assert discarded == {"id": second, "state": "discarded"}
        await check("POST", discard, f"/api/failures/{second}/discard", 409, body={"reason": "again"})
        replayed = await check("POST", "/api/replay", "/api/replay", 200, body={"all": True, "by": "an operator"})
        assert sum(replayed["counts"].values()) == len(replayed["failures"]) == FAILING - 1
        assert replayed["dry_run"] is False and {item["action"] for item in replayed["failures"]} <= {
            "send", "superseded"}

        # What the failures look like afterwards; one replayed again by id (its state allows it).
        everything = await check("GET", "/api/failures", "/api/failures", 200, params={"state": "all"})
        assert {f["state"] for f in everything["failures"]} >= {"replayed", "discarded"}
        shown = await check("GET", failure, f"/api/failures/{second}", 200)
        assert (shown["state"], shown["state_changed_by"], shown["state_reason"]) == (
            "discarded", "an operator", "a duplicate")
        again = await check("POST", replay_one, f"/api/failures/{first}/replay", 200, body={"by": "an operator"})
        assert [item["failure_id"] for item in again["failures"]] == [first]
