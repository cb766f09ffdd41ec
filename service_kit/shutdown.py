"""Graceful shutdown: SIGTERM and SIGINT set an asyncio.Event that the service's main loop awaits."""

from __future__ import annotations

import asyncio
import logging
import signal

log = logging.getLogger(__name__)


def shutdown_event() -> asyncio.Event:
    """An event set on the first SIGTERM/SIGINT; a second signal exits at once."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if event.is_set():
            log.warning("second signal, exiting now", extra={"signal": sig.name})
            raise SystemExit(1)
        log.info("shutting down", extra={"signal": sig.name})
        event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return event
