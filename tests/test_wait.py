"""The shared wait-until helper (``service_kit.wait``): sync and async, plain and awaitable predicates."""

from __future__ import annotations

import asyncio
import time

import pytest

import harness.process
from service_kit.wait import wait_until, wait_until_async


class Countdown:
    """A condition that becomes true on the ``polls``-th check; counts the checks."""

    def __init__(self, polls: int) -> None:
        self.polls, self.checks = polls, 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks >= self.polls


def test_returns_once_the_condition_holds_after_a_few_polls() -> None:
    ready = Countdown(4)
    started = time.monotonic()
    wait_until(ready, 10, interval=0.01, what="the fourth check")
    assert ready.checks == 4  # not polled again once true
    assert time.monotonic() - started < 5


def test_a_condition_that_already_holds_returns_without_sleeping() -> None:
    ready = Countdown(1)
    started = time.monotonic()
    wait_until(ready, 10, interval=5, what="at once")
    assert ready.checks == 1 and time.monotonic() - started < 1


def test_timeout_raises_naming_what_was_awaited() -> None:
    never = Countdown(10**9)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="the unicorn to arrive"):
        wait_until(never, 0.3, interval=0.05, what="the unicorn to arrive")
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3
    assert never.checks >= 3  # it kept polling until the deadline, and checked once past it


def test_harness_process_re_exports_the_shared_helper() -> None:
    assert harness.process.wait_until is wait_until


async def test_async_with_a_plain_callable() -> None:
    ready = Countdown(3)
    await wait_until_async(ready, 10, interval=0.01, what="the third check")
    assert ready.checks == 3


async def test_async_with_an_awaitable_predicate_lets_the_loop_run() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, done.set)  # needs the loop to run between polls
    checks = 0

    async def is_done() -> bool:
        nonlocal checks
        checks += 1
        await asyncio.sleep(0)
        return done.is_set()

    await wait_until_async(is_done, 10, interval=0.01, what="the event")
    assert done.is_set() and checks >= 2


async def test_async_lambda_returning_a_coroutine() -> None:
    ready = Countdown(2)

    async def check() -> bool:
        return ready()

    await wait_until_async(lambda: check(), 10, interval=0.01, what="the second check")
    assert ready.checks == 2


async def test_async_timeout_raises_naming_what_was_awaited() -> None:
    async def never() -> bool:
        return False

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0\.2s waiting for the awaited thing"):
        await wait_until_async(never, 0.2, interval=0.05, what="the awaited thing")
    assert 0.2 <= time.monotonic() - started < 3


async def test_async_predicate_errors_propagate() -> None:
    async def broken() -> bool:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await wait_until_async(broken, 10, what="never reached")
