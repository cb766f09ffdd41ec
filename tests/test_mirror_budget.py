"""The central transaction budget (``mirror.budget``), on a clock the test moves."""

from __future__ import annotations

import pytest

from mirror.budget import TransactionBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_rounds_never_wait_and_busy_ones_space_to_the_rate() -> None:
    clock = Clock()
    budget = TransactionBudget(50, burst=5, clock=clock)
    assert budget.wait_s(2) == 0.0            # a burst after idling
    budget.spend(2)
    budget.spend(2)
    assert budget.wait_s(2) == pytest.approx(1 / 50)   # 1 token left, 2 needed
    clock.now += 1 / 50
    assert budget.wait_s(2) == 0.0
    budget.spend(2)
    started = 0
    for _ in range(500):                      # a busy worker: rounds of 2 transactions back to back
        clock.now += budget.wait_s(2)
        budget.spend(2)
        started += 2
    assert started / (clock.now - 100.0) == pytest.approx(50, rel=0.05)


def test_debt_is_paid_and_the_bucket_never_grows_past_its_burst() -> None:
    clock = Clock()
    budget = TransactionBudget(10, burst=2, clock=clock)
    budget.spend(5)                           # a round that touched more slots than it asked for
    assert budget.wait_s(1) == pytest.approx(0.4)
    clock.now += 3600
    assert budget.wait_s(3) == pytest.approx(0.1)


def test_no_bound_and_bad_rates() -> None:
    budget = TransactionBudget(0)
    budget.spend(1000)
    assert budget.wait_s(1000) == 0.0
    with pytest.raises(ValueError):
        TransactionBudget(-1)
