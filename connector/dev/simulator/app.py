"""A stand-in for the DVCQG integration adapter, served by aiohttp (for tests, demos, local runs).

Adapter side (paths from ``SimulatorConfig``): login on ``auth_endpoint``; on ``integration_endpoint`` the
pushes ``DongBoHoSoMC`` and ``CapNhatTienDoHoSoMC``, ``TraCuuHoSo`` (a pushed dossier, or the current revision of
a citizen submission: files listed with ``KichThuoc``, ``MaBam`` and ``DuongDanTaiTepTin``, never their content),
and the way back for submissions made on the portal: ``DanhSachHoSo`` (``donViXuLy``, ``ngayNhan1``/``ngayNhan2``
``yyyy-MM-dd`` inclusive, ``trang`` from 1, ``soLuong`` up to 100), ``LayTaiLieuHoSo`` (``duongdanteptin`` →
``TepTinDinhKem[{TenTep, Base64}]``), ``CapNhatDaNhanHoSo`` (``maHoSo``, ``phienBan``, ``daNhan: true``,
``maHoSoDonVi``) and ``DongBoTrangThaiHoSo`` (``type: "2"``, ``data`` an object); ``UpdateStatistic``, a
statistics report whose fields sit next to ``session`` and ``service`` (``validation.StatisticReport``), kept per
agency × year × month × ``IsMonthStatistic``. ``share_endpoint`` answers every service as unsupported for now.
The rules live in ``state``, ``validation``, ``submissions``, ``statistics`` and ``payment_platform``; this module
moves bytes.

SOAP face (``SimulatorConfig.soap_path``, ``soap_face.SoapCodec``): the same services as the WSDL's operations
(login: ``DangNhap``), every request validated against the XSD; ``GET`` with ``?wsdl`` or ``?xsd=<file>`` serves
the contract. Both faces share one handler, so every fault knob and chaos profile below applies to both; a
``Fault`` may carry its own ``content_type`` (a hostile SOAP reply is a fault with ``text/xml``).

Payment Platform side: ``POST`` ``SimulatorConfig.pp_query_path`` with a ``QUERY`` message, checked against
``pp_partner_code`` and ``pp_secret``; answered (HTTP 200) with the payment's result and ``TrangThaiGD``, or
``MaLoi`` 99 naming what was wrong.

Inspection and fault knobs (not part of the real adapter):

- ``GET /_sim/dossiers`` (streamed), ``GET /_sim/dossiers/{MaHoSo}``: what the portal holds. ``?fields=``
  picks from ``state.DOSSIER_FIELDS`` (comma-separated, or ``all``); the default is record, steps,
  pushes, history. The others: duplicate_pushes, duplicate_steps, first_received_at, last_received_at.
- ``DELETE /_sim/dossiers/{MaHoSo}``: the portal loses that dossier; ``PATCH /_sim/dossiers/{MaHoSo}`` with
  a JSON object: its fields change on the portal side (an edit made there). For backfill and reconcile.
- ``GET /_sim/stats``: logins and calls by outcome, dstcode headers seen; ``?fields=all`` adds the
  duplicate_pushes and duplicate_steps totals.
- ``GET /_sim/rate``: the load received since start or reset (``meter.RateMeter``).
- ``POST /_sim/reset``: forget everything, measurements included; the configured chaos starts over.
- ``POST /_sim/faults`` with a ``Fault`` as JSON, e.g. ``{"status": 503, "times": 2, "retry_after": "1"}``
  or ``{"status": null, "delay_seconds": 5}`` (served, then answered late); ``DELETE /_sim/faults``.
- ``PUT /_sim/chaos`` with a ``chaos.ChaosProfile`` as JSON, ``GET /_sim/chaos``, ``DELETE /_sim/chaos``
  (a well-behaved adapter again). One-shot faults are looked at before the chaos profile.
- ``POST /_sim/submissions`` with ``{"submissions": [record, ...]}``: citizen submissions in the inbound-push
  shape (files inline as ``TaiLieuNop[].Base64``), each visible after its ``_visible_in_seconds`` (default 0);
  a known ``MaHoSo`` with a higher ``PhienBan`` is an amendment. 201 ``{"registered": n}``, or 400 naming the item.
- ``POST /_sim/submissions/generate`` with a ``submissions.GenerationSpec``: made-up, seeded traffic (late,
  amended, large-file submissions); 201 ``{"generated", "revisions", "files"}``.
- ``GET /_sim/submissions``, ``GET /_sim/submissions/{MaHoSo}``: revisions and their visibility, the current
  one, acknowledgements, status reports (``DongBoTrangThaiHoSo``) and the files really held.
- ``POST /_sim/payments`` with ``{"payments": [payment_platform.PaymentSpec, ...]}`` (201); ``GET /_sim/payments``:
  outcome, amount, queries and callbacks per ``MaThamChieu``.
- ``POST /_sim/payments/{MaThamChieu}/callback`` with a ``payment_platform.CallbackSpec``: the simulator posts the
  PP's result notification (checksum valid or deliberately wrong, fields overridable) to ``url`` and answers
  ``{"status", "reply", "sent"}`` (502 with ``error`` and ``sent`` when it could not be delivered).
- ``GET /_sim/statistics``: the ``UpdateStatistic`` reports kept, a list of ``{"record", "pushes",
  "duplicate_pushes", "first_received_at", "last_received_at"}``; ``?agency=``, ``?year=``, ``?month=`` narrow it.
- ``POST /_sim/reset`` forgets submissions, statistics and payments too.

Served by ``start_simulator``, a call the client abandons (it timed out, or went away) is cancelled here too,
so a withheld or delayed reply never outlives its client; every wait ends at once when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from connector.dev.simulator.chaos import LOGIN, ChaosInvalid, ChaosProfile, parse_profile
from connector.dev.simulator.payment_platform import CallbackSpec, PaymentSpec
from connector.dev.simulator.soap_face import Decoded, SoapCodec
from connector.dev.simulator.state import (
    DEFAULT_DOSSIER_FIELDS,
    DEFAULT_STATS_FIELDS,
    DOSSIER_FIELDS,
    SESSION_INVALID,
    STATS_FIELDS,
    Fault,
    Reply,
    SimulatorConfig,
    SimulatorState,
    outcome_of,
)
from connector.dev.simulator.submissions import GenerationSpec, SubmissionRefused
from connector.listeners import serve
from connector.payments.checksum import ChecksumRefused
from connector.portal.soap import LOGIN_SERVICE

MAX_REQUEST_BYTES = 16 * 1024 * 1024
_DOSSIERS_PER_WRITE = 500  # the dossier list is sent in pieces of this many
CALLBACK_TIMEOUT = aiohttp.ClientTimeout(total=10)  # the PP's notification to the agency
_CALLBACK_REPLY_BYTES = 1024 * 1024  # of the agency's reply to it, kept for the test
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")  # a year or a month in a query

SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)
_STOPPING = web.AppKey("simulator_stopping", asyncio.Event)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServiceCall = Callable[[SimulatorState, dict[str, Any]], Reply]

# The body was decoded for this call alone: the state may keep its records without copying them.
INTEGRATION_SERVICES: Mapping[str, ServiceCall] = {
    "DongBoHoSoMC": lambda state, body: state.apply_push(body.get("data"), body.get("isUpdating"), copy=False),
    "CapNhatTienDoHoSoMC": lambda state, body: state.apply_steps(body.get("data"), copy=False),
    "TraCuuHoSo": lambda state, body: state.lookup(body.get("mahoso")),
    "DanhSachHoSo": lambda state, body: state.list_submissions(body),
    "LayTaiLieuHoSo": lambda state, body: state.fetch_file(body.get("duongdanteptin")),
    "CapNhatDaNhanHoSo": lambda state, body: state.acknowledge_submission(body),
    "DongBoTrangThaiHoSo": lambda state, body: state.apply_status_back(body.get("type"), body.get("data")),
    "UpdateStatistic": lambda state, body: state.apply_statistic(body),
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
    codec = SoapCodec(config.soap_wsdl, config.username, config.password, config.soap_skew_seconds)
    app.router.add_post(config.soap_path, _service_handler(INTEGRATION_SERVICES, _SoapFace(codec)))
    app.router.add_get(config.soap_path, _documents(codec))
    app.router.add_get("/_sim/dossiers", _list_dossiers)
    app.router.add_get("/_sim/dossiers/{no:.+}", _one_dossier)
    app.router.add_delete("/_sim/dossiers/{no:.+}", _lose_dossier)
    app.router.add_patch("/_sim/dossiers/{no:.+}", _edit_dossier)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_post("/_sim/faults", _add_fault)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_get("/_sim/chaos", _get_chaos)
    app.router.add_put("/_sim/chaos", _put_chaos)
    app.router.add_delete("/_sim/chaos", _clear_chaos)
    app.router.add_get("/_sim/rate", _rate)
    app.router.add_post("/_sim/submissions", _register_submissions)
    app.router.add_post("/_sim/submissions/generate", _generate_submissions)
    app.router.add_get("/_sim/submissions", _list_submissions)
    app.router.add_get("/_sim/submissions/{no:.+}", _one_submission)
    app.router.add_get("/_sim/statistics", _list_statistics)
    app.router.add_post(config.pp_query_path, _pp_query)
    app.router.add_post("/_sim/payments", _register_payments)
    app.router.add_get("/_sim/payments", _list_payments)
    app.router.add_post("/_sim/payments/{ref}/callback", _send_payment_callback)
    return app


async def start_simulator(host: str, port: int, config: SimulatorConfig) -> tuple[web.AppRunner, str]:
    """Serve the simulator; return the runner (call ``cleanup()`` to stop) and its base URL.

    ``port`` 0 picks a free port; the URL carries the one actually bound.
    """
    # Cancel a handler when its client goes away: "in flight" then means a client is still waiting.
    runner = web.AppRunner(create_app(config), handler_cancellation=True)
    return runner, f"http://{_url_host(host)}:{await serve(runner, host, port)}"


# --- adapter side ---------------------------------------------------------------------------------


class _JsonFace:
    """The REST adapter's JSON: ``{"session", "madonvi", "service", ...}`` in, the reply as JSON out."""

    login_service: str | None = None  # the login has its own endpoint

    async def decode(self, request: web.Request) -> Decoded | web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        named = body.get("service")
        return (named if isinstance(named, str) else ""), body, False

    def encode(self, service: str, reply: Reply, status: int = 200) -> web.Response:
        return _json(reply, status=status)


