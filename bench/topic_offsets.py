"""Kafka topics of the HTTP benchmarks: create one, count the records it holds (the sum of its end
offsets), and wait until that count stops moving. How a benchmark proves that a system's 200s were
events that reached Kafka."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service_kit.wait import wait_until


async def reader_at_end(bootstrap: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    """A started ``read_committed`` consumer of ``topic``'s partitions, positioned at their ends:
    it sees only what is committed from now on (a latency measurement's reader)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` (replication 1) unless it exists, from a running event loop."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic and not t["error_code"]
                  for p in t["partitions"])


async def _count(bootstrap: str, topic: str) -> int:
    partitions = await _partitions(bootstrap, topic)
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` (replication 1) unless it exists."""
    asyncio.run(ensure_topic(bootstrap, topic, partitions))


def record_count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` so far: the sum of its partitions' end offsets (0 if it has none)."""
    return asyncio.run(_count(bootstrap, topic))


def settled_count(bootstrap: str, topic: str, quiet: float = 1.0, timeout: float = 60.0) -> int:
    """``record_count`` once it has not changed for ``quiet`` seconds (in-flight produces landed)."""
    last = [record_count(bootstrap, topic), time.monotonic()]

    def settled() -> bool:
        now = record_count(bootstrap, topic)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
            return False
        return time.monotonic() - last[1] >= quiet

    wait_until(settled, timeout, interval=0.25, what=f"the record count of {topic} to settle")
    return int(last[0])
