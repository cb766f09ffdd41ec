"""Exponential backoff with jitter for retry loops."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` gives ``initial``, doubling up to ``maximum`` (±20 % jitter); ``reset()`` restarts."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self.maximum, self._current * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._current = self.initial
