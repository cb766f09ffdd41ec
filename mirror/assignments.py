"""Who owns which source partition, and the only owner of slot and partition state.

The source consumer group hands out partitions, whole transaction slots at a time
(``mirror.slots``); this class receives the rebalance callbacks and keeps, per assigned slot, its
:class:`SlotState` (the fenced transactional producer, exactly once) and per assigned partition
its :class:`PartitionState`: the target partition, the next source offset to copy and whether it
is ready. Copy rounds run inside :meth:`Assignments.round`, which holds the lock that the
callbacks and the repairs take too: a rebalance waits for the round's transactions, and a round
never sees a state half-way through an assignment.

Fencing (exactly once). A slot's producer lives for exactly one assignment of it: every
assignment and every repair starts a *new* producer with the slot's deterministic transactional
id and waits for its InitProducerId before reading the central positions of the slot's
partitions. That one request is what makes the positions safe to read:

- it bumps the id's epoch, so a zombie (another worker, or this one before a rebalance) can no
  longer write or commit with the old producer — for any partition of the slot;
- it aborts the open transaction of the previous producer, if any;
- it waits (CONCURRENT_TRANSACTIONS, retried) while a transaction of the previous producer is
  still committing. ``commit_transaction`` returns when the coordinator has *prepared* the commit;
  the markers, and with them the transaction's offset commit in the positions group, are written
  afterwards. After InitProducerId the commit is complete and the positions are the true ones
  (the reads also ask with ``require_stable``: ``mirror.positions``).

An earlier version kept a partition's producer across rebalances to save the restart; after a
rebalance it read the position without fencing and hit exactly that window (``docs/mirror.md``,
"Hung processes"). Slots replaced a producer per partition (a transaction per partition per
round) so that a round is one transaction per slot.

A transaction fenced by another producer means somebody else took the slot over: this worker is
the zombie. Its repair waits a session timeout before fencing back, so that the group has told
it (by a revocation) that the slot is gone. A failed transaction stops its whole slot: every
partition of it is paused until the repair has fenced, re-read and sought.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced

from mirror.backoff import Backoff
from mirror.central import Central, stop_producer
from mirror.config import MirrorConfig
from mirror.metrics import MirrorMetrics
from mirror.slots import slot_of, transactional_id

log = logging.getLogger(__name__)
FENCED = (ProducerFenced, InvalidProducerEpoch)


@dataclass(eq=False)
class SlotState:
    """One transaction slot of this worker's assignment (``mirror.slots``): its fenced producer
    and the slot's partitions that were assigned with it."""

    slot: int
    partitions: dict[TopicPartition, "PartitionState"] = field(default_factory=dict)
    producer: AIOKafkaProducer | None = None
    ready: bool = False
    repair: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(eq=False)
class PartitionState:
    """What the flow knows about one assigned source partition (one assignment of it)."""

    source: TopicPartition
    target: TopicPartition
    slot: SlotState
    #: the next source offset to copy (the central position), None while never committed
    next_offset: int | None = None
    ready: bool = False

    @property
    def producer(self) -> AIOKafkaProducer | None:
        """The slot's fenced transactional producer (exactly once)."""
        return self.slot.producer


