"""The adapter session: log in lazily, once for all concurrent callers, and again once on expiry.

Shaped like an httpx auth flow: the caller hands over "send this with a token" and the session decides
when a token has to be fetched. No lifetime is published for the token, so it is kept until the
adapter says it is expired; then one fresh login and one re-send, never a loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from connector.portal.errors import SessionExpired

T = TypeVar("T")

LoginCall = Callable[[], Awaitable[str]]


class PortalSession:
    def __init__(self, login: LoginCall) -> None:
        self._login = login
        self._token: str | None = None
        self._lock = asyncio.Lock()

    @property
    def token(self) -> str | None:
        return self._token

    async def login(self) -> str:
        """Log in now, whatever token is held (readiness checks, operator action)."""
        async with self._lock:
            self._token = await self._login()
            return self._token

    async def current_token(self) -> str:
        if self._token is not None:
            return self._token
        return await self._renew(stale=None)

    async def send(self, call: Callable[[str], Awaitable[T]]) -> T:
        """Run ``call(token)``; on SessionExpired log in again once and re-send once."""
        token = await self.current_token()
        try:
            return await call(token)
        except SessionExpired:
            token = await self._renew(stale=token)
        # A second SessionExpired propagates: the adapter refuses fresh tokens too.
        return await call(token)

    async def _renew(self, *, stale: str | None) -> str:
        async with self._lock:
            # Another caller may have logged in while we waited for the lock: use its token.
            if self._token is not None and self._token != stale:
                return self._token
            self._token = await self._login()
            return self._token


__all__ = ["LoginCall", "PortalSession"]
