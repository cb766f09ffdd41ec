"""A lean request/response cycle for the routes an application serves directly.

uvicorn runs every request through its ``RequestResponseCycle``: an ``asyncio.Event`` per request,
a ``receive`` that waits on it even when the whole body is already there, a ``send`` that checks
every response header against two regular expressions and writes head and body separately. For
the event routes — our own endpoints, whose answers always carry ``content-length`` and headers
we wrote — that is most of the HTTP layer's Python time per request (``docs/edge.md``, "The HTTP
layer").

An application opts in with ``direct_endpoint(method, path, headers)``: the ASGI endpoint to run
for such a request, or None for the ordinary way (``service_kit.http_protocol`` asks it when a
request's head is complete). :class:`DirectCycle` then stands in for uvicorn's cycle with the
same attributes the protocol drives (``body``, ``more_body``, ``message_event``, ``keep_alive``,
``disconnected``, ``response_started``, ``response_complete``, ``run_asgi``), so pipelining, flow
control, disconnects, graceful shutdown and the slow-client timers work unchanged, and the
endpoint is the same ASGI callable Starlette routes to:

- ``receive`` answers at once when the body is complete (the common case: one read), otherwise
  waits on a plain future that the parser's callbacks resolve; ``Expect: 100-continue`` is
  answered before the first wait, as uvicorn does;
- ``send`` keeps the response head and writes it with the body in one ``transport.write``; the
  head is built from the endpoint's headers as given (``content-length`` required; no chunked
  answers on this path), ``connection: close`` added when the connection will close.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

log = logging.getLogger("uvicorn.error")

_CLOSE = b"connection: close\r\n"


class _Signal:
    """What uvicorn's protocol calls ``message_event``: ``set()`` wakes a waiting ``receive``."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self._waiter = waiter = loop.create_future()
        return waiter


class _Cycle:
    """What uvicorn's protocol reads and sets on any cycle, shared by the two kinds below."""

    __slots__ = ("scope", "transport", "write", "on_response", "message_event", "disconnected",
                 "keep_alive", "body", "more_body", "response_started", "response_complete")

    def __init__(self, scope: dict[str, Any], transport: asyncio.Transport, write: Callable[[bytes], None],
                 keep_alive: bool, on_response: Callable[[], None]) -> None:
        self.scope = scope
        self.transport = transport
        #: writes a whole response at once (past any write coalescing of the transport)
        self.write = write
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.response_started = False
        self.response_complete = False


