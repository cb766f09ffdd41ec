"""Writing many observations into a prometheus_client histogram child at once: one increment per
bucket touched and one for the sum, instead of a locked update per value. Uses the child's bucket
and sum values, the same ones ``Histogram.observe`` writes."""

from __future__ import annotations

import bisect
from typing import Any, Iterable, Sequence


def add_counts(child: Any, counts: Sequence[int], total: float) -> None:
    """Add ``counts[i]`` observations to bucket ``i`` of ``child`` (bucket order of its upper
    bounds) and ``total`` to its sum."""
    for bucket, count in zip(child._buckets, counts):
        if count:
            bucket.inc(count)
    child._sum.inc(total)


def observe_many(child: Any, values: Iterable[float]) -> None:
    """``child.observe(v)`` for every value."""
    bounds = child._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
        total += value
    if any(counts):
        add_counts(child, counts, total)
