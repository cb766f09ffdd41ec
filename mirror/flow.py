"""One region's copy loop: its own source consumer, so a slow or dead region never stalls others.

Partitions are split between mirror processes by a consumer group on the source cluster. On
assignment each source partition gets a transactional producer with a deterministic id
(``<prefix>-<region>-<topic>-<partition>``): initialising it fences any zombie that held the
partition and aborts its open transaction; then the position committed on the central cluster is
read back and the consumer seeks to it. Each poll copies every partition's records in one central
transaction that also commits the next source offset (exactly once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord

from mirror.backoff import Backoff
from mirror.central import Central, stop_producer
from mirror.config import MirrorConfig
from mirror.heartbeat import emit_heartbeats, ensure_heartbeat_topic
from mirror.metrics import MirrorMetrics
from mirror.policy import (H_MIRRORED_AT, H_OFFSET, H_PARTITION, H_REGION, H_TOPIC,
                           is_mirrored_record)
from mirror.topics import describe_topics
from service_kit.bounded import settle
from service_kit.histograms import observe_many

log = logging.getLogger(__name__)


class RegionDown(Exception):
    """The region's Kafka has not answered for longer than ``region_restart_after_s``."""


class GroupCoordinationLost(Exception):
    """The source consumer's group coordination task ended: it would never rebalance again."""


@dataclass
class PartitionState:
    """What the flow knows about one assigned source partition."""

    source: TopicPartition
    target: TopicPartition
    producer: AIOKafkaProducer | None = None
    next_offset: int | None = None
    ready: bool = False
    repair: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class CopyResult:
    records: int = 0
    nbytes: int = 0
    skipped: int = 0


def _not_yet_copied(records: list[ConsumerRecord], state: PartitionState) -> list[ConsumerRecord]:
    """``records`` from the partition's next offset on: a round collects for a while, and records
    fetched before a revocation and re-assignment of the partition (the consumer then seeks to the
    central position again) must not be copied twice."""
    start = state.next_offset
    if start is None or not records or records[0].offset >= start:
        return records
    return [record for record in records if record.offset >= start]


