"""The Kafka side of the edge: one idempotent producer per worker, topic creation, connectivity
probing, and bounded produce (in-flight cap, deadlines). Event records go through
``edge.batching`` (batches built by the edge, ``send_batch`` per partition); dead letters through
plain ``send``."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from edge import metrics
from edge.batching import Ack, BatchingProducer, Record
from edge.config import EdgeConfig
from edge.errors import KAFKA_UNAVAILABLE, OVERLOADED, EdgeError
from service_kit.bounded import settle
from service_kit.kafka_security import explain

log = logging.getLogger(__name__)

__all__ = ["Ack", "KafkaSink", "Record"]


#: Errors after which aiokafka's idempotent producer never produces again.
FATAL_PRODUCER_ERRORS = ("OutOfOrderSequenceNumber", "UnknownProducerId", "InvalidProducerEpoch",
                         "ProducerFenced", "InvalidProducerIdMapping")


class KafkaSink:
    """Produces records and tracks whether Kafka is reachable.

    ``start()`` returns at once; a background task connects (retrying while Kafka is down), creates
    the topics if absent, and then probes connectivity every ``kafka_check_interval`` seconds.
    """

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.security = config.kafka_security()
        self.topic = config.topic
        self.timeout = config.produce_timeout
        self.max_pending = config.max_pending_events
        self.up = False
        self.last_error = "not connected yet"
        self.producer: AIOKafkaProducer | None = None
        self.batching: BatchingProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._replace_producer = False
        self._dlq_tasks: set[asyncio.Task[None]] = set()
        metrics.KAFKA_UP.set(0)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="kafka-supervisor")
        self._gauges = asyncio.create_task(self._publish_gauges(), name="edge-gauges")

    async def _publish_gauges(self, interval: float = 0.25) -> None:
        """Pending events and requests in flight, written to their gauges a few times a second
        (not per request: in multiprocess mode every gauge write is an mmap write)."""
        while True:
            metrics.PENDING_EVENTS.set(self.pending)
            metrics.IN_FLIGHT.set(metrics.LIVE.in_flight)
            metrics.flush_buffers()
            await asyncio.sleep(interval)

    @property
    def pending(self) -> int:
        """Events awaiting a Kafka ack in this worker (the current producer's)."""
        return self.batching.pending if self.batching is not None else 0

    async def stop(self) -> None:
        """Flush pending records (bounded) and close the producer."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.batching is not None:
            await self.batching.close(self.timeout)
        if self._gauges is not None:
            self._gauges.cancel()
            await asyncio.gather(self._gauges, return_exceptions=True)
        metrics.flush_buffers()
        if self._dlq_tasks:
            await asyncio.wait(self._dlq_tasks, timeout=self.timeout)
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.flush(), self.timeout)
            except (asyncio.TimeoutError, KafkaError) as exc:
                log.warning("flush at shutdown incomplete", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self.producer.stop(), self.timeout)
            except (asyncio.TimeoutError, KafkaError) as exc:
                log.warning("producer stop incomplete", extra={"error": repr(exc)})
        self._set_up(False, "stopped")

    def _set_up(self, up: bool, error: str = "") -> None:
        if up != self.up:
            log.info("kafka up" if up else "kafka down", extra={"error": error})
        elif not up and error != self.last_error and not self._stopping:
            log.error("kafka unreachable", extra={"error": error, **self.security.describe()})
        self.up = up
        self.last_error = error
        metrics.KAFKA_UP.set(1 if up else 0)

    def suspect(self, error: str) -> None:
        """A produce failed or timed out: report down until the next probe succeeds. After an
        error that breaks the idempotent producer for good (a broker restart can leave it with
        OutOfOrderSequenceNumber or UnknownProducerId; aiokafka cannot bump the epoch), the
        supervisor replaces the producer with a new one (a new producer id)."""
        self._set_up(False, error)
        if error.startswith(FATAL_PRODUCER_ERRORS):
            self._replace_producer = True
        self._wake.set()

    async def _supervise(self) -> None:
        interval = self.config.kafka_check_interval
        while not self._stopping:
            failure = self.batching.take_failure() if self.batching is not None else None
            if failure is not None:
                self.suspect(failure)
            try:
                if self._replace_producer:
                    await self._drop_producer()
                if self.producer is None:
                    await self._connect()
                else:
                    await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka down or misbehaving: keep trying
                if self.producer is None:  # not connected: say why (a wrong password, an unknown CA)
                    self._set_up(False, await explain(exc, self.config.kafka, self.security))
                else:
                    self._set_up(False, f"{type(exc).__name__}: {exc}")
            self._wake.clear()
            await self._pause(interval if self.up else min(interval, 0.5))

    async def _pause(self, seconds: float) -> None:
        """Until the next probe: ``seconds``, or less when woken (``suspect``, ``stop``) or when
        the batching producer reports a failed produce."""
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if self.batching is not None:
            waiters.append(asyncio.ensure_future(self.batching.failed.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _connect(self) -> None:
        c = self.config
        idempotent = c.acks == "all"
        producer = AIOKafkaProducer(
            bootstrap_servers=c.kafka, client_id=f"geo-edge-{c.node_id}",
            acks="all" if c.acks == "all" else int(c.acks), enable_idempotence=idempotent,
            compression_type=None if c.compression == "none" else c.compression,
            linger_ms=c.linger_ms, max_batch_size=c.batch_bytes,
            max_request_size=max(1 << 20, c.max_event_bytes + 64 * 1024),
            request_timeout_ms=int(max(c.produce_timeout * 2, 10) * 1000),
            retry_backoff_ms=100, metadata_max_age_ms=60000,
            **self.security.client_kwargs(),
        )
        try:
            await asyncio.wait_for(producer.start(), 10)
            await self._ensure_topics()
            await asyncio.wait_for(producer.partitions_for(self.topic), 10)
        except BaseException:
            await settle(producer.stop(), 5, "kafka producer stop")
            raise
        self.producer = producer
        self.batching = BatchingProducer(producer, self.topic, self.timeout)
        self._set_up(True)

    async def _drop_producer(self) -> None:
        """Retire a producer whose idempotence state is broken; ``_connect`` makes a new one.
        Records it still holds fail, and their requests have been answered 503 already."""
        self._replace_producer = False
        producer, batching = self.producer, self.batching
        self.producer, self.batching = None, None
        log.warning("replacing the Kafka producer", extra={"error": self.last_error})
        if batching is not None:
            await settle(batching.close(0.5), 2, "batching close")
        if producer is not None:
            await settle(producer.stop(), 5, "kafka producer stop")

    async def _ensure_topics(self) -> None:
        c = self.config
        wanted = [NewTopic(c.topic, c.topic_partitions, c.topic_replication)]
        if c.dead_letter_topic:
            wanted.append(NewTopic(c.dead_letter_topic, 1, c.topic_replication))
        admin = AIOKafkaAdminClient(bootstrap_servers=c.kafka, request_timeout_ms=10000,
                                    **self.security.client_kwargs())
        try:
            await asyncio.wait_for(admin.start(), 10)
            existing = set(await asyncio.wait_for(admin.list_topics(), 10))
            missing = [t for t in wanted if t.name not in existing]
            if missing:
                try:
                    await asyncio.wait_for(admin.create_topics(missing), 10)
                    log.info("created topics", extra={"topics": [t.name for t in missing]})
                except TopicAlreadyExistsError:
                    pass  # another worker or edge won the race
        finally:
            await settle(admin.close(), 5, "kafka admin close")

    async def _probe(self) -> None:
        assert self.producer is not None
        # the same budget as a produce: while a killed broker's partitions move (its session
        # expiring, maybe a new active controller) metadata can take as long as the acks do
        md = await asyncio.wait_for(self.producer.client.fetch_all_metadata(), self.timeout)
        if not md.available_partitions_for_topic(self.topic):
            raise KafkaError(f"no partition of {self.topic} has a leader")
        if self.batching is not None:
            self.batching.refresh_partitions()
        self._set_up(True)

    # -- producing -------------------------------------------------------------------------------
    def _admit(self, count: int) -> BatchingProducer:
        batching = self.batching
        if batching is None or not self.up:
            raise EdgeError(KAFKA_UNAVAILABLE, f"Kafka unavailable: {self.last_error}")
        if self.pending + count > self.max_pending:
            raise EdgeError(OVERLOADED, f"{self.pending} events already await a Kafka ack")
        return batching

    async def send_one(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Ack:
        """Produce one record and wait for its ack; ``EdgeError`` (503) on timeout or failure."""
        (result,) = await self._admit(1).submit(((key, value, headers),)).future
        if type(result) is not Ack:
            raise result
        return result

    def submit_one(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]],
                   callback: Callable[[list[Ack | EdgeError]], None]) -> None:
        """Produce one record without waiting: ``callback`` gets ``[Ack]`` or ``[EdgeError]``
        (within the produce timeout), called from the ack's own callback; ``EdgeError`` (503) at
        once when Kafka is down or the worker is overloaded."""
        self._admit(1).submit(((key, value, headers),), callback)

    async def send_many(self, records: Sequence[Record]) -> list[Ack | EdgeError]:
        """Produce all records and wait for their acks within the produce timeout.

        Returns one ``Ack`` or ``EdgeError`` per record, in order (partial success is possible).
        """
        batching = self._admit(len(records))
        return await batching.submit(records).future

    def dead_letter(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Send a rejected element to the dead-letter topic, without delaying the answer."""
        if not self.config.dead_letter_topic or self.producer is None or not self.up:
            if self.config.dead_letter_topic:
                metrics.DEAD_LETTERS.labels("dropped").inc()
            return
        task = asyncio.create_task(self._dead_letter(self.producer, value, headers))
        self._dlq_tasks.add(task)
        task.add_done_callback(self._dlq_tasks.discard)

    async def _dead_letter(self, producer: AIOKafkaProducer, value: bytes,
                           headers: list[tuple[str, bytes]]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                future = await producer.send(self.config.dead_letter_topic, value, headers=headers)
                await future
            metrics.DEAD_LETTERS.labels("sent").inc()
        except (TimeoutError, KafkaError):
            metrics.DEAD_LETTERS.labels("failed").inc()
