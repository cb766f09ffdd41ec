"""Count a load run's events in the central Kafka cluster itself, as analysts' consumers see them
(``read_committed``): a mirror duplicate (one source record copied twice) must never appear;
a client retry after a lost answer shows as the same event id at two source positions.

A record's source position is read from the mirror's provenance headers, named by
:mod:`service_kit.contract`."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import orjson
from aiokafka import AIOKafkaConsumer

from service_kit.contract import FIELD_EVENT_ID, MIRROR_SOURCE_OFFSET, MIRROR_SOURCE_PARTITION, MIRROR_SOURCE_REGION
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity

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


def source_position(headers: Sequence[tuple[str, bytes]] | None) -> tuple[bytes, bytes, bytes]:
    """A central record's source (region, partition, offset) from the mirror's provenance headers
    (``b""`` for an absent one)."""
    found = dict(headers or ())
    return (found.get(MIRROR_SOURCE_REGION, b""), found.get(MIRROR_SOURCE_PARTITION, b""),
            found.get(MIRROR_SOURCE_OFFSET, b""))


class StreamTally:
    """Counts one run's records as they are read: event ids and source positions."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.records = 0
        self.sources: Counter[tuple[bytes, bytes, bytes]] = Counter()
        self.ids: Counter[str] = Counter()

    def add(self, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> None:
        """Count one central record (ignored unless it is a JSON object of this run)."""
        doc = _json(value)
        if doc is None or doc.get("run_id") != self.run_id:
            return
        self.records += 1
        self.ids[str(doc.get(FIELD_EVENT_ID))] += 1
        self.sources[source_position(headers)] += 1

    def audit(self) -> StreamAudit:
        mirror_dups = sum(n - 1 for n in self.sources.values() if n > 1)
        return StreamAudit(records=self.records, event_ids=len(self.ids), mirror_duplicates=mirror_dups,
                           retried_copies=self.records - len(self.ids) - mirror_dups)


async def audit_stream(bootstrap: str, run_id: str, timeout: float = 120.0,
                       security: KafkaSecurity = PLAINTEXT, since_ms: int | None = None) -> StreamAudit:
    """Read every ``<region>.events`` topic of the central cluster to its last stable offset;
    with ``since_ms``, from the first record stamped at or after it (a run's records carry the
    edge's receive time, which the mirror keeps): the fault suite audits one run after another
    on one stack, and reading from the beginning every time read all earlier runs again."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 << 20, **security.client_kwargs())
    await consumer.start()
    tally = StreamTally(run_id)
    try:
        async with asyncio.timeout(timeout):
            consumer.subscribe(pattern=EVENTS_TOPIC.pattern)  # no group: every partition
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            partitions = sorted(consumer.assignment())
            end = await consumer.end_offsets(partitions)
            if since_ms is None:
                await consumer.seek_to_beginning(*partitions)
            else:
                starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
                for tp, found in starts.items():
                    consumer.seek(tp, found.offset if found is not None else end[tp])
            remaining = {tp for tp in partitions if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for msgs in batch.values():
                    for msg in msgs:
                        tally.add(msg.value, msg.headers)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return tally.audit()


def _json(value: bytes | None) -> dict | None:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
