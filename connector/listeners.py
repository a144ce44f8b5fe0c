"""Listeners: serving an aiohttp app (the one way the admin, public and simulator apps are started), and the
public app, where the national side calls us.

- ``POST <public.submissions_path>``: DVCQG pushes a new (or amended) dossier; the reply is
  ``{"error_code": 0}`` created, ``1`` duplicate, ``-1`` with ``message`` on error.
- ``POST <public.payments_path>``: the Payment Platform's result notification; the reply is the platform's
  own format (``MaLoi`` "00" / "99", with our checksum).

Apart from the admin listener on purpose: this one faces another organisation, and carries nothing an
operator uses. Every body is read bounded and handed on as parsed JSON (or an ``UnreadableBody``); every
request that reaches the app is answered with well-formed JSON: an unexpected error is answered as an error,
never a 500. A request aiohttp's HTTP parser cannot read (a bare CR in a header, two framings) never reaches
it: aiohttp answers a plain-text 400 itself, quoting the offending line back to the sender only, and the
server log names the error's class (``connector.listeners``).
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from connector.errors import ConfigError, RetryableError
from connector.observability import Metrics
from connector.untrusted import (
    BodyTooLarge,
    UnreadableBody,
    UnreadableJson,
    UnsafeText,
    bearer_matches,
    parse_json,
    read_body,
)

log = structlog.get_logger(__name__)

MAX_NOTIFICATION_BYTES = 64 * 1024


class _ClassOnly(logging.Logger):
    """aiohttp's server log, for requests it could not handle (a malformed request line or header; a handler
    that raised): the error's class and status only, through structlog. aiohttp's own record quotes the
    offending bytes, and a header may carry a bearer token or a citizen's details."""

    def __init__(self) -> None:
        super().__init__("connector.listener")

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        log.warning("listener.request_failed", error=type(error).__name__ if error is not None else None,
                    status=getattr(error, "code", None))

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass


LISTENER_LOG = _ClassOnly()


def app_runner(app: web.Application) -> web.AppRunner:
    """A runner for a listener facing callers we do not control: no access log, and a server log that never
    quotes what was sent."""
    return web.AppRunner(app, access_log=None, logger=LISTENER_LOG)


async def serve(runner: web.AppRunner, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None) -> int:
    """Set ``runner`` up and listen on ``host:port`` (0: a free port), over TLS when ``ssl_context`` is given;
    return the port bound. Nothing is left half-started when the listener cannot be opened."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return bound


def server_tls(cert_file: Path, key_file: Path, client_ca_file: Path | None, *, section: str) -> ssl.SSLContext:
    """A server's TLS context: its certificate and key and, with ``client_ca_file``, mutual TLS (every client
    must present a certificate signed by that CA; the handshake fails otherwise). ConfigError naming the
    ``section``'s setting that cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{section}.tls_cert_file / tls_key_file: cannot load the certificate and its key "
                          f"({type(exc).__name__})") from None
    if client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{section}.tls_client_ca_file: cannot load the CA certificates "
                              f"({type(exc).__name__})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context

class SubmissionIntake(Protocol):
    async def accept_pushed(self, body: Any) -> tuple[int, str]:
        """``(error_code, message)``: 0 accepted, 1 duplicate, -1 refused (the message says why)."""
        ...


class PaymentNotifications(Protocol):
    async def notification(self, body: Any) -> dict[str, Any]:
        """The platform-format reply to a result notification (``body`` may be an ``UnreadableBody``)."""
        ...

    def refusal(self, reason: str, message: str, body: Any = None) -> dict[str, Any]:
        """The platform-format "99" reply, for a call that never reached a verdict (naming its reference)."""
        ...


def create_public_app(*, metrics: Metrics, submissions_path: str, payments_path: str,
                      intake: SubmissionIntake | None, payments: PaymentNotifications | None,
                      max_submission_bytes: int, inbound_token: str | None = None) -> web.Application:
    app = web.Application(client_max_size=max(max_submission_bytes, MAX_NOTIFICATION_BYTES))

    async def submission(request: web.Request) -> web.StreamResponse:
        def reply(code: int, message: str, status: int = 200) -> web.Response:
            metrics.public_requests.labels("submissions", str(code)).inc()
            return web.json_response({"error_code": code, "message": message}, status=status,
                                     dumps=_dumps)

        if intake is None:
            return reply(-1, "this service does not accept submissions", 404)
        if inbound_token is not None and not bearer_matches(request.headers, inbound_token):
            return reply(-1, "Authorization: a valid bearer token is required", 401)
        body = await _read_json(request, max_submission_bytes)
        if isinstance(body, UnreadableBody):
            return reply(-1, body.message, 413 if body.reason == "too_large" else 400)
        try:
            code, message = await intake.accept_pushed(body)
        except RetryableError as error:
            log.warning("public.submission_unavailable", reason=error.reason)
            return reply(-1, "temporarily unable to accept submissions; please send again later", 503)
        except Exception as error:  # noqa: BLE001 - the caller gets a well-formed answer, whatever broke
            log.error("public.submission_failed", error=type(error).__name__)
            return reply(-1, "internal error; please send again later", 503)
        return reply(code, message, 200 if code in (0, 1) else 400)

    async def notification(request: web.Request) -> web.StreamResponse:
        def reply(answer: dict[str, Any], status: int = 200) -> web.Response:
            metrics.public_requests.labels("payments", str(answer.get("MaLoi"))).inc()
            return web.json_response(answer, status=status, dumps=_dumps)

        if payments is None:
            return web.json_response({"MaLoi": "99", "MoTaLoi": "payments are not enabled"}, status=404)
        body = await _read_json(request, MAX_NOTIFICATION_BYTES)
        try:
            return reply(await payments.notification(body))
        except RetryableError as error:
            log.warning("public.notification_unavailable", reason=error.reason)
            return reply(payments.refusal(error.reason, "temporarily unable to record the result", body), 503)
        except Exception as error:  # noqa: BLE001 - the platform gets a well-formed answer, whatever broke
            log.error("public.notification_failed", error=type(error).__name__)
            return reply(payments.refusal("internal_error", "internal error", body), 503)

    app.router.add_post(submissions_path, submission)
    app.router.add_post(payments_path, notification)
    return app


async def start_public(app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
                       ) -> tuple[web.AppRunner, str]:
    """Serve the public app (over TLS with ``ssl_context``); port 0 picks a free one. Returns the runner and the
    base URL."""
    runner = app_runner(app)
    bound = await serve(runner, host, port, ssl_context=ssl_context)
    return runner, f"{'https' if ssl_context is not None else 'http'}://{host}:{bound}"


async def _read_json(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        return UnreadableBody("too_large", f"the body is over {limit} bytes")
    try:
        return parse_json(await read_body(request.content, limit))
    except BodyTooLarge:
        return UnreadableBody("too_large", f"the body is over {limit} bytes")
    except UnreadableJson as exc:
        return UnreadableBody(exc.reason, f"the body is not strict UTF-8 JSON: {exc}")
    except UnsafeText as exc:
        return UnreadableBody("invalid_text", f"{exc.field}: {exc.rule}")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


__all__ = ["LISTENER_LOG", "MAX_NOTIFICATION_BYTES", "PaymentNotifications", "SubmissionIntake", "app_runner",
           "create_public_app", "serve", "server_tls", "start_public"]
