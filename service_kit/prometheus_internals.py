"""Every use of prometheus_client's non-public attributes, in one place (pinned: 0.26).

``Histogram.observe`` takes a lock per value; the edge and the mirror observe thousands of values
a second and add them per batch instead, writing the child's bucket and sum values (``_buckets``,
``_sum``, ``_upper_bounds``) the way ``observe`` does. ``tests/test_library_internals.py`` checks
through the public exposition that a batch written here reads exactly as the same values
observed one by one, so an upgrade that changes those attributes fails loudly.
"""

from __future__ import annotations

from typing import Any, Sequence

PINNED_SERIES = "0.26."


def upper_bounds(child: Any) -> Sequence[float]:
    """The bucket upper bounds of a histogram child (the last is +Inf)."""
    return child._upper_bounds  # noqa: SLF001


def add_counts(child: Any, counts: Sequence[int], total: float) -> None:
    """Add ``counts[i]`` observations to bucket ``i`` of histogram ``child`` (bucket order of its
    upper bounds) and ``total`` to its sum."""
    for bucket, count in zip(child._buckets, counts):  # noqa: SLF001
        if count:
            bucket.inc(count)
    child._sum.inc(total)  # noqa: SLF001