class Assignments:
    """The rebalance listener's target, the slot and partition states and their repairs."""

    def __init__(self, region: str, config: MirrorConfig, central: Central, metrics: MirrorMetrics,
                 consumer: AIOKafkaConsumer) -> None:
        self.region = region
        self.cfg = config
        self.central = central
        self.metrics = metrics
        self.consumer = consumer
        self._parts: dict[TopicPartition, PartitionState] = {}
        self._slots: dict[int, SlotState] = {}
        self._lock = asyncio.Lock()
        #: partitions of an assignment that waits for the lock (a round is in flight)
        self.pending: frozenset[TopicPartition] = frozenset()

    # ----------------------------------------------------------------- reading
    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._parts

    def partitions(self) -> list[TopicPartition]:
        return sorted(self._parts)

    def slots(self) -> list[int]:
        return sorted(self._slots)

    def states(self) -> list[PartitionState]:
        return list(self._parts.values())

    def ready(self, tp: TopicPartition) -> PartitionState | None:
        """The partition's state when it can be copied now (initialised, its slot not under
        repair)."""
        state = self._parts.get(tp)
        if state is None or not state.ready or not state.slot.ready \
                or (self.cfg.exactly_once and state.slot.producer is None):
            return None
        return state

    @asynccontextmanager
    async def round(self) -> AsyncIterator["Assignments"]:
        """Hold the partition states still for one copy round."""
        async with self._lock:
            yield self

    # ----------------------------------------------------------------- rebalance callbacks
    async def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """``assigned`` is the whole new assignment: every earlier partition state goes (aiokafka
        0.14 does not always revoke first: when the subscription changes while this callback
        runs, the next revocation names the assignment *before* this one, so partitions handed
        out here would otherwise stay as if still owned)."""
        self.pending = frozenset(assigned)
        async with self._lock:
            self.pending = frozenset()
            await self._forget(list(self._parts))
            await self._grow_targets(assigned)
            for tp in set(assigned):
                number = slot_of(tp.topic, tp.partition, self.cfg.slots_per_region)
                slot = self._slots.setdefault(number, SlotState(number))
                slot.partitions[tp] = self._parts[tp] = PartitionState(tp, TopicPartition(
                    self.cfg.policy.target_topic(self.region, tp.topic), tp.partition), slot)
            slots = list(self._slots.values())
            results = await asyncio.gather(*(self._initialise(s) for s in slots), return_exceptions=True)
            for slot, result in zip(slots, results):
                if isinstance(result, BaseException):
                    self._error("partition_init")
                    log.warning("slot init failed", extra={
                        "region": self.region, "slot": slot.slot, "error": repr(result)})
                    self._start_repair(slot, result)
            self._gauges()
            log.info("partitions assigned", extra={"region": self.region, "partitions": len(self._parts),
                                                   "slots": sorted(self._slots)})

    async def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        if not any(tp in self._parts for tp in revoked):
            return  # nothing of ours: no round to wait for (the first join revokes nothing)
        async with self._lock:  # waits for the round in flight
            await self._forget(revoked)
            self._gauges()

    # ----------------------------------------------------------------- outcomes of a round
    def committed(self, state: PartitionState, next_offset: int) -> None:
        """The round's records up to ``next_offset`` are committed centrally."""
        if self._parts.get(state.source) is state:
            state.next_offset = next_offset

    def failed(self, state: PartitionState, error: BaseException) -> None:
        """The round's transaction (or batch) for ``state`` failed: its slot stops until a repair
        has fenced, re-read the slot's positions and sought there."""
        if self._parts.get(state.source) is state and self._slots.get(state.slot.slot) is state.slot:
            self._start_repair(state.slot, error)

    async def reseek(self, tps: Iterable[object]) -> int:
        """Seek ready partitions to what is known of them again (a fetch lost its position);
        returns how many were sought."""
        sought = 0
        for tp in tps:
            state = self._parts.get(tp) if isinstance(tp, TopicPartition) else None
            if state is None or not state.ready:
                continue  # its initialisation (or repair) will seek
            if state.next_offset is None:
                await self.consumer.seek_to_beginning(state.source)
            else:
                self.consumer.seek(state.source, state.next_offset)
            sought += 1
        return sought

    async def close(self) -> None:
        """Drop every state, cancel the repairs, stop the producers."""
        async with self._lock:
            await self._forget(list(self._parts))
        self._gauges()

    # ----------------------------------------------------------------- internals
    async def _forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop the partitions' states and lag series; a slot left without partitions goes with
        its repair and its producer."""
        producers = []
        for tp in tps:
            state = self._parts.pop(tp, None)
            if state is None:
                continue
            state.ready = False
            slot = state.slot
            slot.partitions.pop(tp, None)
            if not slot.partitions and self._slots.get(slot.slot) is slot:
                del self._slots[slot.slot]
                slot.ready = False
                if slot.repair is not None:
                    slot.repair.cancel()
                if slot.producer is not None:
                    producers.append(slot.producer)
                    slot.producer = None
            try:
                self.metrics.records_behind.remove(self.region, tp.topic, str(tp.partition))
            except KeyError:
                pass
        # No transaction is open (rounds finish under the lock): a stop is quick unless the central
        # cluster hangs, and the new owner fences whatever is left anyway.
        timeout = min(5.0, self.cfg.operation_timeout_s)
        await asyncio.gather(*(stop_producer(p, timeout) for p in producers))

    async def _grow_targets(self, assigned: Iterable[TopicPartition]) -> None:
        needed: dict[str, int] = {}
        for tp in assigned:
            target = self.cfg.policy.target_topic(self.region, tp.topic)
            needed[target] = max(needed.get(target, 0), tp.partition + 1)
        for target, count in needed.items():
            if self.central.topics.partitions(target) < count:
                try:
                    await self.central.topics.ensure(target, count)
                except Exception as exc:  # noqa: BLE001 - the partition's repair retries
                    log.warning("cannot grow target topic", extra={"topic": target, "error": repr(exc)})

    async def _initialise(self, slot: SlotState) -> None:
        """Fence (exactly once: a new producer with the slot's id, InitProducerId answered), then
        read the positions of the slot's partitions, seek to them and resume. The order is the
        guarantee (see the module docstring)."""
        slot.ready = False
        for state in slot.partitions.values():
            state.ready = False
        if self.cfg.exactly_once:
            if slot.producer is not None:
                old, slot.producer = slot.producer, None
                await stop_producer(old, 2.0)
            slot.producer = await self.central.start_producer(
                transactional_id(self.cfg.transactional_id_prefix, self.region, slot.slot))
        states = list(slot.partitions.values())
        positions = await self.central.positions.read_many([s.target for s in states])
        if self._slots.get(slot.slot) is not slot:
            return
        assignment = self.consumer.assignment()
        for state in states:
            if slot.partitions.get(state.source) is not state or state.source not in assignment:
                continue
            position = positions[state.target]
            if position is None:
                await self.consumer.seek_to_beginning(state.source)
            else:
                self.consumer.seek(state.source, position)
            state.next_offset = position
            state.ready = True
            self.consumer.resume(state.source)
        slot.ready = True

    def _start_repair(self, slot: SlotState, error: BaseException) -> None:
        slot.ready = False
        assignment = self.consumer.assignment()
        for state in slot.partitions.values():
            state.ready = False
            if state.source in assignment:
                self.consumer.pause(state.source)
        if slot.repair is None or slot.repair.done():
            first = self.cfg.session_timeout_ms / 1000 if isinstance(error, FENCED) else 0.0
            if first:
                log.warning("slot taken over by another producer: waiting for the group",
                            extra={"region": self.region, "slot": slot.slot, "wait_s": first})
            slot.repair = asyncio.create_task(self._repair(slot, first),
                                              name=f"repair-{self.region}-slot-{slot.slot}")

    async def _repair(self, slot: SlotState, first_delay: float) -> None:
        """Retry with backoff until the slot is ready again or no longer ours."""
        backoff = Backoff(0.5, 15.0)
        delay = first_delay or backoff.next()
        while True:
            await asyncio.sleep(delay)
            delay = backoff.next()
            async with self._lock:
                if self._slots.get(slot.slot) is not slot:
                    return
                try:
                    await self._initialise(slot)
                except Exception as exc:  # noqa: BLE001
                    self._error("partition_init")
                    self.metrics.set_central_up(False)
                    log.warning("slot recovery failed", extra={
                        "region": self.region, "slot": slot.slot, "error": repr(exc)})
                    continue
                self.metrics.set_central_up(True)
                log.info("slot recovered", extra={"region": self.region, "slot": slot.slot})
                return

    def _gauges(self) -> None:
        self.metrics.assigned(self.region, len(self._parts), len(self._slots))

    def _error(self, kind: str) -> None:
        self.metrics.errors.labels(self.region, kind).inc()
