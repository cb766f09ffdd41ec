"""The HTTP/1.1 protocol of every public listener (the edge's and the geo router's): uvicorn's
httptools protocol with slow-client protection and one socket write per response.

Slow clients (``ConnectionLimits``, per worker process; the nginx setting each one resembles):

- ``header_timeout`` (``client_header_timeout``): a request's head must be complete this long
  after its first byte — for a connection's first request, after the connection was accepted
  (after the TLS handshake). Exceeded: ``408`` ``{"error": {"reason": "header_timeout"}}`` with
  ``Connection: close`` when some of the request had arrived; a connection that sent nothing is
  closed without an answer.
- ``body_timeout``: the whole body must have arrived this long after the head (a total, not a
  per-read timer: a client dripping a byte a second is cut off too). Exceeded: ``408``
  ``body_timeout`` and close; the application sees the client disconnect (nothing is stored).
  When the application has already answered (a 413 before the body ended), the connection is
  just closed.
- ``keepalive_timeout`` (``keepalive_timeout``): an idle connection between two requests is
  closed after this long (uvicorn's ``timeout_keep_alive``).
- ``max_connections`` (``worker_connections``): a connection accepted while the worker already
  holds this many is served exactly one answer — its request head is read, then ``503``
  ``{"error": {"reason": "too_many_connections"}}`` with ``Retry-After`` and ``Connection: close``
  — so that a client learns to come back later instead of seeing a reset. Connections below the
  limit are unaffected.

Every close for one of these reasons counts in ``geo_http_connections_closed_total{reason}``;
``geo_http_open_connections`` is the open connections of the process (all workers summed; each
worker writes its change at most every 0.1 s).

Write coalescing: uvicorn writes a response's head on ``http.response.start`` and its body on
``http.response.body``: two socket writes (two syscalls) per answer. Here the transport holds a
response head until the next write (the body, which follows in the same task step) and sends both
together; a head with nothing after it is sent at the end of the loop iteration, and before the
connection closes.

uvicorn internals used (pinned by ``tests/test_library_internals.py``): ``HttpToolsProtocol``'s
parser callbacks, ``connections``, ``cycle``, ``app``, ``transport``, ``loop``, ``pipeline``,
``timeout_keep_alive_handler``, ``timeout_keep_alive_task``, ``on_response_complete`` (replaced:
the keep-alive timer is lazy, see below) and ``_unset_keepalive_if_required`` (which uvicorn calls
at every read).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service_kit.direct_cycle import DirectCycle, ImmediateCycle

_IDLE, _HEADERS, _BODY = 0, 1, 2


@dataclass(frozen=True)
class ConnectionLimits:
    """Slow-client protection of one listener (see the module docstring); seconds."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 30.0
    max_connections: int = 10_000
    retry_after: int = 2

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


def add_arguments(parser: Any, env_prefix: str, defaults: ConnectionLimits = ConnectionLimits()) -> None:
    """``--header-timeout``, ``--body-timeout``, ``--keepalive-timeout``, ``--max-connections``
    (each also ``<env_prefix>_HEADER_TIMEOUT`` ...) on an ``EnvArgumentParser``."""
    a = parser.add_argument
    a("--header-timeout", env=f"{env_prefix}_HEADER_TIMEOUT", type=float, default=defaults.header_timeout,
      help="seconds from a request's first byte (a connection's first request: from the accept) until "
           "its headers are complete; then 408 header_timeout and close (no answer when nothing came)")
    a("--body-timeout", env=f"{env_prefix}_BODY_TIMEOUT", type=float, default=defaults.body_timeout,
      help="seconds from the end of a request's headers until its whole body has arrived; then 408 "
           "body_timeout and close")
    a("--keepalive-timeout", env=f"{env_prefix}_KEEPALIVE_TIMEOUT", type=float,
      default=defaults.keepalive_timeout, help="seconds an idle keep-alive connection stays open")
    a("--max-connections", env=f"{env_prefix}_MAX_CONNECTIONS", type=int, default=defaults.max_connections,
      help="open connections per worker; a connection beyond it gets one 503 too_many_connections "
           "(Retry-After, Connection: close)")


