"""One region's copy loop: its own source consumer, so a slow or dead region never stalls others.

The loop wires four parts with one job each (``docs/mirror.md``, "Structure"):

- :class:`mirror.topic_sync.TopicSync` discovers the region's topics, ensures their central
  targets and owns the consumer's subscription (the discovery loop is its only caller);
- :class:`mirror.assignments.Assignments` receives the rebalances (whole transaction slots,
  :mod:`mirror.slots`) and is the only owner of slot and partition state: each slot's fenced
  transactional producer and repair, each partition's position;
- :func:`mirror.convert.convert` turns fetched records into central ones (pure);
- a :class:`mirror.committer.Committer` writes them and commits the positions, exactly once or
  at least once.

This module only runs rounds: collect what was fetched until the round is due, convert the ready
partitions' records, commit them inside :meth:`Assignments.round` (no rebalance mid-round),
report each partition's outcome back to the assignments, and keep the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord

from mirror.assignments import Assignments, PartitionState
from mirror.backoff import Backoff
from mirror.central import Central
from mirror.committer import AtLeastOnceCommitter, Committer, ExactlyOnceCommitter, PartitionBatch
from mirror.config import MirrorConfig
from mirror.convert import Converted, convert
from mirror.heartbeat import emit_heartbeats, ensure_heartbeat_topic
from mirror.metrics import MirrorMetrics
from mirror.rounds import RoundRecords, not_yet_copied
from mirror.slots import slot_assignor, slot_of
from mirror.topic_sync import TopicSync
from service_kit.aiokafka_internals import coordination_ended
from service_kit.bounded import settle
from service_kit.histograms import observe_many
from service_kit.kafka_security import explain

log = logging.getLogger(__name__)


#: how long a round that is due still waits for the fetch its last take set off (loopback: a
#: fetch answers in about a millisecond when records are waiting)
TAIL_POLL_MS = 5


class RegionDown(Exception):
    """The region's Kafka has not answered for longer than ``region_restart_after_s``."""


class GroupCoordinationLost(Exception):
    """The source consumer's group coordination task ended: it would never rebalance again."""


