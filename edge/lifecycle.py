"""Process lifecycle shared by the app and the server: the draining flag and pre-shutdown hooks.

On SIGTERM the server sets ``draining`` (``/status`` turns 503), waits ``drain_delay``, runs the
pre-shutdown hooks (e.g. a Consul deregistration added later), then stops accepting connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

PreShutdownHook = Callable[[], Awaitable[None]]


class Lifecycle:
    """Draining state and the async hooks to run before the listener closes."""

    def __init__(self, drain_delay: float = 0.0, hook_timeout: float = 10.0) -> None:
        self.draining = False
        self.drain_delay = drain_delay
        self.hook_timeout = hook_timeout
        self.pre_shutdown_hooks: list[PreShutdownHook] = []

    def add_pre_shutdown_hook(self, hook: PreShutdownHook) -> None:
        """Register ``hook`` to run (bounded by ``hook_timeout``) after draining starts."""
        self.pre_shutdown_hooks.append(hook)

    async def drain(self) -> None:
        """Mark draining, wait the drain delay, run the hooks (their failures are logged)."""
        from edge import metrics  # not at import: the supervisor process has no metrics of its own

        self.draining = True
        metrics.DRAINING.set(1)
        log.info("draining", extra={"drain_delay": self.drain_delay})
        if self.drain_delay > 0:
            await asyncio.sleep(self.drain_delay)
        for hook in self.pre_shutdown_hooks:
            try:
                await asyncio.wait_for(hook(), self.hook_timeout)
            except Exception:
                log.exception("pre-shutdown hook failed", extra={"hook": repr(hook)})


_current: Lifecycle | None = None


def register(lifecycle: Lifecycle) -> None:
    """Make ``lifecycle`` the one the server drains on SIGTERM (one app per worker process)."""
    global _current
    _current = lifecycle


def current() -> Lifecycle | None:
    return _current
