"""Percentiles of a benchmark's samples (nearest rank, as every bench here reports them)."""

from __future__ import annotations

from typing import Sequence


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of the already sorted, non-empty ``ordered``."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