class _SoapFace:
    """The same calls as SOAP envelopes (``soap_face.SoapCodec``); the login is the ``DangNhap`` operation."""

    login_service: str | None = LOGIN_SERVICE

    def __init__(self, codec: SoapCodec) -> None:
        self.codec = codec

    async def decode(self, request: web.Request) -> Decoded | web.Response:
        if request.content_type not in ("text/xml", "application/soap+xml"):
            return self.codec.fault("Client", "Content-Type must be text/xml")
        return self.codec.decode(await request.read())  # larger than client_max_size: aiohttp answers 413

    def encode(self, service: str, reply: Reply, status: int = 200) -> web.Response:
        return self.codec.encode(service, reply, status)


Face = _JsonFace | _SoapFace
JSON_FACE = _JsonFace()


async def _login(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    with state.meter.track():
        body = await _adapter_request(request)
        if isinstance(body, web.Response):
            return body
        return await _serve_login(request, JSON_FACE, body)


async def _serve_login(request: web.Request, face: Face, body: dict[str, Any]) -> web.StreamResponse:
    refusal, late = await _before_serving(request, LOGIN)
    if refusal is not None:
        return refusal
    reply = request.app[SIMULATOR_STATE].login(body)
    await _pause(request.app, late)
    return face.encode(LOGIN_SERVICE, reply)


def _service_handler(services: Mapping[str, ServiceCall], face: Face = JSON_FACE) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[SIMULATOR_STATE]
        with state.meter.track():
            state.note_dstcode(request.headers.get("dstcode"))
            decoded = await face.decode(request)
            if isinstance(decoded, web.Response):
                return decoded
            service, body, signed = decoded
            if service == face.login_service:
                return await _serve_login(request, face, body)
            refusal, late = await _before_serving(request, service)
            if refusal is not None:
                return refusal
            # The adapter authenticates before it looks at what is asked.
            if not signed and not state.use_session(body.get("session")):
                state.count_call(service, "session_expired")
                await _pause(request.app, late)
                return face.encode(service, SESSION_INVALID, status=401)
            crash = state.chaos.crash_status(service, body.get("data"))
            if crash is not None:
                state.count_call(service, f"crash_{crash}")
                return web.Response(status=crash, text="simulated crash on this record")
            reply = _dispatch(services, state, service, body)
            withheld = state.withhold_seconds(service, reply)
            state.count_call(service, "withheld" if withheld is not None else outcome_of(reply))
            # Applied; the client that gives up meanwhile cannot know (it cancels this handler).
            await _pause(request.app, late + (withheld or 0.0))
            return face.encode(service, reply)

    return handle


def _documents(codec: SoapCodec) -> Handler:
    async def serve_document(request: web.Request) -> web.StreamResponse:
        return codec.document(request.query)

    return serve_document


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


async def _adapter_request(request: web.Request) -> dict[str, Any] | web.Response:
    """What every adapter call starts with: the dstcode header noted, the body read as a JSON object."""
    request.app[SIMULATOR_STATE].note_dstcode(request.headers.get("dstcode"))
    return await _json_object(request)


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


async def _before_serving(request: web.Request, service: str) -> tuple[web.StreamResponse | None, float]:
    """An injected fault, then the chaos profile: the answer to give instead of serving the call, or
    None and how many seconds to hold the reply back once the call is served."""
    state = request.app[SIMULATOR_STATE]
    fault = state.take_fault(service)
    if fault is not None:
        if fault.status is None:
            return None, fault.delay_seconds  # only late: served first, answered after the delay
        await _pause(request.app, fault.delay_seconds)
        state.count_call(service, f"fault_{fault.status}")
        headers = {"Content-Type": fault.content_type}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        return web.Response(status=fault.status, body=fault.body.encode("utf-8"), headers=headers), 0.0
    verdict = state.chaos_verdict(service)
    if verdict.close:
        state.count_call(service, verdict.outcome)
        return _drop_connection(request), 0.0
    await _pause(request.app, verdict.delay_seconds)
    if verdict.status is None:
        return None, 0.0
    state.count_call(service, verdict.outcome)
    chaos_headers = {"Retry-After": str(verdict.retry_after)} if verdict.retry_after is not None else None
    return web.Response(status=verdict.status, text="simulated chaos", headers=chaos_headers), 0.0


def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=503)  # never delivered: the connection is closing


