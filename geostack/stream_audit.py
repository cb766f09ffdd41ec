"""Count a load run's events in the central Kafka cluster itself, as analysts' consumers see them
(``read_committed``): a mirror duplicate (one source record copied twice) must never appear;
a client retry after a lost answer shows as the same event id at two source positions."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer

EVENTS_TOPIC = re.compile(r"^[A-Za-z0-9_-]+\.events$")


@dataclass
class StreamAudit:
    """What the central stream holds for one run."""

    records: int
    event_ids: int
    mirror_duplicates: int        # the same source (region, partition, offset) more than once
    retried_copies: int           # extra copies of an event id from client retries (deduplicated downstream)

    def as_dict(self) -> dict[str, int]:
        return {"central_stream_records": self.records, "central_stream_event_ids": self.event_ids,
                "mirror_duplicates": self.mirror_duplicates, "client_retry_copies": self.retried_copies}


async def audit_stream(bootstrap: str, run_id: str, timeout: float = 120.0) -> StreamAudit:
    """Read every ``<region>.events`` topic of the central cluster to its last stable offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    sources: Counter[tuple[bytes, bytes, bytes]] = Counter()
    ids: Counter[str] = Counter()
    records = 0
    try:
        async with asyncio.timeout(timeout):
            consumer.subscribe(pattern=EVENTS_TOPIC.pattern)  # no group: every partition
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            partitions = sorted(consumer.assignment())
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            remaining = {tp for tp in partitions if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for msgs in batch.values():
                    for msg in msgs:
                        doc = _json(msg.value)
                        if doc is None or doc.get("run_id") != run_id:
                            continue
                        records += 1
                        headers = dict(msg.headers or ())
                        ids[str(doc.get("event_id"))] += 1
                        sources[(headers.get("mirror-source-region", b""),
                                 headers.get("mirror-source-partition", b""),
                                 headers.get("mirror-source-offset", b""))] += 1
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    mirror_dups = sum(n - 1 for n in sources.values() if n > 1)
    return StreamAudit(records=records, event_ids=len(ids), mirror_duplicates=mirror_dups,
                       retried_copies=records - len(ids) - mirror_dups)


def _json(value: bytes | None) -> dict | None:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
