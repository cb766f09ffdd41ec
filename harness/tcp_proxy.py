"""A TCP forwarder that can be cut like a WAN link: ``cut()`` stalls every open connection and
accepts new ones without ever answering (a partition, not a refusal); ``restore()`` drops the
stalled connections (as a real link's TCP sessions would time out) and forwards again.

With a ``link`` (``harness/wan.py``) it is also a WAN of that shape: every chunk read is queued
and delivered when the link's schedule says (one-way delay, jitter, the bandwidth shared by all
connections of the link, loss-like stalls), by one sender task per connection and direction that
sleeps until the head chunk is due: delay is pipelined, so throughput is bandwidth-limited, not
one chunk per round trip. A direction stops reading while its queue holds more than
``Direction.queue_limit()`` bytes (backpressure, bounded memory) and reads again below half.
A cut stops both the readers and the senders; queued chunks die with the connections on restore.

Runs its own event loop (uvloop) in a daemon thread, named ``wan-proxy`` for the OS, so that
synchronous tests and the local stack can use it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import uvloop

from harness.ports import free_port
from harness.process import name_this_thread
from harness.wan import Direction, Link

#: the OS name of every proxy thread (benchmarks account its CPU apart from their own)
THREAD_NAME = "wan-proxy"


@dataclass
class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port``."""

    target_host: str
    target_port: int
    port: int = 0
    #: the WAN this proxy emulates (None: loopback, bytes pass as they come)
    link: Link | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _server: asyncio.base_events.Server | None = field(default=None, init=False, repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, init=False, repr=False)
    _open: asyncio.Event | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    connections: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._open is not None and not self._open.is_set()

    def start(self) -> "TcpProxy":
        ready = threading.Event()

        def run() -> None:
            name_this_thread(THREAD_NAME)
            self._loop = loop = uvloop.new_event_loop()
            try:
                loop.run_until_complete(self._serve(ready))
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"tcp-proxy-{self.port}")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"proxy on {self.port} did not start")
        return self

    def cut(self) -> None:
        """Partition: nothing passes any more, in either direction; no connection is refused."""
        self._call(self._open.clear)  # type: ignore[union-attr]

    def restore(self) -> None:
        """Heal the partition: stalled connections are reset, new ones are forwarded."""
        def heal() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            self._open.set()  # type: ignore[union-attr]
        self._call(heal)

    def stop(self) -> None:
        """Close the listener and every connection, and wait for the proxy's thread to end.

        Waiting matters: a process that exits right after (``make demo`` does) would otherwise
        finalise the interpreter while the daemon thread still runs uvloop — CI once saw the demo
        end with SIGSEGV after its summary."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            # the aborted connections' pipes end within a few iterations: let them, then stop
            loop.call_later(0.2, loop.stop)
        try:
            loop.call_soon_threadsafe(close)
        except RuntimeError:  # closed meanwhile
            return
        if thread is not threading.current_thread():
            thread.join(10)

    def _call(self, fn) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    async def _serve(self, ready: threading.Event) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        ready.set()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(client_w)
        await self._open.wait()  # type: ignore[union-attr]
        try:
            target_r, target_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.transport.abort()
            self._writers.discard(client_w)
            return
        self._writers.add(target_w)
        link = self.link if self.link is not None and not self.link.shape.is_loopback else None
        if link is None:
            pipes = (self._pipe(client_r, target_w), self._pipe(target_r, client_w))
        else:
            pipes = (self._shaped_pipe(client_r, target_w, link.to_target),
                     self._shaped_pipe(target_r, client_w, link.to_client))
        await asyncio.gather(*pipes, return_exceptions=True)
        for writer in (client_w, target_w):
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            await self._open.wait()  # type: ignore[union-attr]  # a cut link stalls, silently
            writer.write(data)
            await writer.drain()

    async def _shaped_pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           direction: Direction) -> None:
        """Read as fast as the queue allows; a sender task delivers each chunk when it is due."""
        queue: deque[tuple[float, bytes]] = deque()  # (due, chunk); b"" is the end of the stream
        queued = [0]
        limit = direction.queue_limit()
        wake, room = asyncio.Event(), asyncio.Event()
        room.set()
        opened = self._open
        assert opened is not None

        async def send() -> None:
            while True:
                if not queue:
                    wake.clear()
                    await wake.wait()
                    continue
                wait = queue[0][0] - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # later chunks are due later still: the head stays
                    continue
                await opened.wait()  # a cut link stalls, silently
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    chunk = queue.popleft()[1]
                    if not chunk:
                        writer.close()
                        return
                    writer.write(chunk)
                    queued[0] -= len(chunk)
                if queued[0] <= limit // 2:
                    room.set()
                await writer.drain()

        sender = asyncio.ensure_future(send())
        last = 0.0
        try:
            while not sender.done():  # a sender that failed (its peer reset) ends the pipe
                data = await reader.read(65536)
                await opened.wait()
                if data:
                    last = direction.due(len(data), last)
                    queued[0] += len(data)
                queue.append((last, data))
                wake.set()
                if not data:
                    break
                if queued[0] > limit:
                    room.clear()
                    waiter = asyncio.ensure_future(room.wait())
                    try:
                        await asyncio.wait([sender, waiter], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
            await sender
        finally:
            if not sender.done():
                sender.cancel()
            elif not sender.cancelled():
                sender.exception()  # seen: the connection is going down either way


@dataclass
class TcpProxyGroup:
    """The link to a cluster of several brokers: one ``TcpProxy`` per broker, cut and restored
    together (each broker advertises its own proxy)."""

    proxies: list[TcpProxy]

    @classmethod
    def to_ports(cls, ports: list[int], link: Link | None = None, host: str = "127.0.0.1") -> "TcpProxyGroup":
        """A proxy per target port, all on one ``link`` (its bandwidth shared by all of them)."""
        return cls([TcpProxy(host, p, link=link) for p in ports])

    @property
    def link(self) -> Link | None:
        return self.proxies[0].link if self.proxies else None

    @property
    def address(self) -> str:
        """Every proxy's address, comma separated (a bootstrap list)."""
        return ",".join(self.addresses)

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.proxies]

    @property
    def connections(self) -> int:
        return sum(p.connections for p in self.proxies)

    @property
    def is_cut(self) -> bool:
        return all(p.is_cut for p in self.proxies)

    def start(self) -> "TcpProxyGroup":
        for proxy in self.proxies:
            proxy.start()
        return self

    def cut(self) -> None:
        for proxy in self.proxies:
            proxy.cut()

    def restore(self) -> None:
        for proxy in self.proxies:
            proxy.restore()

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
