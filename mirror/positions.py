"""Committed source positions, stored on the *central* cluster.

A position is the next source offset to copy, committed to the ``positions_group`` consumer group
keyed by the *target* topic-partition (the source topic does not exist centrally). In
exactly-once mode the commit rides in the data transaction (``send_offsets_to_transaction``);
in at-least-once mode it is a plain offset commit after the records are acknowledged. The group
is never joined: reads are OffsetFetch requests, so any number of workers share it.

A read must tell "never committed" (the partition in the answer with offset -1: copy from the
source's beginning) from "no answer" (the partition missing from it). The second is what a
group-level error looks like in OffsetFetch v2+: right after a central broker restart the group
coordinator is still loading and answers COORDINATOR_LOAD_IN_PROGRESS at the top level with no
partitions, and aiokafka's ``AIOKafkaConsumer.committed`` ignores that error and returns None.
Reading that as "never committed" sought the partition to its beginning and copied all of it again
(the 577 mirror duplicates of one central-outage fault run, ``docs/mirror.md``). So reads go
through the admin client's OffsetFetch and a missing partition is retried.

A second way to read a stale position: the transaction that carried a position has committed
(EndTxn answered) but the coordinator is still writing its markers, the offsets-topic marker
among them. Until that marker is in, an OffsetFetch without ``require_stable`` answers the last
*completed* commit — for a first commit, -1, "never committed" (CI saw it once in 250 reads, on
the first read after the commit). Reads therefore ask with ``require_stable`` (OffsetFetch v7,
KIP-447, ``service_kit.aiokafka_internals.fetch_stable_offsets``): the broker answers
UNSTABLE_OFFSET_COMMIT for such a partition, and that is retried like a missing one.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from service_kit.aiokafka_internals import fetch_stable_offsets
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity


class Positions:
    """Reads (and, at-least-once, commits) positions in the central ``group_id``."""

    def __init__(self, bootstrap: str, group_id: str, timeout_s: float = 15.0,
                 client_id: str = "geo-mirror-positions", security: KafkaSecurity = PLAINTEXT) -> None:
        self.group_id = group_id
        self._timeout = timeout_s
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                                          enable_auto_commit=False, client_id=client_id,
                                          request_timeout_ms=int(timeout_s * 1000),
                                          **security.client_kwargs())
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{client_id}-reader",
                                          request_timeout_ms=int(timeout_s * 1000),
                                          **security.client_kwargs())
        self._assigned: set[TopicPartition] = set()
        self._started = False

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._admin.start(), self._timeout)
            await asyncio.wait_for(self._consumer.start(), self._timeout)
        except BaseException:
            await self._close_clients()   # a half-started reader leaves no client open behind it
            raise
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._close_clients()

    async def _close_clients(self) -> None:
        try:
            await asyncio.wait_for(self._consumer.stop(), self._timeout)
        finally:
            await asyncio.wait_for(self._admin.close(), self._timeout)

    async def read(self, tp: TopicPartition, retry_s: float = 0.2) -> int | None:
        """The committed position of target partition ``tp``, None when never committed. An
        answer without a stable position for it (a group-level error, a transactional commit still
        completing) is retried until the timeout."""
        return (await self.read_many([tp], retry_s))[tp]

    async def read_many(self, tps: list[TopicPartition], retry_s: float = 0.2) -> dict[TopicPartition, int | None]:
        """:meth:`read` for several partitions in one request (a slot's); the partitions without a
        stable answer are asked again until every one has one, or the timeout."""
        found: dict[TopicPartition, int | None] = {}
        missing = list(dict.fromkeys(tps))
        async with asyncio.timeout(self._timeout):
            while True:
                answer = await fetch_stable_offsets(self._admin, self.group_id, missing)
                for tp in missing:
                    offset = answer.get(tp)
                    if offset is not None:
                        found[tp] = None if offset < 0 else offset
                missing = [tp for tp in missing if tp not in found]
                if not missing:
                    return found
                await asyncio.sleep(retry_s)  # a backoff between requests, not a wait for a condition

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit positions outside a transaction (at-least-once mode)."""
        new = set(offsets) - self._assigned
        if new:
            self._assigned |= new
            self._consumer.assign(sorted(self._assigned))
            self._consumer.pause(*self._assigned)   # never fetch: the assignment only allows commits
        async with asyncio.timeout(self._timeout):
            await self._consumer.commit(offsets)