def limits_from_args(ns: Any, retry_after: int = 2) -> ConnectionLimits:
    return ConnectionLimits(header_timeout=ns.header_timeout, body_timeout=ns.body_timeout,
                            keepalive_timeout=ns.keepalive_timeout, max_connections=ns.max_connections,
                            retry_after=retry_after)


class ProtectedConfig(uvicorn.Config):
    """``uvicorn.Config`` serving ``GuardedHttpProtocol`` with ``limits``, TLS 1.2 at least when
    it serves TLS (picklable: uvicorn's worker processes receive it, and load it themselves)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits = ConnectionLimits(), **kwargs: Any) -> None:
        kwargs["http"] = GuardedHttpProtocol
        kwargs["timeout_keep_alive"] = limits.keepalive_timeout
        super().__init__(app, **kwargs)
        self.limits = limits

    def load(self) -> None:
        super().load()
        if isinstance(self.ssl, ssl.SSLContext):
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


@functools.cache
def _metrics() -> tuple[Any, Any]:
    """Created on first use, in the serving process (the edge's workers are spawned with the
    multi-process metrics directory already set)."""
    from prometheus_client import Counter, Gauge
    closed = Counter("geo_http_connections_closed_total",
                     "Connections the server closed to protect itself, by reason (header_timeout, "
                     "body_timeout, keepalive_timeout, too_many_connections)", ["reason"])
    open_ = Gauge("geo_http_open_connections", "Open HTTP connections (all workers)",
                  multiprocess_mode="livesum")
    return closed, open_


class _OpenConnections:
    """The process's open connections for ``geo_http_open_connections``. The gauge is a
    multi-process one (an mmap-backed value written under a lock), so it is written at most every
    ``PUBLISH_S`` with the net change, not at every open and close: with ``Connection: close``
    clients that was two writes per request."""

    PUBLISH_S = 0.1

    def __init__(self) -> None:
        self.count = 0
        self._published = 0
        self._scheduled = False

    def change(self, loop: asyncio.AbstractEventLoop, delta: int) -> None:
        self.count += delta
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(self.PUBLISH_S, self._publish)

    def _publish(self) -> None:
        self._scheduled = False
        if self.count != self._published:
            _metrics()[1].inc(self.count - self._published)
            self._published = self.count


_OPEN = _OpenConnections()


def _error_response(status: bytes, reason: str, detail: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": {"reason": reason, "detail": detail}})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"cache-control: no-store\r\n%sconnection: close\r\n\r\n" % (len(body), extra)) + body


class _CoalescingTransport:
    """A transport proxy that joins a held response head with the following write."""

    __slots__ = ("_transport", "_held", "_loop")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._loop = loop

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100"):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def write_whole(self, data: bytes) -> None:
        """A whole response (head and body): written at once, after anything held."""
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    # uvicorn calls these per request: explicit methods, not the (slow) __getattr__ fallback
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header/body timeouts, a connection limit and one socket write
    per response. The fast path (a whole request in one read) arms no timer: a timer is armed
    only when a read ends inside a request's head or body."""

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "limits", None) or ConnectionLimits()
        self._phase = _IDLE
        self._phase_since = 0.0
        self._request_bytes = False   # a byte of the current request has arrived
        self._timer: asyncio.TimerHandle | None = None
        self._over_limit = False
        self._counted = False
        self._idle_since: float | None = None  # when the last answer left an idle keep-alive connection
        #: the app's ``direct_endpoint(method, path, headers)`` (``service_kit.direct_cycle``), if any
        self._direct = getattr(self.app, "direct_endpoint", None)

    # -- connection --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self._over_limit = len(self.connections) >= self.limits.max_connections
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        _OPEN.change(self.loop, 1)
        self._counted = True
        self._phase, self._phase_since = _HEADERS, self.loop.time()  # waiting for the first request
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self._phase = _IDLE
        if self._counted:
            self._counted = False
            _OPEN.change(self.loop, -1)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase and self._timer is None and not self.transport.is_closing():
            self._arm()

    # -- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEADERS:  # a keep-alive or pipelined request: its own header time
            self._phase, self._phase_since = _HEADERS, self.loop.time()
        self._request_bytes = True

    def on_headers_complete(self) -> None:
        if self._over_limit:
            self._over_limit = False
            self.app = self._too_many_connections  # type: ignore[assignment]  # this request only
            self._phase, self._phase_since = _BODY, self.loop.time()
            try:
                super().on_headers_complete()
            finally:
                self.app = self.config.loaded_app
            return
        if self._direct is None or not self._start_direct():
            super().on_headers_complete()
        self._phase, self._phase_since = _BODY, self.loop.time()

    def _start_direct(self) -> bool:
        """Run the request through a ``DirectCycle`` when the app serves its route directly (the
        scope as uvicorn builds it); False leaves it to uvicorn's cycle."""
        parser = self.parser
        if parser.should_upgrade():
            return False
        method = parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            return False  # uvicorn's way unquotes; the event routes have plain paths
        endpoint = self._direct(method, self.root_path + path, self.headers)
        if endpoint is None:
            return False
        scope = self.scope
        http_version = parser.get_http_version()
        scope["method"] = method
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""
        scope["app"] = self.app
        transport = self.transport
        existing = self.cycle
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        idle = existing is None or existing.response_complete
        if idle and not self.expect_100_continue and not self.flow.write_paused \
                and endpoint.takes_immediately(self.headers):
            self.cycle = ImmediateCycle(  # type: ignore[assignment]
                scope, transport, transport.write_whole, endpoint, keep_alive,  # type: ignore[attr-defined]
                self.on_response_complete)
            return True
        self.cycle = cycle = DirectCycle(  # type: ignore[assignment]
            scope, transport, transport.write_whole, self.flow, self.loop,  # type: ignore[attr-defined]
            keep_alive=keep_alive, expect_100_continue=self.expect_100_continue, on_response=self.on_response_complete)
        if idle:
            self._start_asgi_task(cycle, endpoint)  # type: ignore[arg-type]
        else:  # pipelined behind a request still being answered, as uvicorn queues it
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, endpoint))  # type: ignore[arg-type]
        return True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _IDLE
        self._request_bytes = False

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            _metrics()[0].labels("keepalive_timeout").inc()
        super().timeout_keep_alive_handler()

    # -- keep-alive: one lazy timer per connection, not one per request ------------------------------
    # uvicorn cancels its keep-alive timer at every read and makes a new one after every answer
    # (a TimerHandle and two heap operations per request). Here an answer only notes when the
    # connection became idle; the timer, made once, checks that time when it fires and sleeps on
    # for what is left, or closes the connection. It fires at most once per keep-alive timeout.

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this at every read (and at the connection's loss): no longer idle."""
        self._idle_since = None

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self.transport.is_closing():
            return
        if self._phase != _IDLE or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is under way (its own timers run): its answer sets this timer again
        since = self._idle_since
        if since is None:  # bytes came that began no request (blank lines): idle from now on
            since = self._idle_since = self.loop.time()
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0.001:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()

    # -- timers ------------------------------------------------------------------------------------

    def _timeout(self) -> float:
        return self.limits.header_timeout if self._phase == _HEADERS else self.limits.body_timeout

    def _arm(self) -> None:
        delay = self._phase_since + self._timeout() - self.loop.time()
        self._timer = self.loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._phase or self.transport.is_closing():
            return
        if self.loop.time() - self._phase_since < self._timeout() - 0.001:
            self._arm()  # the phase began again since (a later request): wait for its own deadline
            return
        if self._phase == _HEADERS:
            self._expire("header_timeout", "the request's headers did not arrive within "
                         f"{self.limits.header_timeout:g} s", answer=self._request_bytes)
        else:
            answered = self.cycle is not None and self.cycle.response_started
            self._expire("body_timeout", f"the request's body did not arrive within "
                         f"{self.limits.body_timeout:g} s", answer=not answered)

    def _expire(self, reason: str, detail: str, answer: bool) -> None:
        _metrics()[0].labels(reason).inc()
        self._phase = _IDLE
        if self.cycle is not None:
            self.cycle.keep_alive = False
        if answer:
            self.transport.write(_error_response(b"408 Request Timeout", reason, detail))
        self.transport.close()

    async def _too_many_connections(self, scope: Any, receive: Any, send: Any) -> None:
        _metrics()[0].labels("too_many_connections").inc()
        body = orjson.dumps({"error": {"reason": "too_many_connections", "detail":
                             f"this server holds {self.limits.max_connections} connections: retry later"}})
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"), (b"retry-after", b"%d" % self.limits.retry_after),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