class DirectCycle(_Cycle):
    """One request on a direct route (see the module docstring)."""

    __slots__ = ("flow", "loop", "waiting_for_100_continue", "_head", "_delivered")

    def __init__(self, scope: dict[str, Any], transport: asyncio.Transport, write: Callable[[bytes], None],
                 flow: Any, loop: asyncio.AbstractEventLoop, keep_alive: bool, expect_100_continue: bool,
                 on_response: Callable[[], None]) -> None:
        super().__init__(scope, transport, write, keep_alive, on_response)
        self.flow = flow
        self.loop = loop
        self.message_event = _Signal()
        self.waiting_for_100_continue = expect_100_continue
        self._head: bytes | None = None
        self._delivered = False  # the last body message (more_body False) was handed out

    async def run_asgi(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # as uvicorn: a 500 if nothing was sent yet, else close
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
                    (b"connection", b"close")]})
                await self.send({"type": "http.response.body", "body": b"Internal Server Error"})
            else:
                self.transport.close()
        else:
            if not self.response_complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            if self.more_body:
                self.flow.resume_reading()
                if not self.body:
                    await self.message_event.wait(self.loop)
            elif self._delivered:  # nothing more will come: wait for the disconnect (as uvicorn)
                await self.message_event.wait(self.loop)
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body.clear()
        more = self.more_body
        self._delivered = not more
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: dict[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {kind!r}.")
            self.response_started = True
            self.waiting_for_100_continue = False
            parts = [STATUS_LINE[message["status"]]]
            length = False
            for name, value in message.get("headers", ()):
                if name == b"content-length":
                    length = True
                elif name == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                    continue
                parts += (name, b": ", value, b"\r\n")
            if not length:
                raise RuntimeError("a direct route must answer with content-length")
            if not self.keep_alive:
                parts.append(_CLOSE)
            parts.append(b"\r\n")
            self._head = b"".join(parts)
            return
        if self.response_complete or kind != "http.response.body":
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after the response.")
        head, self._head = self._head, None
        body = message.get("body", b"")
        if self.scope["method"] == "HEAD":
            body = b""
        self.write(head + body if head is not None else body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


def _nothing() -> None:
    return None


class _Ignored:
    """A ``message_event`` that nothing waits on any more."""

    __slots__ = ()

    def set(self) -> None:
        return None


_IGNORED = _Ignored()


class ImmediateCycle(_Cycle):
    """One request on a direct route whose endpoint answers from callbacks, with no ASGI task.

    For a request whose whole body will be small and plain (the endpoint says so with
    ``takes_immediately(headers)``, before any body byte is read), the protocol collects the body
    in this cycle and, when the message is complete, calls ``endpoint.immediate(cycle)`` in the
    parser's callback. The endpoint answers with :meth:`respond` — at once (a rejected request)
    or from a later callback (the Kafka acknowledgement): no task, coroutine, future wait or ASGI
    message per request. It carries the attributes uvicorn's protocol drives on a cycle
    (``body``, ``more_body``, ``message_event``, ``keep_alive``, ``disconnected``,
    ``response_started``, ``response_complete``), so keep-alive, disconnects, SIGTERM drain (a
    connection with an unanswered cycle is closed after its answer) and the slow-client timers
    work as on the other cycles. The protocol takes this way only when nothing is pipelined ahead
    of the request, no ``Expect: 100-continue`` is pending and writing is not paused.
    """

    __slots__ = ("endpoint",)

    def __init__(self, scope: dict[str, Any], transport: asyncio.Transport, write: Callable[[bytes], None],
                 endpoint: Any, keep_alive: bool, on_response: Callable[[], None]) -> None:
        super().__init__(scope, transport, write, keep_alive, on_response)
        self.endpoint = endpoint
        self.message_event = self  # the protocol calls ``message_event.set()``: see :meth:`set`

    def set(self) -> None:
        """The protocol's signal after a body piece, at the message's end and at a disconnect:
        at the end of a complete message the endpoint runs (once)."""
        if self.more_body or self.disconnected or self.response_started:
            if self.disconnected and not self.response_started:
                self.message_event = _IGNORED  # no answer will come: end the self-reference
            return
        self.response_started = True  # from here the endpoint owns the answer
        try:
            self.endpoint.immediate(self)
        except BaseException as exc:  # as uvicorn: the endpoint failed, a 500 and close
            log.error("Exception in immediate endpoint\n", exc_info=exc)
            self.keep_alive = False
            self.respond(500, b"content-type: text/plain; charset=utf-8\r\n", b"Internal Server Error")

    def respond(self, status: int, headers: bytes, body: bytes) -> None:
        """Write the whole answer: ``status``, header lines (each ending in CRLF, without
        content-length and connection) and ``body``. Nothing is written once the client has gone;
        a second call is ignored."""
        if self.response_complete:
            return
        self.response_complete = True
        self.message_event = _IGNORED  # ends the self-reference: the cycle is freed at once, not by the GC
        if not self.disconnected and not self.transport.is_closing():
            close = b"" if self.keep_alive else _CLOSE
            self.write(b"%s%scontent-length: %d\r\n%s\r\n%s" % (STATUS_LINE[status], headers, len(body), close, body))
            if not self.keep_alive:
                self.transport.close()
        on_response, self.on_response = self.on_response, _nothing
        on_response()
