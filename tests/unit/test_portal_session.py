"""The session flow: one login for concurrent callers, one re-login on expiry, never a loop."""

from __future__ import annotations

import asyncio

import pytest

from connector.portal.errors import LoginFailed, SessionExpired
from connector.portal.session import PortalSession


class CountingLogin:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)  # a real login yields to other tasks while it waits for the adapter
        return f"token-{self.calls}"


async def test_concurrent_callers_share_one_login() -> None:
    login = CountingLogin()
    session = PortalSession(login)

    async def echo(token: str) -> str:
        return token

    async with asyncio.timeout(5):
        tokens = await asyncio.gather(*(session.send(echo) for _ in range(10)))
    assert tokens == ["token-1"] * 10
    assert login.calls == 1


async def test_an_expired_session_is_renewed_once_and_the_call_resent() -> None:
    login = CountingLogin()
    session = PortalSession(login)
    seen: list[str] = []

    async def expires_once(token: str) -> str:
        seen.append(token)
        if token == "token-1":
            raise SessionExpired()
        return "done"

    assert await session.send(expires_once) == "done"
    assert seen == ["token-1", "token-2"]
    assert login.calls == 2


async def test_a_session_that_stays_expired_fails_after_one_relogin() -> None:
    login = CountingLogin()
    session = PortalSession(login)
    sends = 0

    async def always_expired(token: str) -> str:
        nonlocal sends
        sends += 1
        raise SessionExpired()

    with pytest.raises(SessionExpired):
        await session.send(always_expired)
    assert (login.calls, sends) == (2, 2)


async def test_a_token_renewed_by_another_caller_is_reused() -> None:
    login = CountingLogin()
    session = PortalSession(login)
    both_failed = asyncio.Barrier(2)

    async def first_token_expires(token: str) -> str:
        if token == "token-1":
            await both_failed.wait()  # both callers hold token-1 and fail before anyone renews
            raise SessionExpired()
        return token

    async with asyncio.timeout(5):
        results = await asyncio.gather(session.send(first_token_expires), session.send(first_token_expires))
    assert results == ["token-2", "token-2"]
    assert login.calls == 2


async def test_explicit_login_replaces_the_token() -> None:
    login = CountingLogin()
    session = PortalSession(login)
    assert await session.current_token() == "token-1"
    assert await session.login() == "token-2"
    assert session.token == "token-2"


async def test_a_failed_login_propagates() -> None:
    async def refused() -> str:
        raise LoginFailed("login refused")

    async def never_called(token: str) -> str:
        raise AssertionError("sent without a session")

    with pytest.raises(LoginFailed):
        await PortalSession(refused).send(never_called)