class RegionFlow:
    """Copies one region's selected topics into the central cluster until cancelled."""

    def __init__(self, region: str, bootstrap: str, config: MirrorConfig, central: Central,
                 metrics: MirrorMetrics, known_regions: Callable[[], Iterable[str]]) -> None:
        self.region = region
        self.bootstrap = bootstrap
        self.cfg = config
        self.central = central
        self.metrics = metrics
        self._known_regions = known_regions
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._alo_producer: AIOKafkaProducer | None = None
        self._parts: dict[TopicPartition, PartitionState] = {}
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._subscribed: set[str] = set()
        self._lock = asyncio.Lock()
        self._round_started = 0.0
        self._last_ok = 0.0
        self.up = False
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
                    log.warning("region flow failed, retrying", extra={
                        "region": self.region, "error": repr(exc)})
                finally:
                    await self._teardown()
                if time.monotonic() - started > 60:
                    backoff.reset()
                await asyncio.sleep(backoff.next())
        finally:
            self._set_up(False)
            self.metrics.partitions.labels(self.region).set(0)

    def status(self) -> dict[str, object]:
        return {"bootstrap": self.bootstrap, "up": self.up,
                "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in self._parts),
                "topics": sorted(self._subscribed)}

    async def _run_once(self) -> None:
        cfg = self.cfg
        timeout_ms = int(cfg.operation_timeout_s * 1000)
        # The rebalance listener holds the flow's lock: a revocation waits for the in-flight
        # transactions and an assignment initialises producers and reads positions, each bounded
        # by the operation timeout. The group must wait that long for this member to rejoin, or
        # it drops the member and rebalances again, over and over while the central cluster is
        # slow. A dead member is still detected by the session timeout.
        rebalance_ms = max(cfg.session_timeout_ms, 2 * timeout_ms + 5000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=cfg.source_group,
            client_id=f"{cfg.client_id}-{self.region}", enable_auto_commit=False,
            auto_offset_reset="none", isolation_level="read_committed",
            metadata_max_age_ms=max(1000, int(cfg.refresh_interval_s * 1000)),
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 4),
            fetch_max_wait_ms=500, max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024, rebalance_timeout_ms=rebalance_ms,
            request_timeout_ms=max(timeout_ms, 20000, rebalance_ms + 5000),  # a JoinGroup waits
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                          client_id=f"{cfg.client_id}-{self.region}-admin",
                                          request_timeout_ms=timeout_ms)
        async with asyncio.timeout(cfg.operation_timeout_s):
            await self._admin.start()
            await self._consumer.start()
            if cfg.heartbeats:
                await ensure_heartbeat_topic(self._admin, cfg.heartbeat_topic)
        if not cfg.exactly_once:
            self._alo_producer = await self.central.start_producer(None)
        await self._discover()
        log.info("region flow started", extra={"region": self.region, "bootstrap": self.bootstrap})
        tasks = [asyncio.create_task(self._discovery_loop(), name=f"discover-{self.region}")]
        if cfg.heartbeats:
            hb = TopicPartition(cfg.heartbeat_topic, 0)
            tasks.append(asyncio.create_task(emit_heartbeats(
                self.region, self.bootstrap, cfg.heartbeat_topic, cfg.heartbeat_interval_s,
                lambda: hb in self._parts, cfg.operation_timeout_s), name=f"heartbeat-{self.region}"))
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
        for state in self._parts.values():
            if state.repair is not None:
                state.repair.cancel()
        self._parts.clear()
        self._subscribed = set()
        self.metrics.partitions.labels(self.region).set(0)
        if self._consumer is not None:
            # In its own task: a dead coordination task's CancelledError stays there, and a
            # stop that never ends (brokers gone) cannot hang the flow's shutdown.
            await settle(self._consumer.stop(), 10, f"stop consumer of {self.region}")
            self._consumer = None
        if self._admin is not None:
            await settle(self._admin.close(), 10, f"close admin of {self.region}")
            self._admin = None
        producers = list(self._producers.values())
        self._producers.clear()
        if self._alo_producer is not None:
            producers.append(self._alo_producer)
            self._alo_producer = None
        await asyncio.gather(*(stop_producer(p, timeout) for p in producers))

    # ----------------------------------------------------------------- discovery
    async def _discovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_interval_s)
            self._check_group()
            try:
                await self._discover()
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

    async def _discover(self) -> None:
        """List and describe the source's selected topics, ensure their targets, subscribe."""
        assert self._admin is not None and self._consumer is not None
        async with asyncio.timeout(self.cfg.operation_timeout_s):
            names = await self._admin.list_topics()
            known = list(self._known_regions())
            selected = [t for t in names if self.cfg.topic_filter.selects(t, known)]
            info = await describe_topics(self._admin, selected)
        self._set_up(True)
        ensured: set[str] = set()
        for topic, topic_info in info.items():
            target = self.cfg.policy.target_topic(self.region, topic)
            try:
                await self.central.topics.ensure(target, topic_info.partitions, topic_info.configs)
                ensured.add(topic)
                self.metrics.central_up.set(1)
            except Exception as exc:  # noqa: BLE001 - central trouble: keep what is subscribed
                self._error("central_topic")
                self.metrics.central_up.set(0)
                log.warning("cannot ensure target topic", extra={
                    "region": self.region, "topic": target, "error": repr(exc)})
        wanted = (self._subscribed & set(info)) | ensured
        if wanted != self._subscribed:
            log.info("subscribing", extra={"region": self.region, "topics": sorted(wanted)})
            if wanted:
                self._consumer.subscribe(topics=sorted(wanted), listener=_Listener(self))
            else:
                self._consumer.unsubscribe()
            self._subscribed = wanted
        self.metrics.topics.labels(self.region).set(len(self._subscribed))

    # ----------------------------------------------------------------- rebalance
    async def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """``assigned`` is the whole new assignment: every earlier partition state goes (aiokafka
        0.14 does not always revoke first: when the subscription changes while this callback
        runs, the next revocation names the assignment *before* this one, so partitions handed
        out here would otherwise stay in the flow as if still owned)."""
        async with self._lock:
            self._forget(list(self._parts))
            assigned_set = set(assigned)
            for tp in [tp for tp in self._producers if tp not in assigned_set]:
                await stop_producer(self._producers.pop(tp), self.cfg.operation_timeout_s)
            needed: dict[str, int] = {}
            for tp in assigned_set:
                target = self.cfg.policy.target_topic(self.region, tp.topic)
                needed[target] = max(needed.get(target, 0), tp.partition + 1)
            for target, count in needed.items():
                if self.central.topics.partitions(target) < count:
                    try:
                        await self.central.topics.ensure(target, count)
                    except Exception as exc:  # noqa: BLE001 - the repair loop retries
                        log.warning("cannot grow target topic", extra={"topic": target,
                                                                       "error": repr(exc)})
            states = [PartitionState(tp, TopicPartition(
                self.cfg.policy.target_topic(self.region, tp.topic), tp.partition))
                for tp in assigned_set]
            for state in states:
                self._parts[state.source] = state
            results = await asyncio.gather(*(self._init_partition(s) for s in states),
                                           return_exceptions=True)
            for state, result in zip(states, results):
                if isinstance(result, BaseException):
                    self._error("partition_init")
                    log.warning("partition init failed", extra={
                        "region": self.region, "tp": str(state.source), "error": repr(result)})
                    self._start_repair(state)
            self.metrics.partitions.labels(self.region).set(len(self._parts))
            log.info("partitions assigned", extra={"region": self.region,
                                                   "partitions": len(assigned_set)})

    async def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:  # waits for the in-flight transactions to finish
            self._forget(revoked)
            self.metrics.partitions.labels(self.region).set(len(self._parts))

    def _forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop the partitions' states (and repairs, and lag series); producers stay for reuse."""
        for tp in tps:
            state = self._parts.pop(tp, None)
            if state is not None and state.repair is not None:
                state.repair.cancel()
            try:
                self.metrics.records_behind.remove(self.region, tp.topic, str(tp.partition))
            except KeyError:
                pass

    async def _init_partition(self, state: PartitionState) -> None:
        """Fence the partition's transactional id, read its central position and seek."""
        assert self._consumer is not None
        state.ready = False
        if self.cfg.exactly_once:
            producer = self._producers.get(state.source)
            if producer is None:
                producer = await self.central.start_producer(self._transactional_id(state.source))
                self._producers[state.source] = producer
            state.producer = producer
        else:
            state.producer = self._alo_producer
        position = await self.central.positions.read(state.target)
        if state.source not in self._consumer.assignment():
            return
        if position is None:
            await self._consumer.seek_to_beginning(state.source)
        else:
            self._consumer.seek(state.source, position)
        state.next_offset = position
        state.ready = True
        self._consumer.resume(state.source)

    def _start_repair(self, state: PartitionState) -> None:
        assert self._consumer is not None
        state.ready = False
        if state.source in self._consumer.assignment():
            self._consumer.pause(state.source)
        if state.repair is None or state.repair.done():
            state.repair = asyncio.create_task(self._repair(state))

    async def _repair(self, state: PartitionState) -> None:
        """Retry with backoff: new producer (fences and aborts), read position, seek, resume."""
        backoff = Backoff(0.5, 15.0)
        while state.source in self._parts and self._parts[state.source] is state:
            await asyncio.sleep(backoff.next())
            if state.source not in self._parts:
                return
            async with self._lock:
                old = self._producers.pop(state.source, None)
                if old is not None:
                    await stop_producer(old, 2.0)
                try:
                    await self._init_partition(state)
                    self.metrics.central_up.set(1)
                    log.info("partition recovered", extra={"region": self.region,
                                                           "tp": str(state.source)})
                    return
                except Exception as exc:  # noqa: BLE001
                    self._error("partition_init")
                    self.metrics.central_up.set(0)
                    log.warning("partition recovery failed", extra={
                        "region": self.region, "tp": str(state.source), "error": repr(exc)})

    def _transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.cfg.transactional_id_prefix}-{self.region}-{tp.topic}-{tp.partition}"

    # ----------------------------------------------------------------- copying
    def _check_group(self) -> None:
        """Raise :class:`GroupCoordinationLost` if the consumer's group coordination has ended.

        aiokafka runs joins, heartbeats and rebalance callbacks in one background task; if that
        task dies, the consumer keeps its last assignment (or none) forever and ``getmany``
        re-raises the task's CancelledError, which would look like a cancellation of this flow.
        The flow is rebuilt instead (``run`` tears down and reconnects).
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        task = getattr(coordinator, "_coordination_task", None)
        if task is not None and task.done():
            reason = "cancelled" if task.cancelled() else repr(task.exception())
            raise GroupCoordinationLost(f"{self.region}: consumer group coordination ended ({reason})")

    async def _poll_once(self) -> None:
        assert self._consumer is not None
        self._check_group()
        if not self._subscribed or not self._consumer.assignment():
            await asyncio.sleep(self.cfg.batch_interval_ms / 1000)
            return
        batches, error = await self._collect_round()
        if batches:
            async with self._lock:
                if self.cfg.exactly_once:
                    await self._copy_exactly_once(batches)
                else:
                    await self._copy_at_least_once(batches)
            self._update_lag(batches)
        if isinstance(error, OffsetOutOfRangeError):
            await self._out_of_range(error.args[0] if error.args else {})
        elif isinstance(error, NoOffsetForPartitionError):
            # The fetcher looked for a position in the *source* group before the rebalance
            # listener had sought to the central one: seek again to what we know.
            await self._reseek(error.args)

    async def _collect_round(self) -> tuple[dict[TopicPartition, list[ConsumerRecord]], Exception | None]:
        """The records of one transaction round: everything fetched until the round is due
        (``transaction_interval_ms`` after the previous one started) or ``max_batch_records``.
        Consuming as records come keeps aiokafka's fetcher fetching during the wait (it refetches
        a partition only once its buffered records are taken), so a round carries all that
        arrived before it. A fetch error ends the round early; it is returned for handling after
        the records already taken are copied."""
        assert self._consumer is not None
        cfg = self.cfg
        deadline = self._round_started + cfg.transaction_interval_ms / 1000
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        error: Exception | None = None
        while count < cfg.max_batch_records:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if batches and remaining_ms <= 0:
                break
            self._check_group()  # before every getmany (see there)
            try:
                got = await self._consumer.getmany(
                    timeout_ms=max(remaining_ms, 0 if batches else cfg.batch_interval_ms),
                    max_records=cfg.max_batch_records - count)
            except (OffsetOutOfRangeError, NoOffsetForPartitionError) as exc:
                error = exc
                break
            for tp, records in got.items():
                if records:
                    batches.setdefault(tp, []).extend(records)
                    count += len(records)
            if not batches and time.monotonic() >= deadline:
                break  # idle: let the caller look at its tasks
        self._round_started = time.monotonic()
        return batches, error

    def _copyable(self, batches: dict[TopicPartition, list[ConsumerRecord]]
                  ) -> list[tuple[PartitionState, list[ConsumerRecord]]]:
        """Each ready partition's records not copied yet. A partition that is not ready (being
        initialised or repaired) is left out: its seek brings its records back."""
        copyable = []
        for tp, records in batches.items():
            state = self._parts.get(tp)
            if state is None or not state.ready or state.producer is None:
                continue
            records = _not_yet_copied(records, state)
            if records:
                copyable.append((state, records))
        return copyable

    async def _copy_exactly_once(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        states = self._copyable(batches)
        results = await asyncio.gather(
            *(self._transaction(state, records) for state, records in states), return_exceptions=True)
        for (state, records), result in zip(states, results):
            if isinstance(result, BaseException):
                self.metrics.transactions.labels(self.region, "aborted").inc()
                self._error(type(result).__name__)
                log.warning("transaction failed, partition rewinds", extra={
                    "region": self.region, "tp": str(state.source), "error": repr(result)})
                self._start_repair(state)
            else:
                self.metrics.transactions.labels(self.region, "committed").inc()
                self._account(state, records, result)

    async def _transaction(self, state: PartitionState, records: list[ConsumerRecord]) -> CopyResult:
        producer = state.producer
        assert producer is not None
        next_offset = records[-1].offset + 1
        async with asyncio.timeout(self.cfg.operation_timeout_s):
            await _ensure_partition_known(producer, state.target)
            await producer.begin_transaction()
            result, futures = await self._send(producer, state, records)
            # Every batch must be acknowledged *before* the commit: aiokafka commits a
            # transaction even when one of its batches failed for good (a refused or expired
            # batch only fails its own future), and the position would then skip its records.
            # A failure here leaves the transaction open; the repair's new producer aborts it.
            await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction({state.target: next_offset},
                                                       self.central.positions.group_id)
            await producer.commit_transaction()
        state.next_offset = next_offset
        return result

    async def _copy_at_least_once(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        producer = self._alo_producer
        assert producer is not None
        sent: list[tuple[PartitionState, list[ConsumerRecord], CopyResult]] = []
        futures: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout(self.cfg.operation_timeout_s):
                for state, records in self._copyable(batches):
                    await _ensure_partition_known(producer, state.target)
                    result, futs = await self._send(producer, state, records)
                    futures.extend(futs)
                    sent.append((state, records, result))
                await asyncio.gather(*futures)
                offsets = {s.target: r[-1].offset + 1 for s, r, _ in sent}
                if offsets:
                    await self.central.positions.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - rewind every partition of the batch
            self._error(type(exc).__name__)
            log.warning("at-least-once batch failed, rewinding", extra={
                "region": self.region, "error": repr(exc)})
            for state, _, _ in sent:
                self._start_repair(state)
            return
        for state, records, result in sent:
            state.next_offset = records[-1].offset + 1
            self._account(state, records, result)

    async def _send(self, producer: AIOKafkaProducer, state: PartitionState,
                    records: list[ConsumerRecord]) -> tuple[CopyResult, list[asyncio.Future[object]]]:
        """Append the records with provenance headers to batches and hand them to the producer."""
        result = CopyResult()
        region_b = self.region.encode()
        topic_b = state.source.topic.encode()
        partition_b = str(state.source.partition).encode()
        mirrored_at = str(int(time.time() * 1000)).encode()
        futures = []
        batch = producer.create_batch()
        for record in records:
            if is_mirrored_record(record.headers):
                result.skipped += 1
                continue
            headers = [*record.headers, (H_REGION, region_b), (H_TOPIC, topic_b),
                       (H_PARTITION, partition_b), (H_OFFSET, str(record.offset).encode()),
                       (H_MIRRORED_AT, mirrored_at)]
            if batch.append(key=record.key, value=record.value, timestamp=record.timestamp,
                            headers=headers) is None:
                futures.append(await producer.send_batch(batch, state.target.topic,
                                                         partition=state.target.partition))
                batch = producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=record.timestamp,
                                headers=headers) is None:
                    raise ValueError(f"record {state.source}@{record.offset} too large for a batch")
            result.records += 1
            result.nbytes += len(record.key or b"") + len(record.value or b"")
        if batch.record_count():
            futures.append(await producer.send_batch(batch, state.target.topic,
                                                     partition=state.target.partition))
        return result, futures

    def _account(self, state: PartitionState, records: list[ConsumerRecord], result: CopyResult) -> None:
        topic = state.source.topic
        self.metrics.records.labels(self.region, topic).inc(result.records)
        self.metrics.bytes.labels(self.region, topic).inc(result.nbytes)
        if result.skipped:
            self.metrics.cycle_skipped.labels(self.region, topic).inc(result.skipped)
        now_ms = time.time() * 1000
        observe_many(self.metrics.latency.labels(self.region),
                     [max(0.0, (now_ms - record.timestamp) / 1000) for record in records])
        if topic == self.cfg.heartbeat_topic:
            self.metrics.heartbeat_ts.labels(self.region).set(records[-1].timestamp / 1000)

    async def _reseek(self, tps: Sequence[object]) -> None:
        assert self._consumer is not None
        for tp in tps:
            state = self._parts.get(tp) if isinstance(tp, TopicPartition) else None
            if state is None or not state.ready:
                continue  # its initialisation (or repair) will seek
            if state.next_offset is None:
                await self._consumer.seek_to_beginning(state.source)
            else:
                self._consumer.seek(state.source, state.next_offset)

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

    # ----------------------------------------------------------------- helpers
    def _update_lag(self, batches: dict[TopicPartition, list[ConsumerRecord]] | None = None) -> None:
        if self._consumer is None:
            return
        tps = batches.keys() if batches is not None else list(self._parts)
        for tp in tps:
            state = self._parts.get(tp)
            if state is None or state.next_offset is None:
                continue
            try:
                high = self._consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not assigned any more
                continue
            if high is not None:
                self.metrics.records_behind.labels(self.region, tp.topic, str(tp.partition)).set(
                    max(0, high - state.next_offset))

    def _set_up(self, up: bool) -> None:
        if up:
            self._last_ok = time.monotonic()
        self.up = up
        self.metrics.region_up.labels(self.region).set(1 if up else 0)

    def _error(self, kind: str) -> None:
        self.metrics.errors.labels(self.region, kind).inc()


class _Listener(ConsumerRebalanceListener):
    """Hands rebalances to the flow.

    ``on_partitions_revoked`` always yields to the event loop first. aiokafka 0.14 starts its
    heartbeat task right after a successful join; when the subscription changed while
    ``on_partitions_assigned`` ran (a topic discovered meanwhile), it rejoins at once and stops
    that heartbeat task again after this callback. If nothing in between yielded, the task was
    cancelled before it ever ran, awaiting it raises CancelledError inside aiokafka's group
    coordination task, and that task dies silently: no rebalance ever again, the new topic is
    never assigned. Yielding once lets the heartbeat task start, so its cancellation is clean.
    """

    def __init__(self, flow: RegionFlow) -> None:
        self.flow = flow

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await asyncio.sleep(0)  # see the class docstring: never return without yielding
        await self.flow.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.flow.on_assigned(assigned)


async def _ensure_partition_known(producer: AIOKafkaProducer, tp: TopicPartition) -> None:
    """Refresh the producer's metadata when the target partition is new to it."""
    for _ in range(20):
        partitions = producer.client.cluster.partitions_for_topic(tp.topic)
        if partitions and tp.partition in partitions:
            return
        await producer.client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"target partition {tp} not in central metadata")
