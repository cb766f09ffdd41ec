"""Committed source positions, stored on the *central* cluster.

A position is the next source offset to copy, committed to the ``positions_group`` consumer group
keyed by the *target* topic-partition (the source topic does not exist centrally). In
exactly-once mode the commit rides in the data transaction (``send_offsets_to_transaction``);
in at-least-once mode it is a plain offset commit after the records are acknowledged. The group
is never joined: reads are OffsetFetch requests, so any number of workers share it.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition


class Positions:
    """Reads (and, at-least-once, commits) positions in the central ``group_id``."""

    def __init__(self, bootstrap: str, group_id: str, timeout_s: float = 15.0,
                 client_id: str = "geo-mirror-positions") -> None:
        self.group_id = group_id
        self._timeout = timeout_s
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                                          enable_auto_commit=False, client_id=client_id,
                                          request_timeout_ms=int(timeout_s * 1000))
        self._assigned: set[TopicPartition] = set()
        self._started = False

    async def start(self) -> None:
        await asyncio.wait_for(self._consumer.start(), self._timeout)
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await asyncio.wait_for(self._consumer.stop(), self._timeout)

    async def read(self, tp: TopicPartition) -> int | None:
        """The committed position of target partition ``tp``, None when never committed."""
        async with asyncio.timeout(self._timeout):
            return await self._consumer.committed(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit positions outside a transaction (at-least-once mode)."""
        new = set(offsets) - self._assigned
        if new:
            self._assigned |= new
            self._consumer.assign(sorted(self._assigned))
            self._consumer.pause(*self._assigned)   # never fetch: the assignment only allows commits
        async with asyncio.timeout(self._timeout):
            await self._consumer.commit(offsets)
