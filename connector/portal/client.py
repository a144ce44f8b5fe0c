"""The DVCQG adapter client: JSON over HTTP POST (``RestWire``) or SOAP (``connector.portal.soap.SoapWire``).

One HTTP call per method call, plus at most one re-login on an expired session, every request paced by
``portal.rate_limit``. Retry policy, backoff and circuit breaking belong to the gateway; this client only reports
what happened, as a value of ``connector.portal.errors`` and through the optional observer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter

from connector.config import PortalSettings
from connector.errors import ConfigError, SyncError
from connector.portal.errors import (
    MAX_REPLY_BYTES,
    AlreadyExists,
    LoginFailed,
    PortalUnavailable,
    classify_reply,
    login_session,
)
from connector.portal.session import PortalSession
from connector.untrusted import BodyTooLarge, read_body

log = structlog.get_logger(__name__)

T = TypeVar("T")
USERNAME_TOKEN = "username-token"  # noqa: S105 - the "session" of a transport that signs every call instead

CallObserver = Callable[[str, str, float], None]
"""(service, result, seconds); result is "ok" or the error's reason."""


@dataclass(frozen=True)
class CallRecord:
    """One adapter call, for the audit trail: no personal data, the request only as a digest."""

    at: datetime
    service: str
    dossiers: tuple[str, ...]  # the MaHoSo of every record or step sent
    records: int
    request_sha256: str  # empty for the login, whose body holds the password
    result: str
    seconds: float
    transport: str = "rest"
    message_id: str = ""  # the SOAP call's WS-Addressing MessageID, for joining the platform's message log


CallAuditor = Callable[[CallRecord], None]

# Catalogue services go to share_endpoint (none is called yet); everything else to integration_endpoint.
SHARE_SERVICES = frozenset({"LayDanhSachTTHC", "LayThuTuc"})

PUSH_DOSSIERS = "DongBoHoSoMC"
PUSH_PROGRESS = "CapNhatTienDoHoSoMC"
PUSH_STATUS = "DongBoTrangThaiHoSo"
LOOKUP = "TraCuuHoSo"
LIST_SUBMISSIONS = "DanhSachHoSo"
FETCH_FILE = "LayTaiLieuHoSo"
ACKNOWLEDGE_SUBMISSION = "CapNhatDaNhanHoSo"
PUSH_STATISTIC = "UpdateStatistic"

# The pull services' parameter names (PORTAL.md §6: assumed, not published): one place to adjust them.
PULL_PARAMS = {
    "agency": "donViXuLy", "first_day": "ngayNhan1", "last_day": "ngayNhan2", "page": "trang",
    "page_size": "soLuong", "file_path": "duongdanteptin", "dossier_no": "maHoSo", "revision": "phienBan",
    "received": "daNhan", "local_no": "maHoSoDonVi",
}
LOGIN = "login"

Outgoing = tuple[str, bytes, dict[str, str], str]
"""A request ready to post: URL, body, HTTP headers, and its message id ("" when the transport has none)."""


class Wire(Protocol):
    """How a call travels: the adapter's JSON (``RestWire``) or SOAP through the integration platform
    (``connector.portal.soap.SoapWire``). Builds requests and reads replies; ``PortalClient`` does the rest
    (session, audit, metrics) the same way for both."""

    name: str
    logs_in: bool  # False: no login call, every request carries its own credential (WS-Security)

    def login(self, username: str, password: str) -> Outgoing: ...

    def login_reply(self, status: int, headers: Mapping[str, str], body: bytes) -> str: ...

    def request(self, service: str, token: str, params: Mapping[str, Any], dossiers: Sequence[str]) -> Outgoing: ...

    def reply(self, service: str, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]: ...


