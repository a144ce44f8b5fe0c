"""The session flow: one login for concurrent callers, one re-login on expiry, never a loop."""

from __future__ import annotations

import asyncio

import pytest

from connector.portal.errors import LoginFailed, SessionExpired
from connector.portal.session import REFUSED_LOGIN_HOLD_SECONDS, PortalSession


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


# --- what the session knows of the adapter, for readiness (never asking it) ---------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_last_outcome_is_unknown_until_a_login_or_call_ends() -> None:
    session = PortalSession(CountingLogin())
    assert session.last_outcome is None
    assert session.readiness() is None

    async def echo(token: str) -> str:
        return token

    await session.send(echo)
    assert session.last_outcome is not None and session.last_outcome.ok
    assert session.readiness() == "ok"


async def test_readiness_names_the_last_error_until_something_succeeds_again() -> None:
    from connector.portal.errors import PortalRejected, PortalUnavailable

    session = PortalSession(CountingLogin())
    failing = True

    async def flaky(token: str) -> str:
        if failing:
            raise PortalUnavailable("connection refused", reason="network")
        return token

    with pytest.raises(PortalUnavailable):
        await session.send(flaky)
    assert session.readiness() == "PortalUnavailable (network)"
    assert session.last_outcome is not None and session.last_outcome.step == "call"

    async def refused_record(token: str) -> str:
        raise PortalRejected("data[0].GhiChu: too long", error_code="-1")

    # The adapter answered, refusing one record: it is up.
    with pytest.raises(PortalRejected):
        await session.send(refused_record)
    assert session.readiness() == "ok"
    with pytest.raises(PortalUnavailable):
        await session.send(flaky)
    failing = False
    await session.send(flaky)
    assert session.readiness() == "ok"


async def test_a_refused_login_is_the_readiness_and_is_not_tried_again_for_a_while() -> None:
    clock = Clock()
    attempts = 0

    async def refused() -> str:
        nonlocal attempts
        attempts += 1
        raise LoginFailed("login refused")

    async def never_called(token: str) -> str:
        raise AssertionError("sent without a session")

    session = PortalSession(refused, clock=clock)
    for _ in range(20):  # a retry loop, a probe every second...
        with pytest.raises(LoginFailed):
            await session.send(never_called)
        clock.now += 1
    assert attempts == 1  # ...meets the remembered refusal: one login, no account lockout
    assert session.readiness() == "LoginFailed (login_failed)"
    assert session.last_outcome is not None and session.last_outcome.step == "login"
    clock.now += REFUSED_LOGIN_HOLD_SECONDS
    with pytest.raises(LoginFailed):
        await session.send(never_called)
    assert attempts == 2  # the hold is over: the password (file) may have been fixed


async def test_an_explicit_login_is_held_back_after_a_refusal_too() -> None:
    clock = Clock()
    calls = 0

    async def refused_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise LoginFailed("login refused")
        return "token"

    session = PortalSession(refused_once, clock=clock)
    with pytest.raises(LoginFailed):
        await session.login()
    with pytest.raises(LoginFailed):
        await session.login()
    assert calls == 1
    clock.now += REFUSED_LOGIN_HOLD_SECONDS
    assert await session.login() == "token"
    assert session.readiness() == "ok"
