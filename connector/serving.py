"""Serving an aiohttp app on a listener: the one way the admin, public and simulator apps are started."""

from __future__ import annotations

from aiohttp import web


async def serve(runner: web.AppRunner, host: str, port: int) -> int:
    """Set ``runner`` up and listen on ``host:port`` (0: a free port); return the port bound. Nothing is left
    half-started when the listener cannot be opened."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return bound


__all__ = ["serve"]
