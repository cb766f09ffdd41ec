"""Coalescing records into Kafka batches ourselves: the hot path's alternative to one
``AIOKafkaProducer.send()`` per event.

``submit(records)`` (synchronous, no await) picks each record's partition (murmur2 of the key, as
Kafka's default partitioner, computed in C by ``murmurhash2`` and cached per key), appends it to the
open ``BatchBuilder`` of that partition and returns a ``Delivery`` whose future resolves to one
``Ack`` or ``EdgeError`` per record (or, given a callback, which is called with them from the
ack's own callback: the immediate ``/post`` answers that way). At the end of the event-loop iteration a feeder task per
partition hands the open batch to ``producer.send_batch()``; while aiokafka still holds an undrained
batch of that partition (one produce request in flight per broker), the open batch keeps taking
records, so each produce request carries everything that arrived during the previous one.
Offsets come from the batch's base offset plus the record's position.
Deadlines are checked by one sweeper every ``tick`` seconds (no timer per request).

Calls go one way: the sink (``edge.sink``) drives this class and reads its state, this class never
calls back into the sink. ``pending`` counts the records submitted whose delivery has not finished
(the sink's admission limit reads it); a failed or timed-out produce is recorded and signalled on
``failed``, which the sink's supervisor awaits beside its own timer (``take_failure``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

from aiokafka import AIOKafkaProducer
from murmurhash2 import murmurhash2

from edge import metrics
from edge.errors import EVENT_TOO_LARGE, KAFKA_TIMEOUT, KAFKA_UNAVAILABLE, EdgeError
from service_kit.aiokafka_internals import known_partitions

log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


KAFKA_MURMUR2_SEED = 0x9747B28C


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition index Kafka's default partitioner (Java client) gives ``key``."""
    return (murmurhash2(key, KAFKA_MURMUR2_SEED) & 0x7FFFFFFF) % partitions


class Ack(NamedTuple):
    """Where Kafka stored a record."""

    partition: int
    offset: int


class Delivery:
    """The outcome of one ``submit``: one ``Ack | EdgeError`` per record, handed to ``callback``
    when it was given, else set on ``future``."""

    __slots__ = ("results", "remaining", "future", "callback", "deadline")

    def __init__(self, count: int, future: asyncio.Future[list[Any]] | None,
                 callback: Callable[[list[Any]], None] | None, deadline: float) -> None:
        self.results: list[Any] = [None] * count
        self.remaining = count
        self.future = future
        self.callback = callback
        self.deadline = deadline


class _OpenBatch:
    __slots__ = ("builder", "entries")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.entries: list[tuple[Delivery, int]] = []  # position in the batch = relative offset


