"""What one copy round takes from the fetched records, per source partition (pure, no I/O).

A round consumes for a while (``getmany`` after ``getmany``). If a rebalance lands in the middle,
the assignment seeks each partition back to its central position and the fetcher returns, in the
*same* round, records the round already holds. Appending them again put the same source record
twice into one transaction: the hung-process duplicates of ``docs/mirror.md``. So a partition's
records in a round are kept strictly increasing in offset, and at copy time only those at or after
the partition's committed position are taken.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord


class RoundRecords:
    """The records of one round by source partition, each partition's offsets strictly increasing."""

    def __init__(self) -> None:
        self.by_partition: dict[TopicPartition, list[ConsumerRecord]] = {}
        self.count = 0
        #: records dropped because the round already held their offsets (re-fetched after a seek)
        self.refetched = 0

    def add(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> None:
        """Take a fetched chunk of ``tp`` (a chunk's own offsets increase, as aiokafka returns them)."""
        if not records:
            return
        held = self.by_partition.get(tp)
        if held is None:
            self.by_partition[tp] = list(records)
            self.count += len(records)
            return
        last = held[-1].offset
        if records[0].offset <= last:
            fresh = [record for record in records if record.offset > last]
            self.refetched += len(records) - len(fresh)
            records = fresh
        held.extend(records)
        self.count += len(records)

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[tuple[TopicPartition, list[ConsumerRecord]]]:
        return iter(self.by_partition.items())


def not_yet_copied(records: Sequence[ConsumerRecord], next_offset: int | None) -> Sequence[ConsumerRecord]:
    """``records`` from ``next_offset`` on: records fetched before a revocation and re-assignment
    of the partition (the consumer then seeks to the central position again) that a previous
    round already committed must not be copied twice."""
    if next_offset is None or not records or records[0].offset >= next_offset:
        return records
    return [record for record in records if record.offset >= next_offset]
