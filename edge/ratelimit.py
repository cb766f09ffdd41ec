"""Token buckets per client (IP or write key) with a bounded table.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; a request takes one. The
table is an LRU dict capped at ``max_size`` entries: buckets idle long enough to be full again are
dropped first (a full bucket is the same as none), and when the table is still full the least
recently used bucket goes (that client merely gets a fresh burst). Memory is therefore bounded
whatever the number of distinct clients.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable


class TokenBuckets:
    """``take(client)`` → 0.0 when allowed, else seconds until the next token."""

    def __init__(self, rate: float, burst: int, max_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_size < 1:
            raise ValueError("rate > 0, burst >= 1 and max_size >= 1 required")
        self.rate = rate
        self.burst = float(burst)
        self.max_size = max_size
        self._full_after = burst / rate
        self._clock = clock
        self._buckets: OrderedDict[bytes, list[float]] = OrderedDict()  # client -> [tokens, last]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: bytes) -> float:
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            self._make_room(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        self._buckets.move_to_end(client)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _make_room(self, now: float) -> None:
        buckets = self._buckets
        for _ in range(8):  # amortised expiry of idle (full again) buckets, oldest first
            if not buckets:
                return
            oldest = buckets[next(iter(buckets))]
            if now - oldest[1] < self._full_after:
                break
            buckets.popitem(last=False)
        while len(buckets) >= self.max_size:
            buckets.popitem(last=False)


def retry_after(seconds: float) -> bytes:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return b"%d" % max(1, math.ceil(seconds))
