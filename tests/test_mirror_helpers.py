"""Helpers shared by the mirror tests (no tests here): produce numbered events into a region,
read a central topic with read_committed, run the real ``geo-mirror`` process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import Sequence

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from harness.ports import free_port
from harness.process import spawn
from service_kit.wait import wait_until_async


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def grow_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=partitions)})
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, region: str, ids: Sequence[int],
                  partitions: int | None = None, headers: list[tuple[str, bytes]] | None = None,
                  rate: float | None = None, timestamp_ms: int | None = None) -> None:
    """Send events ``{region}-{i}`` keyed ``user-{i % 7}`` (or to partition ``i % partitions``),
    stamped ``timestamp_ms`` when given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = []
        for n, i in enumerate(ids):
            value = f'{{"id":"{region}-{i}","n":{i}}}'.encode()
            partition = None if partitions is None else i % partitions
            futures.append(await producer.send(topic, value, key=f"user-{i % 7}".encode(),
                                               partition=partition, timestamp_ms=timestamp_ms,
                                               headers=[("event-id", f"{region}-{i}".encode()),
                                                        *(headers or [])]))
            if rate and n % 100 == 99:
                await asyncio.sleep(100 / rate)  # kept: paces the load at ``rate`` events/s
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 60.0,
                   settle: float = 1.5) -> list:
    """Every committed record of ``topic`` once ``expect`` arrived (and ``settle`` s more, to see
    duplicates), or whatever arrived by ``timeout``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                metadata_max_age_ms=1000)
    await consumer.start()
    consumer.subscribe([topic])  # no group: every partition, new ones included
    got: list = []
    seen: set[tuple[int, int]] = set()  # a local reassignment re-reads from the start: skip re-reads

    async def read_more() -> bool:
        """One fetch (long-polls up to 300 ms); true once ``expect`` records arrived."""
        for records in (await consumer.getmany(timeout_ms=300)).values():
            for record in records:
                if (record.partition, record.offset) not in seen:
                    seen.add((record.partition, record.offset))
                    got.append(record)
        return len(got) >= expect

    try:
        deadline = time.monotonic() + timeout
        try:
            await wait_until_async(read_more, timeout, interval=0, what=f"{expect} records in {topic}")
        except TimeoutError:
            if time.monotonic() < deadline:
                raise  # not the wait's own timeout: an error of the fetch itself
            return got  # whatever arrived: the callers' assertions name what is missing
        # kept: the settle window is a duration by definition (records that would be duplicates
        # have no count to wait for); it ends at the overall deadline, as before
        settle_until = min(time.monotonic() + settle, deadline)
        while time.monotonic() < settle_until:
            await read_more()
    finally:
        await consumer.stop()
    return got


async def committed_position(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """The offset ``group`` committed for ``tp`` (an OffsetFetch; the group is never joined)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return None if meta is None or meta.offset < 0 else meta.offset


def ids_of(records: list) -> list[str]:
    return [dict(r.headers)["event-id"].decode() for r in records]


def start_mirror(log_path: Path, central: str, regions: dict[str, str], *extra: str,
                 admin_port: int | None = None) -> tuple[Popen[bytes], int]:
    """The real ``geo-mirror`` process; returns it and its admin port."""
    port = admin_port or free_port()
    argv = [str(Path(sys.executable).with_name("geo-mirror")), "--central", central,
            "--admin-port", str(port), "--refresh-interval", "1", "--session-timeout-ms", "6000",
            "--transaction-timeout-ms", "15000", *extra]
    for name, bootstrap in regions.items():
        argv += ["--region", f"{name}={bootstrap}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_MIRROR_")}
    return spawn(argv, log_path, env=env), port


def metric_value(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent or unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            continue
        total += float(value)
    return total
