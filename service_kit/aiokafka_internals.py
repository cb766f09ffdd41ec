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
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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
