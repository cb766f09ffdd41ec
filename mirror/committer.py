"""Committers: write a round's converted records centrally and commit the source positions after
them. One interface, two guarantees:

- :class:`ExactlyOnceCommitter`: per transaction slot one transaction of the slot's producer (the
  one :mod:`mirror.assignments` fenced for it) holding the records of the slot's partitions *and*
  their next source offsets (``send_offsets_to_transaction`` into the positions group). Readers
  with ``read_committed`` see each source record exactly once.
- :class:`AtLeastOnceCommitter`: one idempotent producer for all; the positions are committed
  after every record is acknowledged. A crash between the two copies a round again.

A committer never touches partition state: it returns, per batch, None or the exception that
failed it, and the caller decides (rewind, repair, account).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, Sequence

from aiokafka import AIOKafkaProducer, TopicPartition

from mirror.central import Central, stop_producer
from mirror.convert import TargetRecord
from service_kit.aiokafka_internals import known_partitions, refresh_metadata


@dataclass
class PartitionBatch:
    """One source partition's share of a round."""

    source: TopicPartition
    target: TopicPartition
    records: list[TargetRecord]
    #: the source offset after the last record of the round (the position to commit)
    next_offset: int
    #: exactly once: the fenced transactional producer of the partition's slot (batches with the
    #: same producer commit in one transaction)
    producer: AIOKafkaProducer | None = None


class Committer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def commit(self, batches: Sequence[PartitionBatch]) -> list[BaseException | None]:
        """Write and commit ``batches``; per batch None (committed) or why it was not."""
        ...


class ExactlyOnceCommitter:
    """A transaction per producer (slot) holding all its batches; the slots of a round commit
    concurrently, and every batch of a slot shares its transaction's outcome."""

    def __init__(self, central: Central, timeout_s: float) -> None:
        self.central = central
        self.timeout_s = timeout_s

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None  # the producers are the assignments'

    async def commit(self, batches: Sequence[PartitionBatch]) -> list[BaseException | None]:
        slots: dict[int, list[PartitionBatch]] = {}   # the batches of each producer (slot)
        for batch in batches:
            if batch.producer is None:
                raise RuntimeError(f"{batch.source}: no transactional producer")
            slots.setdefault(id(batch.producer), []).append(batch)
        results = await asyncio.gather(*(self._transaction(group) for group in slots.values()),
                                       return_exceptions=True)
        failed = {key: r for key, r in zip(slots, results) if isinstance(r, BaseException)}
        return [failed.get(id(batch.producer)) for batch in batches]

    async def _transaction(self, batches: list[PartitionBatch]) -> None:
        producer = batches[0].producer
        assert producer is not None
        async with asyncio.timeout(self.timeout_s):
            for batch in batches:
                await ensure_partition_known(producer, batch.target)
            await producer.begin_transaction()
            futures = []
            for batch in batches:
                futures.extend(await send_records(producer, batch))
            # Every batch must be acknowledged *before* the commit: aiokafka commits a
            # transaction even when one of its batches failed for good (a refused or expired
            # batch only fails its own future), and the positions would then skip its records.
            # A failure here leaves the transaction open; the repair's fencing aborts it.
            await asyncio.gather(*futures)
            # The positions join the transaction only after the acks. Sent while the produce is
            # in flight, the AddOffsetsToTxn puts the transaction into a pending transition at
            # the coordinator just as the partition leader verifies the produce against it
            # (KIP-890): the produce is refused as NOT_ENOUGH_REPLICAS and retried after a
            # backoff, in ~1 of 10 transactions (docs/mirror.md, "Where a commit's time goes").
            await producer.send_offsets_to_transaction({b.target: b.next_offset for b in batches},
                                                       self.central.positions.group_id)
            await producer.commit_transaction()


class AtLeastOnceCommitter:
    """Every batch through one idempotent producer, then one plain commit of the positions."""

    def __init__(self, central: Central, timeout_s: float) -> None:
        self.central = central
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = await self.central.start_producer(None)

    async def stop(self) -> None:
        if self._producer is not None:
            await stop_producer(self._producer, self.timeout_s)
            self._producer = None

    async def commit(self, batches: Sequence[PartitionBatch]) -> list[BaseException | None]:
        producer = self._producer
        if producer is None:
            raise RuntimeError("at-least-once committer not started")
        try:
            async with asyncio.timeout(self.timeout_s):
                futures: list[asyncio.Future[object]] = []
                for batch in batches:
                    await ensure_partition_known(producer, batch.target)
                    futures.extend(await send_records(producer, batch))
                await asyncio.gather(*futures)
                if batches:
                    await self.central.positions.commit({b.target: b.next_offset for b in batches})
        except Exception as exc:  # noqa: BLE001 - every batch of the round rewinds
            return [exc] * len(batches)
        return [None] * len(batches)


async def send_records(producer: AIOKafkaProducer, batch: PartitionBatch) -> list[asyncio.Future[object]]:
    """Append the records to producer batches and hand them over; the futures of their acks."""
    topic, partition = batch.target.topic, batch.target.partition
    futures = []
    pending = producer.create_batch()
    for key, value, timestamp, headers in batch.records:
        if pending.append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
            futures.append(await producer.send_batch(pending, topic, partition=partition))
            pending = producer.create_batch()
            if pending.append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
                raise ValueError(f"a record of {batch.source} is too large for a batch")
    if pending.record_count():
        futures.append(await producer.send_batch(pending, topic, partition=partition))
    return futures


async def ensure_partition_known(producer: AIOKafkaProducer, tp: TopicPartition,
                                 attempts: int = 20) -> None:
    """Refresh the producer's metadata while the target partition is new to it."""
    for _ in range(attempts):
        if tp.partition in known_partitions(producer, tp.topic):
            return
        await refresh_metadata(producer)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"target partition {tp} not in central metadata")
