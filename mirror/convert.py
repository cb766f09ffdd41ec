"""Record conversion: fetched source records to the records written centrally (MirrorMaker 2's
``convertRecord``). Pure: no I/O, no clock, no state; the copy round and the tests call it alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from mirror.policy import H_MIRRORED_AT, H_OFFSET, H_PARTITION, H_REGION, H_TOPIC, is_mirrored_record


#: One record to append to the central target partition: ``(key, value, timestamp, headers)``.
#: A plain tuple, not a NamedTuple: one is built per copied record, and a NamedTuple's
#: constructor call cost ~4% of the exactly-once throughput in ``make bench-mirror``.
TargetRecord = tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]


@dataclass
class Converted:
    """One source partition's records of a round, ready for the committer."""

    records: list[TargetRecord] = field(default_factory=list)
    #: records not copied: they already carry provenance (a cycle)
    skipped: int = 0
    #: key + value bytes copied
    nbytes: int = 0


def convert(records: Sequence[ConsumerRecord], region: str, source: TopicPartition,
            mirrored_at_ms: int) -> Converted:
    """The central copies of ``records`` of ``source`` in ``region``: key, value, timestamp and
    headers kept, provenance headers appended; records that already went through a mirror are
    skipped (counted) so that a topology with a cycle cannot copy them round and round."""
    out = Converted()
    region_b = region.encode()
    topic_b = source.topic.encode()
    partition_b = str(source.partition).encode()
    mirrored_at = str(mirrored_at_ms).encode()
    append = out.records.append
    nbytes = 0
    for record in records:
        if is_mirrored_record(record.headers):
            out.skipped += 1
            continue
        append((record.key, record.value, record.timestamp, [
            *record.headers, (H_REGION, region_b), (H_TOPIC, topic_b), (H_PARTITION, partition_b),
            (H_OFFSET, str(record.offset).encode()), (H_MIRRORED_AT, mirrored_at)]))
        nbytes += len(record.key or b"") + len(record.value or b"")
    out.nbytes = nbytes
    return out