class BatchingProducer:
    """Per-partition batches built by the edge and submitted with ``send_batch``."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, timeout: float,
                 tick: float = 0.1, key_cache_size: int = 100_000) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout = timeout
        #: records submitted whose delivery has not finished (acknowledged, failed or timed out)
        self.pending = 0
        #: set when a produce failed or timed out; ``take_failure`` says why and clears it
        self.failed = asyncio.Event()
        self._failure: str | None = None
        self._tick = tick
        self._loop = asyncio.get_running_loop()
        # per partition: batches not yet handed to aiokafka, oldest first; only the last takes records
        self._queued: dict[int, collections.deque[_OpenBatch]] = {}
        self._feeders: dict[int, asyncio.Task[None]] = {}
        self._flush_scheduled = False
        self._deliveries: collections.deque[Delivery] = collections.deque()
        self._keys: dict[bytes, int] = {}
        self._key_cache_size = key_cache_size
        self._partitions: tuple[int, ...] = ()
        self.refresh_partitions()
        self._sweeper = asyncio.create_task(self._sweep(), name="produce-deadlines")

    def take_failure(self) -> str | None:
        """The last produce failure since the previous call (None: none), clearing ``failed``."""
        failure, self._failure = self._failure, None
        self.failed.clear()
        return failure

    def _report(self, failure: str) -> None:
        self._failure = failure
        self.failed.set()

    def refresh_partitions(self) -> None:
        parts = tuple(sorted(known_partitions(self.producer, self.topic)))
        if parts != self._partitions:
            self._partitions = parts
            self._keys.clear()

    def _partition(self, key: bytes | None) -> int:
        part = self._keys.get(key) if key is not None else None
        if part is None:
            parts = self._partitions
            if not parts:
                raise EdgeError(KAFKA_UNAVAILABLE, f"no partitions known for {self.topic}")
            part = parts[kafka_partition(key or b"", len(parts))]
            if key is not None:
                if len(self._keys) >= self._key_cache_size:
                    self._keys.clear()
                self._keys[key] = part
        return part

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, records: Sequence[Record], callback: Callable[[list[Any]], None] | None = None) -> Delivery:
        """Append ``records`` to the open batches; the returned delivery resolves after the acks:
        its ``future``, or, when ``callback`` is given, a call of it with the results (from the
        ack's own callback: no future and no further loop step)."""
        future = self._loop.create_future() if callback is None else None
        delivery = Delivery(len(records), future, callback, self._loop.time() + self.timeout)
        self._deliveries.append(delivery)
        self.pending += len(records)
        queued = self._queued
        for index, (key, value, headers) in enumerate(records):
            try:
                part = self._partition(key)
            except EdgeError as exc:
                self._resolve(delivery, index, exc)
                continue
            queue = queued.get(part)
            if queue is None:
                queue = queued[part] = collections.deque((_OpenBatch(self.producer.create_batch()),))
            batch = queue[-1]
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                batch = _OpenBatch(self.producer.create_batch())  # full: the next one queues behind it
                if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    self._resolve(delivery, index, EdgeError(EVENT_TOO_LARGE, "record larger than a batch"))
                    continue
                queue.append(batch)
            batch.entries.append((delivery, index))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return delivery

    def _flush(self) -> None:
        """End of a loop iteration: make sure every partition with records has a feeder."""
        self._flush_scheduled = False
        for part in self._queued:
            if part not in self._feeders:
                self._feeders[part] = asyncio.ensure_future(self._feed(part))

    async def _feed(self, part: int) -> None:
        """Hand the partition's batches to aiokafka in order. ``send_batch`` waits while the
        accumulator still holds an undrained batch of the partition; meanwhile the waiting batch
        keeps taking records, so every produce request carries all that arrived while the previous
        one was in flight. It leaves the queue in the step in which aiokafka takes it: no record
        joins a batch after that."""
        queue = self._queued[part]
        try:
            while queue:
                batch = queue[0]
                if not batch.entries:
                    queue.popleft()
                    continue
                started = time.perf_counter()
                try:
                    future = await self.producer.send_batch(batch.builder, self.topic, partition=part)
                except Exception as exc:  # accumulator closed or full beyond the timeout
                    queue.popleft()
                    self._fail(batch, exc)
                    continue
                queue.popleft()
                future.add_done_callback(partial(self._delivered, part, batch, started))
        finally:
            del self._feeders[part]
            if not queue and self._queued.get(part) is queue:
                del self._queued[part]

    # -- results ---------------------------------------------------------------------------------
    def _delivered(self, part: int, batch: _OpenBatch, started: float, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._fail(batch, future.exception() if not future.cancelled() else TimeoutError("cancelled"))
            return
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        md = future.result()
        base = md.offset if md is not None else -1
        resolve = self._resolve
        for rel, (delivery, index) in enumerate(batch.entries):
            resolve(delivery, index, Ack(part, base + rel if base >= 0 else -1))

    def _fail(self, batch: _OpenBatch, exc: BaseException | None) -> None:
        error = EdgeError(KAFKA_UNAVAILABLE, f"Kafka: {type(exc).__name__}")
        self._report(f"{type(exc).__name__}: {exc}")
        for delivery, index in batch.entries:
            self._resolve(delivery, index, error)

    def _resolve(self, delivery: Delivery, index: int, result: Any) -> None:
        if delivery.results[index] is not None:
            return  # already timed out
        delivery.results[index] = result
        delivery.remaining -= 1
        if delivery.remaining == 0:
            self._finish(delivery)

    def _finish(self, delivery: Delivery) -> None:
        if delivery.remaining >= 0:
            self.pending -= len(delivery.results)
            delivery.remaining = -1
        callback, delivery.callback = delivery.callback, None
        if callback is not None:
            try:
                callback(delivery.results)
            except Exception:  # the other records of the batch must still be resolved
                log.exception("delivery callback failed")
        future = delivery.future
        if future is not None and not future.done():
            future.set_result(delivery.results)

    async def _sweep(self) -> None:
        """Time out deliveries past their deadline (deadlines grow in submit order)."""
        deliveries = self._deliveries
        while True:
            await asyncio.sleep(self._tick)
            now = self._loop.time()
            expired = False
            while deliveries and (deliveries[0].remaining < 0 or deliveries[0].deadline <= now):
                delivery = deliveries.popleft()
                if delivery.remaining >= 0:
                    expired = True
                    error = EdgeError(KAFKA_TIMEOUT, f"no Kafka ack within {self.timeout}s")
                    delivery.results = [r if r is not None else error for r in delivery.results]
                    self._finish(delivery)
            if expired:
                self._report("produce timed out")

    async def close(self, timeout: float) -> None:
        """Hand over every open batch and wait (bounded) for their acks; what is still unacknowledged
        then resolves to a 503 error."""
        self._flush()
        if self._feeders:
            await asyncio.wait(list(self._feeders.values()), timeout=timeout)
        waiting = []
        for delivery in self._deliveries:
            if delivery.remaining >= 0:
                if delivery.future is None:  # a callback's delivery: close waits on a future too
                    delivery.future = self._loop.create_future()
                waiting.append(delivery.future)
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        self._sweeper.cancel()
        await asyncio.gather(self._sweeper, return_exceptions=True)
        error = EdgeError(KAFKA_UNAVAILABLE, "the Kafka producer was closed before the ack")
        for delivery in self._deliveries:  # nobody waits forever: unacknowledged means 503
            if delivery.remaining >= 0:
                delivery.results = [r if r is not None else error for r in delivery.results]
                self._finish(delivery)
        self._deliveries.clear()