class RestWire:
    """The DVCQG adapter's JSON: ``{"session", "madonvi", "service", ...params}`` POSTed to its endpoint."""

    name = "rest"
    logs_in = True

    def __init__(self, settings: PortalSettings) -> None:
        self._settings = settings
        self._headers = _request_headers(settings.dstcode)

    def login(self, username: str, password: str) -> Outgoing:
        url = self._settings.adapter_url + self._settings.auth_endpoint
        return url, _json_body({"username": username, "password": password}), self._headers, ""

    def login_reply(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        return login_session(lambda: classify_reply(status, headers, body, expired_codes=()))

    def request(self, service: str, token: str, params: Mapping[str, Any], dossiers: Sequence[str]) -> Outgoing:
        endpoint = (self._settings.share_endpoint if service in SHARE_SERVICES
                    else self._settings.integration_endpoint)
        envelope = {"session": token, "madonvi": self._settings.madonvi, "service": service}
        return self._settings.adapter_url + endpoint, _json_body({**envelope, **params}), self._headers, ""

    def reply(self, service: str, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        return classify_reply(status, headers, body, expired_codes=self._settings.session_expired_codes)


def wire_for(settings: PortalSettings) -> Wire:
    """The transport ``portal.transport`` names (the SOAP one loads its WSDL: ConfigError when it cannot)."""
    if settings.transport == "soap":
        from connector.portal.soap import SoapWire  # zeep and the WSDL only for a deployment that uses them

        return SoapWire(settings)
    return RestWire(settings)


class PortalClient:
    """Calls the adapter; safe to share between concurrent tasks (one session, one connection pool).

    A caller-supplied ``http`` session must not raise for status itself: HTTP errors are classified here.
    """

    def __init__(
        self,
        settings: PortalSettings,
        *,
        observer: CallObserver | None = None,
        auditor: CallAuditor | None = None,
        http: aiohttp.ClientSession | None = None,
        wire: Wire | None = None,
    ) -> None:
        self._settings = settings
        self.wire = wire if wire is not None else wire_for(settings)
        self._observer = observer
        self._auditor = auditor
        self._http = http
        self._closed = False
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._session = PortalSession(self._request_token)
        # portal.rate_limit, for every HTTP request: a call's login, its re-send after an expired session and a
        # create re-sent as an update count too. Capacity 1, refilled at the rate: no burst, so no 1-second
        # window ever holds more than rate + 1.
        self._pace = AsyncLimiter(1, 1 / settings.rate_limit.requests_per_second)

    async def __aenter__(self) -> PortalClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def session_token(self) -> str | None:
        """The session held now, if any (never logged)."""
        return self._session.token

    async def login(self) -> None:
        """Log in now, whatever session is held; later calls use the new one."""
        await self._session.login()

    async def ensure_session(self) -> None:
        """Log in unless a session is held (the start-up warm-up): shares the one login of concurrent callers."""
        await self._session.current_token()

    async def outcome_known(self) -> None:
        """Returns once a login or call has ended (``PortalSession.outcome_known``)."""
        await self._session.outcome_known()

    def readiness(self) -> str | None:
        """"ok", the last error's "Class (reason)", or None while nothing is known (``PortalSession.readiness``)."""
        return self._session.readiness()

    async def call(self, service: str, params: Mapping[str, Any], *,
                   max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
        """Call ``service`` with the session; return the reply when it means success. Over REST the service
        decides the endpoint (``SHARE_SERVICES``: the share endpoint); SOAP has one address."""
        dossiers, count = _named(params)

        async def send(token: str) -> dict[str, Any]:
            return await self._post(service, lambda: self.wire.request(service, token, params, dossiers),
                                    lambda status, headers, raw: self.wire.reply(service, status, headers, raw),
                                    dossiers=dossiers, count=count, max_bytes=max_bytes)

        return await self._session.send(send)

    async def push_dossiers(self, records: Sequence[Mapping[str, Any]], *, updating: bool) -> bool:
        """Create or update whole records; return True when they went in as an update.

        A create that the portal answers with "already exists" is re-sent once as an update: the
        full state identified by MaHoSo is the same either way.
        """
        if not records:
            return updating
        data = _as_dicts(records)
        try:
            await self._push_dossiers(data, updating=updating)
        except AlreadyExists:
            if updating:
                raise
            log.info("portal.create_switched_to_update", service=PUSH_DOSSIERS, records=len(data))
            await self._push_dossiers(data, updating=True)
            return True
        return updating

    async def push_progress(self, steps: Sequence[Mapping[str, Any]]) -> None:
        if steps:
            await self.call(PUSH_PROGRESS, {"data": _as_dicts(steps)})

    async def push_status(self, data: Mapping[str, Any]) -> None:
        """The status of one dossier that started on the national portal, sent back: ``type`` is the string
        "2", and ``data`` one object (not a list), so one dossier per call."""
        body = data if isinstance(data, dict) else dict(data)
        await self.call(PUSH_STATUS, {"type": "2", "data": body})

    async def push_statistic(self, record: Mapping[str, Any]) -> None:
        """One agency's month of statistics (UpdateStatistic): the record's fields beside the envelope's."""
        await self.call(PUSH_STATISTIC, dict(record))

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None:
        """The portal's record of ``dossier_no``, or None when the portal does not have it."""
        first = await self.submission(dossier_no)
        if first is None:
            return None
        if not isinstance(first, dict):
            raise PortalUnavailable("TraCuuHoSo result is not a record", reason="malformed_reply")
        if first.get("MaHoSo") not in (None, dossier_no):
            raise PortalUnavailable("TraCuuHoSo answered with another dossier's record", reason="malformed_reply")
        return first

    async def _push_dossiers(self, data: list[dict[str, Any]], *, updating: bool) -> None:
        # The adapter wants the strings "True"/"False", not JSON booleans.
        await self.call(PUSH_DOSSIERS, {"data": data, "isUpdating": str(updating)})

    async def _request_token(self) -> str:
        password = portal_password(self._settings)
        if not self.wire.logs_in:
            return USERNAME_TOKEN  # every call carries the credential itself: nothing to ask for
        username = self._settings.username
        return await self._post(LOGIN, lambda: self.wire.login(username, password), self.wire.login_reply,
                                dossiers=(), count=None, max_bytes=MAX_REPLY_BYTES)

    async def _post(self, service: str, build: Callable[[], Outgoing],
                    read: Callable[[int, Mapping[str, str], bytes], T], *, dossiers: tuple[str, ...],
                    count: int | None, max_bytes: int) -> T:
        await self._pace.acquire()  # before the clock starts: the call's seconds are the adapter's
        started = time.perf_counter()
        result = "cancelled"  # stays so only if the caller cancels us mid-call
        body, message_id = b"", ""
        try:
            url, body, headers, message_id = build()
            status, reply_headers, raw = await self._exchange(url, body, headers, max_bytes)
            reply = read(status, reply_headers, raw)
            result = "ok"
            return reply
        except SyncError as exc:
            result = exc.reason
            raise
        finally:
            seconds = time.perf_counter() - started
            self._report(service, result, seconds, count)
            if self._auditor is not None:
                # The login's body holds the password: no digest of it.
                digest = "" if service == LOGIN or not body else hashlib.sha256(body).hexdigest()
                self._auditor(CallRecord(datetime.now(UTC), service, dossiers, count if count is not None else
                                         len(dossiers), digest, result, seconds, self.wire.name, message_id))

    async def _exchange(self, url: str, body: bytes, headers: Mapping[str, str],
                        max_bytes: int) -> tuple[int, Mapping[str, str], bytes]:
        # A timeout is ambiguous (the adapter may have applied the call): re-sending the full state is safe.
        try:
            return await post_bounded(self._client(), url, body, headers=headers, limits=self._timeout,
                                      max_bytes=max_bytes)
        except BodyTooLarge:
            raise PortalUnavailable(f"reply larger than {max_bytes} bytes", reason="reply_too_large") from None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp requires.
        if self._closed:
            raise RuntimeError("the portal client is closed")
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def _report(self, service: str, result: str, seconds: float, count: int | None) -> None:
        fields: dict[str, Any] = {"service": service, "result": result, "seconds": round(seconds, 4)}
        if count is not None:
            fields["records"] = count
        if result == "ok":
            log.debug("portal.call", **fields)
        else:
            log.warning("portal.call", **fields)
        if self._observer is not None:
            self._observer(service, result, seconds)

    # --- the way back: submissions made on the national portal ---------------------------------------

    async def list_submissions(self, agency: str, first_day: date, last_day: date, *, page: int,
                               page_size: int) -> Any:
        """One page of ``DanhSachHoSo``: the submissions for ``agency`` received in the (inclusive) window,
        as the adapter sent them (``connector.pull.national.parse_listing`` validates)."""
        p = PULL_PARAMS
        reply = await self.call(LIST_SUBMISSIONS, {
            p["agency"]: agency, p["first_day"]: first_day.isoformat(), p["last_day"]: last_day.isoformat(),
            p["page"]: page, p["page_size"]: page_size})
        return reply.get("result")

    async def submission(self, dossier_no: str) -> Any:
        """``TraCuuHoSo``'s record of a dossier, unvalidated (None when the portal has none): as the pull side reads a
        submission; ``lookup`` checks it for the push side."""
        reply = await self.call(LOOKUP, {"mahoso": dossier_no})
        result = reply.get("result")
        if not result:
            return None
        return result[0] if isinstance(result, list) else result

    async def fetch_file(self, path: str, *, max_bytes: int) -> dict[str, Any]:
        """``LayTaiLieuHoSo``'s reply for one file, unvalidated; a reply over ``max_bytes`` is refused."""
        return await self.call(FETCH_FILE, {PULL_PARAMS["file_path"]: path}, max_bytes=max_bytes)

    async def acknowledge_submission(self, dossier_no: str, revision: int, local_no: str | None) -> None:
        """``CapNhatDaNhanHoSo``: the portal may stop offering this revision. Harmless when repeated."""
        p = PULL_PARAMS
        params: dict[str, Any] = {p["dossier_no"]: dossier_no, p["revision"]: str(revision), p["received"]: True}
        if local_no:
            params[p["local_no"]] = local_no
        await self.call(ACKNOWLEDGE_SUBMISSION, params)


def _named(params: Mapping[str, Any]) -> tuple[tuple[str, ...], int | None]:
    """The dossiers a call names (the MaHoSo of every record or step, or the one a lookup or an acknowledgement
    names), and how many records it carries (None: not a push), for the audit trail and the correlation header."""
    data = params.get("data")
    count = len(data) if isinstance(data, list) else None
    if data is None:
        named = params.get("mahoso", params.get(PULL_PARAMS["dossier_no"]))
        data = {"MaHoSo": named} if isinstance(named, str) else None
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    dossiers = tuple(dict.fromkeys(str(item["MaHoSo"])[:100] for item in items
                                   if isinstance(item, dict) and item.get("MaHoSo")))
    return dossiers, count


def portal_password(settings: PortalSettings) -> str:
    """The adapter password (read from ``password_file`` when given so); ``LoginFailed`` when it cannot be read:
    nothing can be sent until it is fixed, and no record is to blame."""
    try:
        return settings.password_value()
    except ConfigError as exc:
        raise LoginFailed(f"cannot read the password: {exc}") from exc


def _json_body(payload: Mapping[str, Any]) -> bytes:
    # ASCII-escaped JSON reads the same whatever charset the adapter assumes for the body.
    return json.dumps(payload).encode("ascii")


def _as_dicts(items: Sequence[Mapping[str, Any]]) -> list[Any]:
    # No copies of what is already a dict: thousands of records a second pass through here.
    return [item if isinstance(item, dict) else dict(item) for item in items]


async def post_bounded(http: aiohttp.ClientSession, url: str, body: bytes, *, headers: Mapping[str, str],
                       limits: aiohttp.ClientTimeout, max_bytes: int,
                       far_side: str = "") -> tuple[int, Mapping[str, str], bytes]:
    """One POST to the national side (the adapter, the Payment Platform): status, headers, and the reply read to
    at most ``max_bytes`` (``BodyTooLarge`` beyond). No answer in time, or no connection: ``PortalUnavailable``,
    service-wide, waited out by the caller. ``far_side`` prefixes the error's text."""
    try:
        async with http.post(url, data=body, headers=headers, timeout=limits, allow_redirects=False) as response:
            return response.status, response.headers, await read_body(response.content, max_bytes)
    except TimeoutError as exc:
        raise PortalUnavailable(f"{far_side}no answer within {limits.total:g}s", reason="timeout") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise PortalUnavailable(f"{far_side}{type(exc).__name__}: {exc}"[:500], reason="network") from exc


def _request_headers(dstcode: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    # Only when configured: the test adapter misbehaves when it receives the header.
    if dstcode:
        headers["dstcode"] = dstcode
    return headers


__all__ = [
    "LOGIN",
    "USERNAME_TOKEN",
    "CallAuditor",
    "CallObserver",
    "CallRecord",
    "Outgoing",
    "PortalClient",
    "RestWire",
    "Wire",
    "portal_password",
    "wire_for",
]
