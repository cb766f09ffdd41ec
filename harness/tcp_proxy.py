"""A TCP forwarder that can be cut like a WAN link: ``cut()`` stalls every open connection and
accepts new ones without ever answering (a partition, not a refusal); ``restore()`` drops the
stalled connections (as a real link's TCP sessions would time out) and forwards again.

Runs its own event loop (uvloop) in a daemon thread, named ``wan-proxy`` for the OS, so that
synchronous tests and the local stack can use it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import uvloop

from harness.ports import free_port
from harness.process import name_this_thread

#: the OS name of every proxy thread (benchmarks account its CPU apart from their own)
THREAD_NAME = "wan-proxy"


@dataclass
class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port``."""

    target_host: str
    target_port: int
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _server: asyncio.base_events.Server | None = field(default=None, init=False, repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, init=False, repr=False)
    _open: asyncio.Event | None = field(default=None, init=False, repr=False)
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
            self._loop = uvloop.new_event_loop()
            self._loop.run_until_complete(self._serve(ready))
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name=f"tcp-proxy-{self.port}").start()
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
        if self._loop is None:
            return

        def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(close)

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
        await asyncio.gather(self._pipe(client_r, target_w), self._pipe(target_r, client_w),
                             return_exceptions=True)
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


@dataclass
class TcpProxyGroup:
    """The link to a cluster of several brokers: one ``TcpProxy`` per broker, cut and restored
    together (each broker advertises its own proxy)."""

    proxies: list[TcpProxy]

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
