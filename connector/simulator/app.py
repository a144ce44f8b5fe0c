"""A stand-in for the DVCQG integration adapter, served by aiohttp (for tests, demos, local runs).

Adapter side (paths from ``SimulatorConfig``): login on ``auth_endpoint``; ``DongBoHoSoMC``,
``CapNhatTienDoHoSoMC`` and ``TraCuuHoSo`` on ``integration_endpoint``; ``share_endpoint`` answers every
service as unsupported for now. The rules live in ``state`` and ``validation``; this module moves bytes.

Inspection and fault knobs (not part of the real adapter):
``GET /_sim/dossiers``, ``GET /_sim/dossiers/{MaHoSo}``, ``GET /_sim/stats``, ``POST /_sim/reset``,
``DELETE /_sim/faults`` (disarm all), and ``POST /_sim/faults`` with a ``Fault`` as JSON, e.g.
``{"status": 503, "times": 2, "retry_after": "1"}`` or ``{"status": null, "delay_seconds": 5}`` (slow, but
applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web

from connector.simulator.state import (
    SESSION_INVALID,
    Fault,
    Reply,
    SimulatorConfig,
    SimulatorState,
    outcome_of,
)

MAX_REQUEST_BYTES = 16 * 1024 * 1024

SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)
_STOPPING = web.AppKey("simulator_stopping", asyncio.Event)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServiceCall = Callable[[SimulatorState, dict[str, Any]], Reply]

INTEGRATION_SERVICES: Mapping[str, ServiceCall] = {
    "DongBoHoSoMC": lambda state, body: state.apply_push(body.get("data"), body.get("isUpdating")),
    "CapNhatTienDoHoSoMC": lambda state, body: state.apply_steps(body.get("data")),
    "TraCuuHoSo": lambda state, body: state.lookup(body.get("mahoso")),
}
SHARE_SERVICES: Mapping[str, ServiceCall] = {}  # catalogue services are not simulated yet

_dumps = partial(json.dumps, ensure_ascii=False)


def create_app(config: SimulatorConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SIMULATOR_STATE] = SimulatorState(config)
    app[_STOPPING] = asyncio.Event()
    app.on_shutdown.append(_release_delayed_calls)
    app.router.add_post(config.auth_endpoint, _login)
    app.router.add_post(config.integration_endpoint, _service_handler(INTEGRATION_SERVICES))
    app.router.add_post(config.share_endpoint, _service_handler(SHARE_SERVICES))
    app.router.add_get("/_sim/dossiers", _list_dossiers)
    app.router.add_get("/_sim/dossiers/{no:.+}", _one_dossier)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_post("/_sim/faults", _add_fault)
    app.router.add_delete("/_sim/faults", _clear_faults)
    return app


async def start_simulator(host: str, port: int, config: SimulatorConfig) -> tuple[web.AppRunner, str]:
    """Serve the simulator; return the runner (call ``cleanup()`` to stop) and its base URL.

    ``port`` 0 picks a free port; the URL carries the one actually bound.
    """
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return runner, f"http://{_url_host(host)}:{bound_port}"


# --- adapter side ---------------------------------------------------------------------------------


async def _login(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    state.note_dstcode(request.headers.get("dstcode"))
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    injected = await _injected_fault(request, "login")
    if injected is not None:
        return injected
    return _json(state.login(body))


def _service_handler(services: Mapping[str, ServiceCall]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[SIMULATOR_STATE]
        state.note_dstcode(request.headers.get("dstcode"))
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        named = body.get("service")
        service = named if isinstance(named, str) else ""
        injected = await _injected_fault(request, service)
        if injected is not None:
            return injected
        # The adapter authenticates before it looks at what is asked.
        if not state.use_session(body.get("session")):
            state.count_call(service, "session_expired")
            return _json(SESSION_INVALID, status=401)
        reply = _dispatch(services, state, service, body)
        state.count_call(service, outcome_of(reply))
        return _json(reply)

    return handle


def _dispatch(
    services: Mapping[str, ServiceCall], state: SimulatorState, service: str, body: dict[str, Any]
) -> Reply:
    madonvi = body.get("madonvi")
    if not isinstance(madonvi, str) or not madonvi:
        return {"error_code": "-1", "message": "madonvi: required"}
    call = services.get(service)
    if call is None:
        return {"error_code": "-1", "message": f"Dịch vụ '{service}' không được hỗ trợ"}
    return call(state, body)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request body as a JSON object, or the error response the adapter gives instead."""
    if request.content_type != "application/json":
        return _json({"error_code": "-1", "message": "Content-Type phải là application/json"}, status=415)
    try:
        body = await request.json()  # larger than client_max_size: aiohttp answers 413 itself
    except ValueError:
        return _json({"error_code": "-1", "message": "Dữ liệu không phải JSON hợp lệ"}, status=400)
    if not isinstance(body, dict):
        return _json({"error_code": "-1", "message": "Dữ liệu phải là một đối tượng JSON"}, status=400)
    return body


async def _injected_fault(request: web.Request, service: str) -> web.Response | None:
    state = request.app[SIMULATOR_STATE]
    fault = state.take_fault(service)
    if fault is None:
        return None
    if fault.delay_seconds:
        await _pause(request.app, fault.delay_seconds)
    if fault.status is None:  # only late: go on and answer normally
        return None
    state.count_call(service, f"fault_{fault.status}")
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    return web.Response(status=fault.status, text=fault.body, headers=headers)


async def _pause(app: web.Application, seconds: float) -> None:
    # Cut short when the server shuts down, so a stopping simulator never waits on a delayed call.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[_STOPPING].wait(), seconds)


async def _release_delayed_calls(app: web.Application) -> None:
    app[_STOPPING].set()


# --- inspection and knobs -------------------------------------------------------------------------


async def _list_dossiers(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].snapshot())


async def _one_dossier(request: web.Request) -> web.StreamResponse:
    stored = request.app[SIMULATOR_STATE].dossiers.get(request.match_info["no"])
    if stored is None:
        return _json({"error": "not found"}, status=404)
    return _json(stored.as_json())


async def _stats(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].stats())


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[SIMULATOR_STATE].reset()
    return _json({"reset": True})


async def _add_fault(request: web.Request) -> web.StreamResponse:
    try:
        fault = Fault.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or a pydantic ValidationError (a ValueError too)
        return _json({"error": str(exc)}, status=400)
    request.app[SIMULATOR_STATE].add_fault(fault)
    return _json({"armed": fault.model_dump()}, status=201)


async def _clear_faults(request: web.Request) -> web.StreamResponse:
    return _json({"cleared": request.app[SIMULATOR_STATE].clear_faults()})


def _json(payload: Any, *, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=_dumps)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - mapping a wildcard bind to a reachable address
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


__all__ = [
    "MAX_REQUEST_BYTES",
    "SIMULATOR_STATE",
    "Fault",
    "SimulatorConfig",
    "SimulatorState",
    "create_app",
    "start_simulator",
]
