"""A WAN link in user space (this machine's kernel has no ``netem``): the schedule that
``harness/tcp_proxy.py`` delivers each chunk of a connection on.

A ``Link`` is one region's link to the centre, shared by every connection through it (all the
proxies of a ``TcpProxyGroup``: one per broker of the region), with one ``Direction`` each way.
A chunk (what one read of the proxy got, up to 64 KiB) of ``n`` bytes read at ``t``:

1. **bandwidth**: it is serialised onto its direction's pipe behind every byte already on it, by
   any connection of the link: it has left at ``max(t, pipe free) + n / bandwidth`` (a FIFO
   bottleneck, no burst allowance: a real pipe's line rate).
2. **delay and jitter**: it arrives ``rtt / 2 +- jitter`` (uniform) later;
3. **stall**: with probability ``stall_per_mille / 1000`` it arrives ``stall_ms`` later still, as a
   lost segment does when TCP retransmits it after its timeout;
4. **order**: never before the chunk before it on the same connection and direction, so jitter
   and stalls hold what follows (head-of-line, like TCP) and never reorder bytes.

Chunk schedules are computed under a lock: the proxies of one link run in their own threads.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from service_kit.link_shape import LinkShape


@dataclass
class Direction:
    """One way of a link: its pipe's clock and its counters."""

    shape: LinkShape
    rng: random.Random
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pipe_free: float = 0.0
    chunks: int = 0
    bytes: int = 0
    stalls: int = 0

    def due(self, size: int, after: float, now: float | None = None) -> float:
        """When a chunk of ``size`` bytes read now is delivered (``time.monotonic()``), no earlier
        than ``after`` (the previous chunk of its connection and direction)."""
        shape = self.shape
        now = time.monotonic() if now is None else now
        with self._lock:
            left = now
            if shape.bandwidth_mbit:
                left = max(now, self._pipe_free) + size / shape.bytes_per_s
                self._pipe_free = left
            delay = shape.one_way_s
            if shape.jitter_ms:
                delay += self.rng.uniform(-shape.jitter_ms, shape.jitter_ms) / 1000.0
            if shape.stall_per_mille and self.rng.random() * 1000.0 < shape.stall_per_mille:
                delay += shape.stall_ms / 1000.0
                self.stalls += 1
            self.chunks += 1
            self.bytes += size
        return max(left + delay, after)

    def queue_limit(self) -> int:
        """Bytes a connection may have in flight this way before the proxy stops reading it: twice
        what the link carries during one delay (so one connection can fill the pipe), at least
        1 MiB; 8 MiB on a link without a cap."""
        shape = self.shape
        if not shape.bandwidth_mbit:
            return 8 << 20
        in_flight = shape.bytes_per_s * (shape.one_way_s + shape.jitter_ms / 1000.0 + 0.01)
        return max(1 << 20, int(2 * in_flight))


@dataclass
class Link:
    """A region's link to the centre: ``to_target`` carries what the proxies' clients send (the
    mirror's requests, centre -> region), ``to_client`` what the targets answer (the brokers'
    fetch responses, region -> centre)."""

    shape: LinkShape
    seed: int | None = None
    to_target: Direction = field(init=False)
    to_client: Direction = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.to_target = Direction(self.shape, random.Random(rng.random()))
        self.to_client = Direction(self.shape, random.Random(rng.random()))

    @property
    def stalls(self) -> int:
        return self.to_target.stalls + self.to_client.stalls

    @property
    def chunks(self) -> int:
        return self.to_target.chunks + self.to_client.chunks
