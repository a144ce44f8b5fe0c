"""A DVCQG adapter on loopback whose every reply the test writes, byte for byte, in chunks of the size it
chooses (``web.StreamResponse``: each chunk its own write, drained before the next). The login answers a
session; each other service answers what the test queued for it. For the hostile suites that feed the real
``PortalClient`` replies no real adapter would send.

A SOAP request (one with a ``SOAPAction`` header, or a SOAP 1.2 ``action`` in its Content-Type) is named by the
action's last path segment (``…/IDVCQGAdapter/DongBoHoSoMC`` is ``DongBoHoSoMC``); its login is ``DangNhap``,
answered with ``login`` as for the REST login (a SOAP suite sets it to a ``DangNhapResponse`` envelope)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from connector.config import PortalSettings
from connector.portal.client import PortalClient

STEP_SECONDS = 15.0  # bounds every network await of these suites
LOGIN_REPLY = b'{"error_code": 0, "message": "ok", "session": "fake-session"}'
SOAP_LOGIN = "DangNhap"


@dataclass(frozen=True)
class Reply:
    body: bytes
    status: int = 200
    content_type: str | None = "application/json"
    chunk: int = 64 * 1024
    endless: bool = False  # after the body, keep writing until the client goes away
    headers: tuple[tuple[str, str], ...] = ()  # more reply headers (Retry-After, …)


def json_reply(document: Any, **options: Any) -> Reply:
    return Reply(json.dumps(document, ensure_ascii=False).encode("utf-8"), **options)


@dataclass
class FakeAdapter:
    url: str = ""
    login: Reply = field(default_factory=lambda: Reply(LOGIN_REPLY))
    replies: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    default: Reply = field(default_factory=lambda: Reply(b'{"error_code": 0, "message": "ok", "result": []}'))
    logins: int = 0
    calls: list[str] = field(default_factory=list)
    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (service, body) of every request, login too

    def answer(self, service: str, *replies: Reply) -> None:
        """Queue ``replies`` for ``service``, used once each in order; then the default."""
        self.replies[service].extend(replies)

    def settings(self, **changes: Any) -> PortalSettings:
        values: dict[str, Any] = {"adapter_url": self.url, "username": "u", "password": SecretStr("p"),
                                  "madonvi": "000.00.01.H22", "timeout_seconds": STEP_SECONDS}
        return PortalSettings(**{**values, **changes})

    def client(self, **changes: Any) -> PortalClient:
        return PortalClient(self.settings(**changes))

    def _next(self, request: web.Request, body: bytes) -> Reply:
        action = soap_action(request)
        if request.path == "/api/auth" or action == SOAP_LOGIN:
            self.logins += 1
            self.requests.append((action or "login", body))
            return self.login
        if action is not None:
            service = action
        else:
            try:
                service = str(json.loads(body).get("service"))
            except (ValueError, AttributeError):
                service = "?"
        self.calls.append(service)
        self.requests.append((service, body))
        queued = self.replies.get(service)
        return queued.pop(0) if queued else self.default

    async def handle(self, request: web.Request) -> web.StreamResponse:
        reply = self._next(request, await request.read())
        response = web.StreamResponse(status=reply.status)
        if reply.content_type is not None:
            response.headers["Content-Type"] = reply.content_type
        for name, value in reply.headers:
            response.headers[name] = value
        await response.prepare(request)
        try:
            for start in range(0, len(reply.body), reply.chunk):
                await response.write(reply.body[start:start + reply.chunk])  # write drains its buffer
            while reply.endless:
                await response.write(b" " * reply.chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the client stopped reading (a refused reply): expected
            pass
        return response


def soap_action(request: web.Request) -> str | None:
    """The service a SOAP request names (its action's last path segment); None for a REST request."""
    action = request.headers.get("SOAPAction")
    if action is None:
        for parameter in request.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.lower() == "action":
                action = value
    if action is None:
        return None
    return action.strip().strip('"').rstrip("/").rpartition("/")[2] or "?"


@pytest.fixture
async def adapter() -> AsyncIterator[FakeAdapter]:
    fake = FakeAdapter()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await asyncio.wait_for(runner.setup(), STEP_SECONDS)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await asyncio.wait_for(site.start(), STEP_SECONDS)
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await asyncio.wait_for(runner.cleanup(), STEP_SECONDS)


__all__ = ["SOAP_LOGIN", "STEP_SECONDS", "FakeAdapter", "Reply", "adapter", "json_reply", "soap_action"]
