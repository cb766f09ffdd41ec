"""The real ``geo-mirror`` process under faults: kill -9 and restart, two workers and one killed,
a regional outage and a central outage. The central ``read_committed`` view must hold every
produced event exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.process import kill, terminate
from service_kit.wait import wait_until, wait_until_async
from test_mirror_helpers import create_topic, ids_of, metric_value, produce, read_all, start_mirror

pytestmark = pytest.mark.slow


def _assert_exactly(records: list, expected: set[str]) -> None:
    ids = ids_of(records)
    dups = [i for i, n in Counter(ids).items() if n > 1]
    missing = expected - set(ids)
    assert not dups, f"{len(dups)} duplicated, e.g. {dups[:5]}"
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert len(ids) == len(expected)


async def _wait_metric(port: int, name: str, at_least: float, timeout: float,
                       labels: dict[str, str] | None = None) -> None:
    """Wait until the mirror on ``port`` reports ``name`` (``labels``) >= ``at_least``; the scrape
    runs in a thread, so a concurrent produce task keeps its pace."""
    async def reached() -> bool:
        return await asyncio.to_thread(metric_value, port, name, labels) >= at_least

    await wait_until_async(reached, timeout, interval=0.2,
                           what=f"{name}{labels or ''} >= {at_least:g} on :{port}")


async def _assigned(port: int) -> float:
    return await asyncio.to_thread(metric_value, port, "geo_mirror_assigned_partitions")


async def test_kill_9_and_restart_loses_and_duplicates_nothing(kafka_factory, tmp_path: Path) -> None:
    eu, central = await asyncio.to_thread(kafka_factory, 2, names=["eu", "central"])
    await create_topic(eu.bootstrap, "events", 6)
    total = 12000
    stream = asyncio.create_task(produce(eu.bootstrap, "events", "eu", range(total), rate=2000))
    mirror, port = start_mirror(tmp_path / "mirror1.log", central.bootstrap, {"eu": eu.bootstrap},
                                "--include", "events")
    try:
        await _wait_metric(port, "geo_mirror_records_total", 2000, 60, {"topic": "events"})
        kill(mirror)                                  # kill -9 in the middle of the stream
        assert not stream.done()
        mirror, port = start_mirror(tmp_path / "mirror2.log", central.bootstrap,
                                    {"eu": eu.bootstrap}, "--include", "events")
        await stream
        records = await read_all(central.bootstrap, "eu.events", total, timeout=90, settle=3)
        _assert_exactly(records, {f"eu-{i}" for i in range(total)})
    finally:
        terminate(mirror, 20)


async def test_two_workers_split_and_one_takes_over(kafka_factory, tmp_path: Path) -> None:
    eu, central = await asyncio.to_thread(kafka_factory, 2, names=["eu", "central"])
    await create_topic(eu.bootstrap, "events", 6)
    a, port_a = start_mirror(tmp_path / "a.log", central.bootstrap, {"eu": eu.bootstrap},
                             "--include", "events", "heartbeats")
    b, port_b = start_mirror(tmp_path / "b.log", central.bootstrap, {"eu": eu.bootstrap},
                             "--include", "events", "heartbeats")
    try:
        async def split() -> bool:                     # both hold a share of the 7 partitions
            share_a, share_b = await _assigned(port_a), await _assigned(port_b)
            return share_a > 0 and share_b > 0 and share_a + share_b == 7

        await wait_until_async(split, 60, interval=0.3, what="both workers holding a share of 7")
        total = 12000
        stream = asyncio.create_task(produce(eu.bootstrap, "events", "eu", range(total), rate=2000))
        await _wait_metric(port_a, "geo_mirror_records_total", 500, 60, {"topic": "events"})
        await _wait_metric(port_b, "geo_mirror_records_total", 500, 60, {"topic": "events"})
        kill(a)
        await stream
        async def taken_over() -> bool:
            return await _assigned(port_b) >= 7

        await wait_until_async(taken_over, 60, interval=0.3, what="the survivor holding all 7 partitions")
        records = await read_all(central.bootstrap, "eu.events", total, timeout=90, settle=3)
        _assert_exactly(records, {f"eu-{i}" for i in range(total)})
    finally:
        kill(a)
        terminate(b, 20)


async def test_region_outage_pauses_only_that_region(kafka_factory, tmp_path: Path) -> None:
    eu, us, central = await asyncio.to_thread(kafka_factory, 3, names=["eu", "us", "central"])
    for region in (eu, us):
        await create_topic(region.bootstrap, "events", 3)
    mirror, port = start_mirror(tmp_path / "mirror.log", central.bootstrap,
                                {"eu": eu.bootstrap, "us": us.bootstrap}, "--include", "events")
    try:
        await produce(eu.bootstrap, "events", "eu", range(500))
        await produce(us.bootstrap, "events", "us", range(500))
        await _wait_metric(port, "geo_mirror_records_total", 500, 60, {"region": "us"})

        await asyncio.to_thread(us.stop)                                    # region us goes dark
        await produce(eu.bootstrap, "events", "eu", range(500, 1500))
        records = await read_all(central.bootstrap, "eu.events", 1500, timeout=60, settle=0)
        assert len(records) >= 1500, "eu stalled while us was down"
        await asyncio.to_thread(wait_until, lambda: metric_value(
            port, "geo_mirror_region_up", {"region": "us"}) == 0 and metric_value(
            port, "geo_mirror_region_up", {"region": "eu"}) == 1, 60, what="us marked down")

        await asyncio.to_thread(us.start)                                   # and comes back
        await produce(us.bootstrap, "events", "us", range(500, 1000))
        records = await read_all(central.bootstrap, "us.events", 1000, timeout=90, settle=2)
        _assert_exactly(records, {f"us-{i}" for i in range(1000)})
        assert metric_value(port, "geo_mirror_region_up", {"region": "us"}) == 1

        await asyncio.to_thread(central.stop)                               # the central cluster goes down: all pause
        started = time.monotonic()
        await produce(eu.bootstrap, "events", "eu", range(1500, 2500))
        # kept: the central outage lasts at least 5 s by definition (no condition to wait for)
        await asyncio.sleep(max(0.0, 5 - (time.monotonic() - started)))
        await asyncio.to_thread(central.start)
        records = await read_all(central.bootstrap, "eu.events", 2500, timeout=120, settle=3)
        _assert_exactly(records, {f"eu-{i}" for i in range(2500)})
    finally:
        terminate(mirror, 20)