class RegionFlow:
    """Copies one region's selected topics into the central cluster until cancelled."""

    def __init__(self, region: str, bootstrap: str, config: MirrorConfig, central: Central,
                 metrics: MirrorMetrics, known_regions: Callable[[], Iterable[str]]) -> None:
        self.region = region
        self.bootstrap = bootstrap
        self.cfg = config
        self.central = central
        self.metrics = metrics
        self.topics = TopicSync(region, config, central, metrics, known_regions)
        #: the current run's partition owner (None between runs)
        self.assignments: Assignments | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._committer: Committer | None = None
        self._round_started = 0.0
        self._last_ok = 0.0
        self.up = False
        self.last_error: str | None = None
        self.security = config.source_security_for(region)
        self.metrics.region_up.labels(region).set(0)

    # ----------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Copy until cancelled; on a region outage tear down and retry with backoff."""
        backoff = Backoff(1.0, 30.0)
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._run_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one region's trouble stays in its flow
                    self._set_up(False)
                    self._error(type(exc).__name__)
                    self.last_error = await explain(exc, self.bootstrap, self.security)
                    log.warning("region flow failed, retrying", extra={
                        "region": self.region, "error": self.last_error})
                finally:
                    await self._teardown()
                if time.monotonic() - started > 60:
                    backoff.reset()
                await asyncio.sleep(backoff.next())
        finally:
            self._set_up(False)
            self.metrics.assigned(self.region, 0, 0)

    def status(self) -> dict[str, object]:
        parts = self.assignments.partitions() if self.assignments is not None else []
        slots = self.assignments.slots() if self.assignments is not None else []
        return {"bootstrap": self.bootstrap, "up": self.up, "error": None if self.up else self.last_error,
                "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in parts), "slots": slots,
                "topics": sorted(self.topics.subscribed)}

    async def _run_once(self) -> None:
        cfg = self.cfg
        timeout_ms = int(cfg.operation_timeout_s * 1000)
        # The rebalance listener holds the round lock: a revocation waits for the in-flight
        # transactions and stops their producers, an assignment starts (fences) new ones and
        # reads positions, each bounded by the operation timeout. The group must wait that long
        # for this member to rejoin, or it drops the member and rebalances again, over and over
        # while the central cluster is slow. A dead member is still detected by the session
        # timeout.
        rebalance_ms = max(cfg.session_timeout_ms, 2 * timeout_ms + 5000)
        self._consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=cfg.source_group,
            client_id=f"{cfg.client_id}-{self.region}", enable_auto_commit=False,
            auto_offset_reset="none", isolation_level="read_committed",
            metadata_max_age_ms=max(1000, int(cfg.refresh_interval_s * 1000)),
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 4),
            fetch_max_wait_ms=500, max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024, rebalance_timeout_ms=rebalance_ms,
            partition_assignment_strategy=(slot_assignor(cfg.slots_per_region),),
            request_timeout_ms=max(timeout_ms, 20000, rebalance_ms + 5000),  # a JoinGroup waits
            **self.security.client_kwargs(),
        )
        self._admin = admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id=f"{cfg.client_id}-{self.region}-admin",
            request_timeout_ms=timeout_ms, **self.security.client_kwargs())
        self.assignments = Assignments(self.region, cfg, self.central, self.metrics, consumer)
        self._committer = (ExactlyOnceCommitter(self.central, cfg.operation_timeout_s)
                           if cfg.exactly_once else
                           AtLeastOnceCommitter(self.central, cfg.operation_timeout_s))
        listener = _Listener(self.assignments)
        async with asyncio.timeout(cfg.operation_timeout_s):
            await admin.start()
            await consumer.start()
            if cfg.heartbeats:
                await ensure_heartbeat_topic(admin, cfg.heartbeat_topic)
        await self._committer.start()
        await self._discover(listener)
        log.info("region flow started", extra={"region": self.region, "bootstrap": self.bootstrap})
        tasks = [asyncio.create_task(self._discovery_loop(listener), name=f"discover-{self.region}")]
        if cfg.heartbeats:
            hb = TopicPartition(cfg.heartbeat_topic, 0)
            owner = self.assignments
            tasks.append(asyncio.create_task(emit_heartbeats(
                self.region, self.bootstrap, cfg.heartbeat_topic, cfg.heartbeat_interval_s,
                lambda: owner.owns(hb), cfg.operation_timeout_s, self.security),
                name=f"heartbeat-{self.region}"))
        try:
            while True:
                for task in tasks:
                    if task.done():
                        task.result()  # re-raises RegionDown and friends
                await self._poll_once()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _teardown(self) -> None:
        timeout = self.cfg.operation_timeout_s
        if self.assignments is not None:
            await settle(self.assignments.close(), timeout, f"close assignments of {self.region}")
            self.assignments = None
        self.topics.reset()
        self.metrics.assigned(self.region, 0, 0)
        if self._consumer is not None:
            # In its own task: a dead coordination task's CancelledError stays there, and a
            # stop that never ends (brokers gone) cannot hang the flow's shutdown.
            await settle(self._consumer.stop(), 10, f"stop consumer of {self.region}")
            self._consumer = None
        if self._admin is not None:
            await settle(self._admin.close(), 10, f"close admin of {self.region}")
            self._admin = None
        if self._committer is not None:
            await settle(self._committer.stop(), timeout, f"stop committer of {self.region}")
            self._committer = None

    # ----------------------------------------------------------------- discovery
    async def _discovery_loop(self, listener: ConsumerRebalanceListener) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_interval_s)
            self._check_group()
            try:
                await self._discover(listener)
            except (asyncio.CancelledError, RegionDown):
                raise
            except Exception as exc:  # noqa: BLE001
                self._set_up(False)
                self._error("source_unreachable")
                down_for = time.monotonic() - self._last_ok
                log.warning("region not answering", extra={
                    "region": self.region, "error": repr(exc), "down_for_s": round(down_for, 1)})
                if down_for > self.cfg.region_restart_after_s:
                    raise RegionDown(f"{self.region} down for {down_for:.0f}s") from exc
            self._update_lag()

    async def _discover(self, listener: ConsumerRebalanceListener) -> None:
        assert self._admin is not None and self._consumer is not None
        await self.topics.sync(self._admin, self._consumer, listener)
        self._set_up(True)

    # ----------------------------------------------------------------- rounds
    def _check_group(self) -> None:
        """Raise :class:`GroupCoordinationLost` if the consumer's group coordination has ended:
        the consumer would keep its last assignment (or none) forever, and ``getmany`` re-raises
        the task's CancelledError, which would look like a cancellation of this flow. The flow
        is rebuilt instead (``run`` tears down and reconnects)."""
        assert self._consumer is not None
        reason = coordination_ended(self._consumer)
        if reason is not None:
            raise GroupCoordinationLost(f"{self.region}: consumer group coordination ended ({reason})")

    async def _poll_once(self) -> None:
        assert self._consumer is not None
        self._check_group()
        if not self.topics.subscribed or not self._consumer.assignment():
            await asyncio.sleep(self.cfg.batch_interval_ms / 1000)
            return
        collecting = time.perf_counter()
        batches, error = await self._collect_round()
        if batches:
            committing = time.perf_counter()
            self.metrics.round_seconds.labels(self.region, "collect").observe(committing - collecting)
            self.metrics.round_records.labels(self.region).observe(batches.count)
            await self.copy_round(batches)
            self.metrics.round_seconds.labels(self.region, "commit").observe(time.perf_counter() - committing)
            self._update_lag(batches.by_partition)
        if isinstance(error, OffsetOutOfRangeError):
            await self._out_of_range(error.args[0] if error.args else {})
        elif isinstance(error, NoOffsetForPartitionError) and self.assignments is not None:
            # The fetcher looked for a position in the *source* group before the rebalance
            # listener had sought to the central one: seek again to what we know. A partition
            # still being initialised (fenced, its position read) is sought by its assignment;
            # until then every getmany raises at once, so wait a poll interval instead of spinning.
            if not await self.assignments.reseek(error.args):
                await asyncio.sleep(self.cfg.batch_interval_ms / 1000)

    async def _collect_round(self) -> tuple[RoundRecords, Exception | None]:
        """The records of one transaction round: everything fetched until the round is due
        (``transaction_interval_ms`` after the previous one started, and the worker's
        :class:`mirror.budget.TransactionBudget` has its transactions) or ``max_batch_records``.
        Consuming as records come keeps aiokafka's fetcher fetching during the wait (it refetches
        a partition only once its buffered records are taken), so a round carries all that
        arrived before it. A fetch error ends the round early; it is returned for handling after
        the records already taken are copied."""
        assert self._consumer is not None
        cfg = self.cfg
        deadline = self._round_started + cfg.transaction_interval_ms / 1000
        taken = RoundRecords()
        error: Exception | None = None
        tail_polled = False
        budget = self.central.budget
        while taken.count < cfg.max_batch_records:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if taken and remaining_ms <= 0:
                short = budget.wait_s(self._transactions(taken))
                if short > 0:  # keep collecting until the worker's budget has the round's transactions
                    deadline = time.monotonic() + short
                    continue
                if tail_polled:
                    break
                # One short poll more: taking a partition's buffered records is what lets
                # aiokafka fetch it again, and that fetch carries what arrived during the last
                # commit. Without it those records waited a whole round in the buffer (three
                # commits from the source to the centre at back-to-back rounds).
                tail_polled = True
                remaining_ms = TAIL_POLL_MS
            self._check_group()  # before every getmany (see there)
            try:
                got = await self._consumer.getmany(
                    timeout_ms=max(remaining_ms, 0 if taken else cfg.batch_interval_ms),
                    max_records=cfg.max_batch_records - taken.count)
            except (OffsetOutOfRangeError, NoOffsetForPartitionError) as exc:
                error = exc
                break
            for tp, records in got.items():
                taken.add(tp, records)
            if not taken and time.monotonic() >= deadline:
                break  # idle: let the caller look at its tasks
        if taken.refetched:
            self.metrics.refetched.labels(self.region).inc(taken.refetched)
            log.info("round was handed records again after a seek; each taken once", extra={
                "region": self.region, "records": taken.refetched})
        budget.spend(self._transactions(taken))
        self._round_started = time.monotonic()
        return taken, error

    def _transactions(self, taken: RoundRecords) -> int:
        """Transactions a round of ``taken`` commits: one per slot it touched."""
        slots = self.cfg.slots_per_region
        return len({slot_of(tp.topic, tp.partition, slots) for tp in taken.by_partition})

    async def copy_round(self, fetched: Iterable[tuple[TopicPartition, Sequence[ConsumerRecord]]]) -> int:
        """Convert and commit the ready partitions' records of one round; returns how many
        partitions committed. A partition that is not ready (being initialised or repaired) is
        left out: its seek brings its records back."""
        assignments, committer = self.assignments, self._committer
        assert assignments is not None and committer is not None
        committed = 0
        async with assignments.round():
            now_ms = int(time.time() * 1000)
            work: list[tuple[PartitionState, PartitionBatch, Converted, Sequence[ConsumerRecord]]] = []
            for tp, records in fetched:
                state = assignments.ready(tp)
                if state is None:
                    continue
                records = not_yet_copied(records, state.next_offset)
                if not records:
                    continue
                converted = convert(records, self.region, tp, now_ms)
                batch = PartitionBatch(tp, state.target, converted.records, records[-1].offset + 1,
                                       state.producer)
                work.append((state, batch, converted, records))
            results = await committer.commit([batch for _, batch, _, _ in work])
            outcomes = {state.slot.slot: "aborted" if error is not None else "committed"
                        for (state, _, _, _), error in zip(work, results)}   # one transaction per slot
            for outcome in outcomes.values():
                self.metrics.transactions.labels(self.region, outcome).inc()
            for (state, batch, converted, records), error in zip(work, results):
                if error is not None:
                    self._error(type(error).__name__)
                    log.warning("commit failed, partition rewinds", extra={
                        "region": self.region, "tp": str(batch.source), "error": repr(error)})
                    assignments.failed(state, error)
                    continue
                committed += 1
                assignments.committed(state, batch.next_offset)
                self._account(batch.source, records, converted)
        return committed

    def _account(self, source: TopicPartition, records: Sequence[ConsumerRecord],
                 converted: Converted) -> None:
        topic = source.topic
        self.metrics.records.labels(self.region, topic).inc(len(converted.records))
        self.metrics.bytes.labels(self.region, topic).inc(converted.nbytes)
        if converted.skipped:
            self.metrics.cycle_skipped.labels(self.region, topic).inc(converted.skipped)
        now_ms = time.time() * 1000
        observe_many(self.metrics.latency.labels(self.region),
                     [max(0.0, (now_ms - record.timestamp) / 1000) for record in records])
        if topic == self.cfg.heartbeat_topic:
            self.metrics.heartbeat_ts.labels(self.region).set(records[-1].timestamp / 1000)

    async def _out_of_range(self, offsets: dict[TopicPartition, int]) -> None:
        """Source retention deleted records we had not copied: count, log, alert, move on."""
        assert self._consumer is not None
        if not offsets:
            return
        beginnings = await self._consumer.beginning_offsets(list(offsets))
        ends = await self._consumer.end_offsets(list(offsets))
        for tp, position in offsets.items():
            start, end = beginnings.get(tp, 0), ends.get(tp, 0)
            self.metrics.out_of_range.labels(self.region, tp.topic, str(tp.partition)).inc()
            if position < start:
                self.metrics.records_lost.labels(self.region, tp.topic).inc(start - position)
                log.error("source retention deleted records before they were mirrored", extra={
                    "region": self.region, "tp": str(tp), "position": position,
                    "log_start": start, "lost": start - position})
            else:
                log.error("committed position beyond the source log end (source reset?)", extra={
                    "region": self.region, "tp": str(tp), "position": position, "log_end": end})
            self._error("offset_out_of_range")
            self._consumer.seek(tp, start)

    def _update_lag(self, batches: dict[TopicPartition, list[ConsumerRecord]] | None = None) -> None:
        consumer, assignments = self._consumer, self.assignments
        if consumer is None or assignments is None:
            return
        states = assignments.states() if batches is None else [
            s for s in map(assignments.ready, batches) if s is not None]
        for state in states:
            if state.next_offset is None:
                continue
            try:
                high = consumer.highwater(state.source)
            except Exception:  # noqa: BLE001 - not assigned any more
                continue
            if high is not None:
                self.metrics.records_behind.labels(
                    self.region, state.source.topic, str(state.source.partition)).set(
                    max(0, high - state.next_offset))

    def _set_up(self, up: bool) -> None:
        if up:
            self._last_ok = time.monotonic()
        self.up = up
        self.metrics.region_up.labels(self.region).set(1 if up else 0)

    def _error(self, kind: str) -> None:
        self.metrics.errors.labels(self.region, kind).inc()


class _Listener(ConsumerRebalanceListener):
    """Hands rebalances to the assignments.

    ``on_partitions_revoked`` always yields to the event loop first. aiokafka 0.14 starts its
    heartbeat task right after a successful join; when the subscription changed while
    ``on_partitions_assigned`` ran (a topic discovered meanwhile), it rejoins at once and stops
    that heartbeat task again after this callback. If nothing in between yielded, the task was
    cancelled before it ever ran, awaiting it raises CancelledError inside aiokafka's group
    coordination task, and that task dies silently: no rebalance ever again, the new topic is
    never assigned. Yielding once lets the heartbeat task start, so its cancellation is clean.
    """

    def __init__(self, assignments: Assignments) -> None:
        self.assignments = assignments

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await asyncio.sleep(0)  # see the class docstring: never return without yielding
        await self.assignments.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.assignments.on_assigned(assigned)
