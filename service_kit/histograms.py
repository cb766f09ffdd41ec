"""Writing many observations into a prometheus_client histogram child at once: one increment per
bucket touched and one for the sum, instead of a locked update per value (the bucket and sum
values are reached through :mod:`service_kit.prometheus_internals`)."""

from __future__ import annotations

import bisect
from typing import Any, Iterable

from service_kit.prometheus_internals import add_counts, upper_bounds

__all__ = ["add_counts", "observe_many"]


def observe_many(child: Any, values: Iterable[float]) -> None:
    """``child.observe(v)`` for every value."""
    bounds = upper_bounds(child)
    counts = [0] * len(bounds)
    total = 0.0
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
        total += value
    if any(counts):
        add_counts(child, counts, total)
