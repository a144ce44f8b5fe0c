"""Serving an aiohttp app on a listener: the one way the admin, public and simulator apps are started."""

from __future__ import annotations

import logging
import ssl
import sys
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from connector.config import ConfigError

log = structlog.get_logger(__name__)


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


__all__ = ["LISTENER_LOG", "app_runner", "serve", "server_tls"]
