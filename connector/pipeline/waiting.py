"""Waiting on events with a bound: how the long-running loops pause between rounds."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return once any of ``events`` is set, or after ``seconds``, whichever comes first."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


__all__ = ["wait_any"]
