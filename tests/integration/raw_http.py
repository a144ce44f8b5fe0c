"""One HTTP/1.1 request sent as raw bytes over a loopback socket, and its reply read back: for headers no HTTP
client will send (bytes that are not UTF-8, a bare carriage return). Every step is bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

STEP_SECONDS = 10.0


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(method: str, path: str, *, headers: list[bytes] | None = None, body: bytes = b"") -> bytes:
    """A request with ``headers`` as given (each ``b"Name: value"``), a Content-Length and ``Connection: close``."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *(headers or []),
             f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked_request_parts(method: str, path: str, body: bytes, *, chunk: int, headers: list[bytes] | None = None
                          ) -> list[bytes]:
    """A request whose body is sent with ``Transfer-Encoding: chunked``, ``chunk`` bytes a chunk; one part per
    chunk, for ``raw_request`` to write one at a time."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *(headers or []),
             b"Transfer-Encoding: chunked", b"Connection: close"]
    parts = [b"\r\n".join(lines) + b"\r\n\r\n"]
    parts += [b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk]) for i in range(0, len(body), chunk)]
    return [*parts, b"0\r\n\r\n"]


async def raw_request(port: int, request: bytes | list[bytes]) -> RawReply:
    """Send ``request`` (bytes, or parts written one after another) to 127.0.0.1:``port`` and read the whole
    reply. The reply is read while the request is still being written: a server may refuse a body before it
    has all of it."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP_SECONDS)
    parts = [request] if isinstance(request, bytes) else request

    async def send() -> None:
        with contextlib.suppress(ConnectionError):  # the server refused the rest, and said so
            for part in parts:
                writer.write(part)
                await asyncio.wait_for(writer.drain(), STEP_SECONDS)

    sending = asyncio.create_task(send())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_SECONDS)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), STEP_SECONDS)
        else:
            body = await asyncio.wait_for(reader.read(), STEP_SECONDS)
        return RawReply(int(status_line.split(" ", 2)[1]), headers, body)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await sending
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), STEP_SECONDS)
