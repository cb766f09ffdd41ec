"""The one shared wait-until helper: poll a condition until it holds, or fail naming what was awaited.

The services, the test harness, the benchmarks and the tests wait for a condition through these
two functions, not through fixed sleeps or hand-written polling loops. The module lives in
``service_kit`` because production code (``service_kit.admin``) uses it: the test harness depends
on ``service_kit``, never the other way round (``harness.process`` re-exports ``wait_until``).

Both check the predicate first (no wait when it already holds), then every ``interval`` seconds;
the predicate is checked once more after the deadline has passed before ``TimeoutError`` is
raised, so a condition that became true during the last interval is not missed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy; raise TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(_message(timeout, what))
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], Any | Awaitable[Any]], timeout: float,
                           interval: float = 0.1, what: str = "condition") -> None:
    """``wait_until`` for a running event loop: ``predicate`` may be a plain callable or return an
    awaitable (an ``async def`` function); the loop keeps running between polls."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(_message(timeout, what))
        await asyncio.sleep(interval)


def _message(timeout: float, what: str) -> str:
    return f"timed out after {timeout:g}s waiting for {what}"


__all__ = ["wait_until", "wait_until_async"]
