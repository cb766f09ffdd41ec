"""Every use of aiokafka's non-public attributes, in one place (pinned: aiokafka 0.14).

aiokafka has no public API for these; ``tests/test_library_internals.py`` drives each against a
real broker and fails loudly when an upgrade changes what is relied on here:

- ``producer._txn_manager.wait_for_pid()``: a transactional producer sends InitProducerId lazily,
  on its first transaction. The mirror needs it *now*: that request is the fencing step (it bumps
  the epoch, aborts a zombie's open transaction and waits for one that is committing), and the
  partition's position may only be read after it.
- ``consumer._coordinator._coordination_task``: joins, heartbeats and rebalance callbacks run in
  this one task; when it ends the consumer silently keeps its last assignment for ever.
- ``client.cluster.partitions_for_topic``: the partitions of a topic in a client's metadata,
  without the metadata request that ``partitions_for`` may send.
- ``admin._send_request`` and aiokafka's protocol structs: an OffsetFetch v7 with
  ``require_stable`` (KIP-447), which aiokafka (OffsetFetch v1-v3 only) cannot send. Without it a
  read of a position whose transaction has committed but whose markers the broker is still writing
  answers the *previous* position (or "never committed"); with it the broker answers
  UNSTABLE_OFFSET_COMMIT for that partition and the read is retried.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (Boolean, CompactArray, CompactString, Int16, Int32, Int64,
                                     Schema, TaggedFields)

PINNED_VERSION = "0.14.0"


async def wait_for_producer_id(producer: AIOKafkaProducer) -> None:
    """Block until the transactional ``producer`` holds its producer id and epoch (InitProducerId
    answered: any earlier producer with the same transactional id is fenced, its open transaction
    aborted, a committing one completed)."""
    await producer._txn_manager.wait_for_pid()  # noqa: SLF001


def coordination_ended(consumer: AIOKafkaConsumer) -> str | None:
    """Why the consumer's group coordination task has ended (``"cancelled"`` or the exception's
    repr), or None while it runs (or before the consumer joined a group)."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    if task is None or not task.done():
        return None
    return "cancelled" if task.cancelled() else repr(task.exception())


def known_partitions(producer: AIOKafkaProducer, topic: str) -> set[int]:
    """The partitions of ``topic`` in ``producer``'s current metadata (empty when unknown)."""
    return set(producer.client.cluster.partitions_for_topic(topic) or ())


async def refresh_metadata(producer: AIOKafkaProducer) -> None:
    """Ask for fresh metadata now (a topic created or grown a moment ago)."""
    await producer.client.force_metadata_update()


async def open_connection(host: str, port: int, **client_kwargs: object) -> None:
    """Open (and close) one connection as an aiokafka client would, TLS handshake and SASL
    authentication included, and let its error through: a client's own bootstrap only says
    "Unable to bootstrap", the reason (wrong password, unknown CA) goes to its log."""
    from aiokafka.conn import create_conn

    conn = await create_conn(host, port, request_timeout_ms=10000, **client_kwargs)  # type: ignore[arg-type]
    conn.close()


class _OffsetFetchResponseV7(Response):
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("metadata", CompactString("utf-8")),
                ("error_code", Int16),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequestV7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = _OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partition_indexes", CompactArray(Int32)),
            ("tags", TaggedFields),
        )),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class _StableOffsetFetch(Request[_OffsetFetchRequestV7]):
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[TopicPartition]) -> None:
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        self._args = (group_id, [(t, sorted(ps), {}) for t, ps in sorted(by_topic.items())], True, {})

    def build(self, request_struct_class: type[_OffsetFetchRequestV7]) -> _OffsetFetchRequestV7:
        return request_struct_class(*self._args)


async def fetch_stable_offsets(admin: AIOKafkaAdminClient, group_id: str,
                               partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The committed offsets of ``partitions`` in ``group_id`` (-1: never committed), read with
    ``require_stable``. A partition is left out of the answer when the broker could not give a
    stable one: a transactional commit of it not yet completed (UNSTABLE_OFFSET_COMMIT) or a
    group-level error (coordinator loading, moved, unavailable). Callers retry what is missing."""
    coordinator = await admin.find_coordinator(group_id)
    response = await admin._send_request(_StableOffsetFetch(group_id, partitions), coordinator)  # noqa: SLF001
    if response.error_code:
        return {}
    answer: dict[TopicPartition, int] = {}
    for topic, parts, _tags in response.topics:
        for index, offset, _epoch, _metadata, error_code, _ptags in parts:
            if not error_code:
                answer[TopicPartition(topic, index)] = offset
    return answer
