"""The central transaction budget of one worker: how many transactions per second its regions'
rounds may start together.

A transaction costs the central broker several log writes whatever its size (transaction state,
a marker on every partition it touched, the offset commit; ~5 ms of broker CPU each on this
machine's C1-only JVMs). Rounds therefore do not wait for a fixed timer: a round that is due takes
from this bucket one token per transaction it will commit (one per slot it touched); while the
bucket is short it keeps collecting, so its records join this round instead of waiting for the
next one. Idle or light traffic never waits; a busy worker's rounds space themselves so that the
whole worker stays near ``rate`` transactions per second (MirrorMaker 2's exactly-once tasks
commit one transaction per poll, without a bound).

A token bucket that can go into debt: a round that needs more than the bucket holds waits for
the difference, and a round that touched more slots than it asked for pays afterwards.
"""

from __future__ import annotations

import time
from typing import Callable


class TransactionBudget:
    """``rate`` transactions per second (0: unlimited), up to ``burst`` at once after idling."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self, transactions: int) -> float:
        """Seconds until ``transactions`` can start (0: now)."""
        if not self.rate or transactions <= 0:
            return 0.0
        self._refill()
        wait = (transactions - self._tokens) / self.rate
        return wait if wait > 0.0005 else 0.0  # under half a millisecond: now

    def spend(self, transactions: int) -> None:
        """``transactions`` were started (the bucket may go into debt)."""
        if self.rate and transactions > 0:
            self._refill()
            self._tokens -= transactions