async def _pause(app: web.Application, seconds: float) -> None:
    # Cut short when the server shuts down, so a stopping simulator never waits on a delayed call.
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[_STOPPING].wait(), seconds)


async def _release_delayed_calls(app: web.Application) -> None:
    app[_STOPPING].set()


# --- inspection and knobs -------------------------------------------------------------------------


async def _list_dossiers(request: web.Request) -> web.StreamResponse:
    """``{MaHoSo: view}`` written in pieces, so tens of thousands of dossiers stay cheap to fetch.

    Each dossier's view is taken whole, between pushes; pushes arriving while the list is being sent
    may show in the dossiers not yet written.
    """
    fields = _fields(request, DOSSIER_FIELDS, DEFAULT_DOSSIER_FIELDS)
    if isinstance(fields, web.Response):
        return fields
    stored = list(request.app[SIMULATOR_STATE].dossiers.items())
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.charset = "utf-8"
    await response.prepare(request)
    for start in range(0, len(stored), _DOSSIERS_PER_WRITE):
        piece = ",".join(
            f"{_dumps(number)}:{_dumps(dossier.as_json(fields))}"
            for number, dossier in stored[start : start + _DOSSIERS_PER_WRITE]
        )
        await response.write((("{" if start == 0 else ",") + piece).encode("utf-8"))
    await response.write(b"}" if stored else b"{}")
    await response.write_eof()
    return response


