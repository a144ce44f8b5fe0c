"""The admin listener: health, readiness, Prometheus metrics, and the operators' API (failures and replay).

``/healthz``, ``/readyz`` and ``/metrics`` answer anyone who can reach the listener (probes and scrapers
carry no token). Everything under ``/api/`` needs ``Authorization: Bearer <admin token>``; without a
configured token it answers 401 to every call. Errors are JSON: ``{"error": "..."}``. Replies have the shapes
the operators' commands print with ``--json`` (``values``, ``ReplayReport``), as
``schemas/admin-api.openapi.yaml`` describes them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from connector.listeners import app_runner, serve
from connector.observability import Metrics
from connector.operators.replay import Replayer
from connector.operators.values import as_utc, failure_page, parse_moment, plain
from connector.push.mapping import MappingsInvalid
from connector.store import FAILURE_STATES, MAX_INT32, FailureFilter, StateStore, StoreUnavailable, whole_number
from connector.untrusted import UnreadableJson, UnsafeText, bearer_matches, parse_json, text_problem

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
"""Component → "ok" or why it is not ready."""


@dataclass(frozen=True)
class Operations:
    """What the API acts on: the daemon's own store, and replays through the daemon's own gateway."""

    store: StateStore
    replayer: Callable[[str], AbstractAsyncContextManager[Replayer]]  # changed_by → a replayer
    readiness: ReadinessCheck


MAX_BODY_BYTES = 1 << 20


class _Body(BaseModel):
    # Strict: an operator's {"all": "true"} or {"dry_run": 0} is a mistake to name, not a replay to run.
    model_config = ConfigDict(extra="forbid")


class DiscardBody(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    by: str = Field("admin api", min_length=1, max_length=100)


class ReplayOneBody(_Body):
    dry_run: StrictBool = False
    by: str = Field("admin api", min_length=1, max_length=100)


class ReplayBody(ReplayOneBody):
    ids: list[Annotated[StrictInt, Field(ge=1, le=MAX_INT32)]] = Field(default_factory=list, max_length=10_000)
    all: StrictBool = False
    dossier: str | None = None
    service: str | None = None
    error_class: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: str | None = None

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str | None) -> str | None:
        if value is not None and value not in (*FAILURE_STATES, "all"):
            raise ValueError(f"must be one of {', '.join((*FAILURE_STATES, 'all'))}")
        return value

    def selects_something(self) -> bool:
        return bool(self.ids) or self.all or any(
            v is not None for v in (self.dossier, self.service, self.error_class, self.reason, self.since,
                                    self.until, self.state))


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(plain(value), status=status)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(body)"
    return f"{where}: {first['msg']}"


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read() or b"{}"
    try:  # the rules of every body taken in; pydantic then reads it again (its JSON-mode messages name JSON types)
        parse_json(raw)
    except UnreadableJson as exc:
        raise _bad_request(f"(body): {exc}") from None
    except UnsafeText as exc:
        raise _bad_request(f"{exc.field}: {exc.rule}") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _bad_request(_validation_message(exc)) from None


def _failure_filter(query: Mapping[str, str]) -> tuple[FailureFilter, int, int]:
    known = {"dossier", "service", "error_class", "reason", "since", "until", "state", "limit", "after_id"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise _bad_request(f"unknown query parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")

    def number(name: str, default: int, low: int, high: int) -> int:
        text = query.get(name)
        if text is None:
            return default
        number = whole_number(text, low=low, high=high)
        if number is None:
            raise _bad_request(f"{name}: must be a whole number from {low} to {high}")
        return number

    def moment(name: str) -> datetime | None:
        text = query.get(name)
        if not text:
            return None
        try:
            return parse_moment(text)
        except ValueError:
            raise _bad_request(f"{name}: must be an ISO 8601 date or date-time") from None

    for name, value in query.items():
        if (problem := text_problem(value)) is not None:
            raise _bad_request(f"{name}: {problem}")
    state = query.get("state")
    if state is not None and state not in (*FAILURE_STATES, "all"):
        raise _bad_request(f"state: must be one of {', '.join((*FAILURE_STATES, 'all'))}")
    where = FailureFilter(dossier_no=query.get("dossier"), service=query.get("service"),
                          error_class=query.get("error_class"), reason=query.get("reason"),
                          since=moment("since"), until=moment("until"), states=FailureFilter.states_for(state))
    return where, number("limit", 100, 1, 1000), number("after_id", 0, 0, MAX_INT32)


def create_admin_app(metrics: Metrics, *, token: str | None = None, operations: Operations | None = None
                     ) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            if token is None:
                return _error(401, "the admin API is disabled: no admin token is configured",
                              **{"WWW-Authenticate": "Bearer"})
            if not bearer_matches(request.headers, token):
                return _error(401, "a valid bearer token is required", **{"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except StoreUnavailable:
            return _error(503, "the state store is unavailable; try again")
        except web.HTTPException as exc:
            if exc.content_type == "application/json" or not request.path.startswith("/api/"):
                raise
            # aiohttp's own answers (no such path, method not allowed, body too large) as JSON, like ours.
            message = "the request body is over 1 MiB" if exc.status == 413 else exc.reason.lower()
            return _error(exc.status, message, **({"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        if operations is None:
            return web.json_response({"status": "ok"})
        checks = await operations.readiness()
        ready = all(result == "ok" for result in checks.values())
        return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                                 status=200 if ready else 503)

    async def prometheus(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def ops() -> Operations:
        if operations is None:
            raise web.HTTPServiceUnavailable(text='{"error": "not running"}', content_type="application/json")
        return operations

    def failure_id(request: web.Request) -> int:
        number = whole_number(request.match_info["id"], low=1, high=MAX_INT32)
        if number is None:
            raise _bad_request(f"failure id: must be a whole number from 1 to {MAX_INT32}")
        return number

    async def list_failures(request: web.Request) -> web.Response:
        where, limit, after_id = _failure_filter(request.query)
        store = ops().store
        rows = await store.list_failures(where, limit=limit, after_id=after_id)
        total = await store.count_failures(where)
        return _json(failure_page(rows, total=total, limit=limit))

    async def show_failure(request: web.Request) -> web.Response:
        found = await ops().store.failure(failure_id(request))
        if found is None:
            return _error(404, f"no failure {request.match_info['id']}")
        return _json(found)

    async def discard_failure(request: web.Request) -> web.Response:
        ident = failure_id(request)
        body: DiscardBody = await _body(request, DiscardBody)
        store = ops().store
        if not await store.set_failure_state(ident, "discarded", by=body.by, reason=body.reason, only_from=("open",)):
            found = await store.failure(ident)
            if found is None:
                return _error(404, f"no failure {ident}")
            return _error(409, f"failure {ident} is {found['state']}, not open: nothing to discard")
        return _json({"id": ident, "state": "discarded"})  # the failure itself: its id and its new state

    async def run_replay(where: FailureFilter, *, dry_run: bool, by: str) -> dict[str, Any]:
        try:
            replaying = ops().replayer(f"{by} (admin api)")
        except MappingsInvalid as exc:
            raise web.HTTPConflict(text=json.dumps({"error": f"the mappings on disk are invalid: {exc}"}),
                                   content_type="application/json") from None
        async with replaying as replayer:
            rows = await replayer.store.list_failures(where, limit=None)
            return (await replayer.run(rows, dry_run=dry_run)).as_json()

    async def replay_failure(request: web.Request) -> web.Response:
        ident = failure_id(request)
        body: ReplayOneBody = await _body(request, ReplayOneBody)
        if await ops().store.failure(ident) is None:
            return _error(404, f"no failure {ident}")
        return _json(await run_replay(FailureFilter(ids=(ident,), states=()), dry_run=body.dry_run, by=body.by))

    async def replay_many(request: web.Request) -> web.Response:
        body: ReplayBody = await _body(request, ReplayBody)
        if not body.selects_something():
            return _error(400, "select failures: ids, all: true, and/or filters")
        where = FailureFilter(ids=tuple(body.ids) or None, dossier_no=body.dossier, service=body.service,
                              error_class=body.error_class, reason=body.reason,
                              since=body.since, until=body.until,
                              states=FailureFilter.states_for(body.state, named=bool(body.ids)))
        return _json(await run_replay(where, dry_run=body.dry_run, by=body.by))

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/api/failures", list_failures)
    app.router.add_get("/api/failures/{id}", show_failure)
    app.router.add_post("/api/failures/{id}/discard", discard_failure)
    app.router.add_post("/api/failures/{id}/replay", replay_failure)
    app.router.add_post("/api/replay", replay_many)
    return app


async def start_admin(metrics: Metrics, host: str, port: int, *, token: str | None = None,
                      operations: Operations | None = None) -> tuple[web.AppRunner, str]:
    """Serve the admin app; port 0 picks a free one. Returns the runner and the base URL."""
    runner = app_runner(create_admin_app(metrics, token=token, operations=operations))
    return runner, f"http://{host}:{await serve(runner, host, port)}"
