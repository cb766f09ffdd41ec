"""The smallest ASGI app that answers ``POST /post`` as the edge does, without Kafka or validation.

``make bench-edge`` serves it with the edge's uvicorn settings and the same wrk script: its rate is
the ceiling that uvicorn (httptools, uvloop) and the load generator leave on this machine for any
app, the yardstick for the edge's single-event figure.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

_BODY = b'{"status":"ok","partition":0,"offset":0}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY)),
            (b"cache-control", b"no-store")]


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Read the request body, answer the edge's acknowledgement shape."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
