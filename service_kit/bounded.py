"""Shutdown steps that cannot hang: a client's close runs as its own task and is abandoned when
it overruns (``asyncio.wait_for`` would wait forever for a coroutine that swallows its
cancellation, as Kafka clients sometimes do when a broker is gone)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable

log = logging.getLogger(__name__)


async def settle(awaitable: Awaitable[Any], timeout: float, what: str) -> bool:
    """Await ``awaitable`` for at most ``timeout`` seconds; True when it finished without error.
    An overrunning one is cancelled and left behind; errors are logged, never raised (a
    cancellation of the caller still propagates)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        log.warning("gave up waiting", extra={"step": what, "timeout": timeout})
        return False
    if task.cancelled():
        return False
    exc = task.exception()
    if exc is not None:
        log.debug("step failed", extra={"step": what, "error": repr(exc)})
        return False
    return True
