"""The adapter session: log in lazily, once for all concurrent callers, and again once on expiry.

Shaped like an httpx auth flow: the caller hands over "send this with a token" and the session decides
when a token has to be fetched. No lifetime is published for the token, so it is kept until the
adapter says it is expired; then one fresh login and one re-send, never a loop.

A refused login (``LoginFailed``: wrong credentials) is remembered for ``REFUSED_LOGIN_HOLD_SECONDS``: every
caller meanwhile gets that refusal again without a new attempt, so retry loops and probes cannot lock the
account. After the hold the next caller tries again (the password file may have been fixed).

The session also remembers how its last login or call ended (``last_outcome``): readiness reads that, and
never calls the adapter itself. A record's own refusal counts as an answer (the adapter is up); an error
that every call would meet (``affects_every_record``) is the outcome until something succeeds again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from connector.errors import SyncError
from connector.portal.errors import LoginFailed, SessionExpired

T = TypeVar("T")

LoginCall = Callable[[], Awaitable[str]]
REFUSED_LOGIN_HOLD_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    """How the last login or call ended: ``error`` is "" when it went through, else "Class (reason)"."""

    step: Literal["login", "call"]
    error: str
    at: float  # the session's clock (monotonic seconds)

    @property
    def ok(self) -> bool:
        return not self.error


class PortalSession:
    def __init__(self, login: LoginCall, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._login = login
        self._clock = clock
        self._token: str | None = None
        self._lock = asyncio.Lock()
        self._refused: tuple[LoginFailed, float] | None = None  # the refusal, and until when it holds
        self._last: Outcome | None = None
        self._known = asyncio.Event()  # set once a login or call has ended

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def last_outcome(self) -> Outcome | None:
        """How the last login or call ended; None before any has."""
        return self._last

    async def outcome_known(self) -> None:
        """Returns once a login or call has ended, however it ended (``last_outcome`` is set from then on)."""
        await self._known.wait()

    def readiness(self) -> str | None:
        """"ok" once a login or call went through and nothing failed since; the last error's "Class (reason)"
        otherwise; None while nothing is known yet. Reads state only."""
        if self._last is None:
            return None
        return "ok" if self._last.ok else self._last.error

    async def login(self) -> str:
        """Log in now, whatever token is held (operator action); a refusal is held as for any login."""
        async with self._lock:
            self._token = await self._fresh_login()
            return self._token

    async def current_token(self) -> str:
        if self._token is not None:
            return self._token
        return await self._renew(stale=None)

    async def send(self, call: Callable[[str], Awaitable[T]]) -> T:
        """Run ``call(token)``; on SessionExpired log in again once and re-send once."""
        token = await self.current_token()
        try:
            return await self._noted(call, token)
        except SessionExpired:
            token = await self._renew(stale=token)
        # A second SessionExpired propagates: the adapter refuses fresh tokens too.
        return await self._noted(call, token)

    async def _noted(self, call: Callable[[str], Awaitable[T]], token: str) -> T:
        try:
            result = await call(token)
        except SyncError as error:
            self._note("call", "" if not error.affects_every_record else _named(error))
            raise
        self._note("call", "")
        return result

    async def _renew(self, *, stale: str | None) -> str:
        async with self._lock:
            # Another caller may have logged in while we waited for the lock: use its token.
            if self._token is not None and self._token != stale:
                return self._token
            self._token = await self._fresh_login()
            return self._token

    async def _fresh_login(self) -> str:
        """One login (the lock held), unless a refusal is still held: then that refusal again."""
        if self._refused is not None:
            refusal, until = self._refused
            if self._clock() < until:
                # A fresh error each time: callers' retry loops write their attempt counts on it.
                held = LoginFailed(refusal.message, reason=refusal.reason)
                held.quotes_remote_text = refusal.quotes_remote_text
                raise held
            self._refused = None
        try:
            token = await self._login()
        except LoginFailed as error:
            self._refused = (error, self._clock() + REFUSED_LOGIN_HOLD_SECONDS)
            self._note("login", _named(error))
            raise
        except SyncError as error:
            self._note("login", _named(error))
            raise
        self._note("login", "")
        return token

    def _note(self, step: Literal["login", "call"], error: str) -> None:
        self._last = Outcome(step, error, self._clock())
        self._known.set()


def _named(error: SyncError) -> str:
    # The class and the reason only: readiness answers without a token, and a message may quote the far side.
    return f"{type(error).__name__} ({error.reason})"


__all__ = ["REFUSED_LOGIN_HOLD_SECONDS", "LoginCall", "Outcome", "PortalSession"]
