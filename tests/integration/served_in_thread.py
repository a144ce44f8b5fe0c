"""An async app served from an event loop of its own thread, so that synchronous code (hypothesis tests)
can drive it over real HTTP on loopback. Every call on the loop and every request is bounded."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Coroutine
from typing import Any

CALL_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0


class ServedInThread:
    """Subclasses set up in ``_start`` (on the loop; it sets ``self.port``) and tear down in ``_close``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=CALL_TIMEOUT)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    def stop(self) -> None:
        try:
            self.call(self._close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(HTTP_TIMEOUT)
            self.loop.close()

    def post_json(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST ``body`` as it is; the status and the reply, which must be JSON."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            connection.request("POST", path, body=body,
                               headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError
