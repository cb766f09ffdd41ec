"""Observing many values into a prometheus_client histogram at once."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any, Iterable


def observe_many(child: Any, values: Iterable[float]) -> None:
    """``child.observe(v)`` for every value, with one increment per bucket touched and one for
    the sum instead of a locked update per value (what ``Histogram.observe`` writes: the
    child's bucket counters and sum)."""
    bounds = child._upper_bounds
    counts: Counter[int] = Counter()
    total = 0.0
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
        total += value
    if not counts:
        return
    for index, count in counts.items():
        child._buckets[index].inc(count)
    child._sum.inc(total)