async def _one_dossier(request: web.Request) -> web.StreamResponse:
    fields = _fields(request, DOSSIER_FIELDS, DEFAULT_DOSSIER_FIELDS)
    if isinstance(fields, web.Response):
        return fields
    stored = request.app[SIMULATOR_STATE].dossiers.get(request.match_info["no"])
    if stored is None:
        return _json({"error": "not found"}, status=404)
    return _json(stored.as_json(fields))


async def _lose_dossier(request: web.Request) -> web.StreamResponse:
    if request.app[SIMULATOR_STATE].dossiers.pop(request.match_info["no"], None) is None:
        return _json({"error": "not found"}, status=404)
    return _json({"lost": request.match_info["no"]})


async def _edit_dossier(request: web.Request) -> web.StreamResponse:
    stored = request.app[SIMULATOR_STATE].dossiers.get(request.match_info["no"])
    if stored is None:
        return _json({"error": "not found"}, status=404)
    try:
        changes = await request.json()
    except ValueError:
        changes = None
    if not isinstance(changes, dict):
        return _json({"error": "the body must be a JSON object of record fields"}, status=400)
    stored.record = {**stored.record, **changes}
    return _json(stored.as_json(("record",)))


async def _stats(request: web.Request) -> web.StreamResponse:
    fields = _fields(request, STATS_FIELDS, DEFAULT_STATS_FIELDS)
    if isinstance(fields, web.Response):
        return fields
    return _json(request.app[SIMULATOR_STATE].stats(fields))


async def _rate(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].meter.snapshot())


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


async def _get_chaos(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].chaos.profile.model_dump(mode="json"))


async def _put_chaos(request: web.Request) -> web.StreamResponse:
    """Replace the chaos profile; answer it with every default filled in, or 400 naming each problem."""
    try:
        profile = parse_profile(await request.json())
    except ChaosInvalid as exc:
        return _json({"error": str(exc)}, status=400)
    except ValueError:
        return _json({"error": "the body must be a JSON object (a chaos profile)"}, status=400)
    request.app[SIMULATOR_STATE].set_chaos(profile)
    return _json(profile.model_dump(mode="json"))


async def _clear_chaos(request: web.Request) -> web.StreamResponse:
    profile = ChaosProfile()
    request.app[SIMULATOR_STATE].set_chaos(profile)
    return _json(profile.model_dump(mode="json"))


# --- citizen submissions and the Payment Platform ------------------------------------------------


async def _register_submissions(request: web.Request) -> web.StreamResponse:
    body = await _knob_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        registered = request.app[SIMULATOR_STATE].submissions.register(body.get("submissions"))
    except SubmissionRefused as exc:
        return _json({"error": str(exc)}, status=400)
    return _json({"registered": registered}, status=201)


async def _generate_submissions(request: web.Request) -> web.StreamResponse:
    try:
        spec = GenerationSpec.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or a pydantic ValidationError
        return _json({"error": str(exc)}, status=400)
    return _json(request.app[SIMULATOR_STATE].submissions.generate(spec).as_json(), status=201)


async def _list_submissions(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].submissions.views())


async def _one_submission(request: web.Request) -> web.StreamResponse:
    view = request.app[SIMULATOR_STATE].submissions.view(request.match_info["no"])
    if view is None:
        return _json({"error": "not found"}, status=404)
    return _json(view)


async def _list_statistics(request: web.Request) -> web.StreamResponse:
    """The statistics reports kept; ``agency`` (its code), ``year`` and ``month`` (integers) narrow the list."""
    numbers: dict[str, int | None] = {}
    for name in ("year", "month"):
        given = request.query.get(name)
        if given is not None and not _WHOLE_NUMBER.fullmatch(given):
            return _json({"error": f"{name}: must be a whole number, not {given[:40]!r}"}, status=400)
        numbers[name] = int(given) if given is not None else None
    desk = request.app[SIMULATOR_STATE].statistics
    return _json(desk.views(request.query.get("agency"), numbers["year"], numbers["month"]))


async def _pp_query(request: web.Request) -> web.StreamResponse:
    """The PP answers every QUERY with HTTP 200 and JSON, a refusal included (``MaLoi`` 99)."""
    try:
        message: Any = json.loads(await request.text())
    except ValueError:
        message = None
    return _json(request.app[SIMULATOR_STATE].payments.query(message))


async def _register_payments(request: web.Request) -> web.StreamResponse:
    body = await _knob_body(request)
    if isinstance(body, web.Response):
        return body
    items = body.get("payments")
    if not isinstance(items, list):
        return _json({"error": "payments: must be a list"}, status=400)
    specs: list[PaymentSpec] = []
    for index, item in enumerate(items):
        try:
            specs.append(PaymentSpec.model_validate(item))
        except ValidationError as exc:
            return _json({"error": f"payments[{index}]: {exc}"}, status=400)
    return _json({"registered": request.app[SIMULATOR_STATE].payments.register(specs)}, status=201)


async def _list_payments(request: web.Request) -> web.StreamResponse:
    return _json(request.app[SIMULATOR_STATE].payments.views())


async def _send_payment_callback(request: web.Request) -> web.StreamResponse:
    """Act as the PP: post the result notification of one payment to the URL given, report what came back."""
    try:
        spec = CallbackSpec.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or a pydantic ValidationError
        return _json({"error": str(exc)}, status=400)
    try:
        notification = request.app[SIMULATOR_STATE].payments.notification(request.match_info["ref"], spec)
    except ChecksumRefused as exc:  # an override holding "|"
        return _json({"error": str(exc)}, status=400)
    if notification is None:
        return _json({"error": "not found"}, status=404)
    try:
        async with (
            aiohttp.ClientSession(timeout=CALLBACK_TIMEOUT) as http,
            http.post(spec.url, data=_dumps(notification).encode("utf-8"),
                      headers={"Content-Type": "application/json"}) as response,
        ):
            status = response.status
            text = (await response.content.read(_CALLBACK_REPLY_BYTES)).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _json({"error": f"the notification was not delivered: {exc!r}", "sent": notification}, status=502)
    try:
        reply: Any = json.loads(text)
    except ValueError:
        reply = text
    return _json({"status": status, "reply": reply, "sent": notification})


async def _knob_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _json({"error": "the body must be a JSON object"}, status=400)
    return body


def _fields(request: web.Request, known: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...] | web.Response:
    """The ``?fields=`` of a view: comma-separated names from ``known``, or ``all``."""
    asked = request.query.get("fields")
    if asked is None:
        return default
    if asked == "all":
        return known
    names = tuple(name.strip() for name in asked.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        return _json({"error": f"fields: choose from {', '.join(known)} (or all); not {asked!r}"}, status=400)
    return names


def _json(payload: Any, *, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=_dumps)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - mapping a wildcard bind to a reachable address
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


__all__ = [
    "CALLBACK_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "SIMULATOR_STATE",
    "ChaosProfile",
    "Fault",
    "SimulatorConfig",
    "SimulatorState",
    "create_app",
    "start_simulator",
]
