"""The Kafka → ClickHouse loader: batches by size and time, inserts, then commits offsets.

Offsets are committed only after every insert of the batch returned; a crash in between replays
the batch, and the ReplacingMergeTree tables (read with FINAL) hide the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from central.clickhouse import AsyncClickHouse, ClickHouseError
from central.metrics import CentralMetrics
from central.records import RecordLike, Rejected, Row, ch_time, event_row, heartbeat_row, quarantine_row
from central.schema import EVENT_COLUMNS, HEARTBEAT_COLUMNS, QUARANTINE_COLUMNS, Tables
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity, explain

log = logging.getLogger(__name__)

DEFAULT_EVENTS_PATTERN = r"^[A-Za-z0-9_-]+\.events$"
DEFAULT_HEARTBEATS_PATTERN = r"^[A-Za-z0-9_-]+\.heartbeats$"


#: how often the consumer-lag gauge is refreshed (s)
LAG_REFRESH_S = 1.0
#: how long an empty batch waits for records before the loop looks at its stop event and lag
IDLE_POLL_S = 0.5


@dataclass(frozen=True)
class LoaderConfig:
    """How the loader consumes and batches."""

    bootstrap: str
    group: str = "geo-central"
    events_pattern: str = DEFAULT_EVENTS_PATTERN
    heartbeats_pattern: str = DEFAULT_HEARTBEATS_PATTERN
    batch_size: int = 50_000
    #: shortest time between the starts of two inserts (s)
    batch_interval: float = 0.25
    max_record_bytes: int = 1_048_576
    metadata_max_age_ms: int = 5_000
    retry_backoff_max: float = 10.0
    crash_after_insert: int = 0  # test hook: os._exit(99) after the Nth batch's insert, before its commit
    security: KafkaSecurity = PLAINTEXT


@dataclass
class Batch:
    """The rows of one batch, by table, and the offsets to commit after inserting them."""

    events: list[Row] = field(default_factory=list)
    heartbeats: list[Row] = field(default_factory=list)
    quarantine: list[Row] = field(default_factory=list)
    quarantine_reasons: list[str] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    records: int = 0


class Loader:
    """Consumes ``<region>.events`` and ``<region>.heartbeats`` (read_committed) into ClickHouse."""

    def __init__(self, config: LoaderConfig, clickhouse: AsyncClickHouse, tables: Tables,
                 metrics: CentralMetrics) -> None:
        self.config = config
        self.clickhouse = clickhouse
        self.tables = tables
        self.metrics = metrics
        self._events_re = re.compile(config.events_pattern)
        self._heartbeats_re = re.compile(config.heartbeats_pattern)
        self._heartbeat_topics: dict[str, bool] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._inserted_batches = 0
        #: when the last insert started (monotonic): inserts are ``batch_interval`` apart at least
        self._insert_started = 0.0
        self._lag_refreshed = -LAG_REFRESH_S
        self.state: dict[str, Any] = {"running": False, "batches": 0, "last_batch_ms": None,
                                      "last_error": None, "insert_failing": False, "topics": [],
                                      "kafka_error": None}

    def _is_heartbeats(self, topic: str) -> bool:
        known = self._heartbeat_topics.get(topic)
        if known is None:
            known = self._heartbeat_topics[topic] = bool(self._heartbeats_re.match(topic))
        return known

    def classify(self, record: RecordLike, loaded_at: int, batch: Batch) -> None:
        """Add ``record``'s row to the batch: an event, a heartbeat or a quarantined record (the
        caller accounts for offsets and counts)."""
        try:
            if self._is_heartbeats(record.topic):
                batch.heartbeats.append(heartbeat_row(record, loaded_at, self.config.max_record_bytes))
            else:
                batch.events.append(event_row(record, loaded_at, self.config.max_record_bytes))
            return
        except Rejected as rejected:
            reason, detail = rejected.reason, rejected.detail
        except Exception as exc:  # a record must never stop the loader
            reason, detail = "decode_error", f"{type(exc).__name__}: {exc}"
        batch.quarantine.append(quarantine_row(record, reason, detail, loaded_at))
        batch.quarantine_reasons.append(reason)

    async def insert(self, batch: Batch) -> None:
        """Insert the batch's rows, retrying with backoff until ClickHouse takes them."""
        delay = 0.2
        for table, columns, rows in ((self.tables.events, EVENT_COLUMNS, batch.events),
                                     (self.tables.heartbeats, HEARTBEAT_COLUMNS, batch.heartbeats),
                                     (self.tables.quarantine, QUARANTINE_COLUMNS, batch.quarantine)):
            if not rows:
                continue
            while True:
                try:
                    # ``loaded_at`` is the time this insert (attempt) started, not when the loader
                    # fetched the record: "edge receive -> row in the table" must include the
                    # batch's wait for its insert (the insert itself is geo_central_insert_seconds).
                    stamp = ch_time(int(time.time() * 1000))
                    await self.clickhouse.insert(table, columns, rows, {"loaded_at": stamp})
                    self.state["insert_failing"] = False
                    break
                except ClickHouseError as exc:
                    self.metrics.insert_errors.inc()
                    self.state.update(insert_failing=True, last_error=str(exc)[:500])
                    log.error("insert failed, retrying", extra={"table": table, "error": str(exc)[:500]})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.config.retry_backoff_max)
            self.metrics.rows_loaded.labels(table.rsplit(".", 1)[-1]).inc(len(rows))
        for reason in batch.quarantine_reasons:
            self.metrics.quarantined.labels(reason).inc()

    async def flush(self, batch: Batch) -> None:
        """Insert the batch, then commit its offsets."""
        started = time.perf_counter()
        await self.insert(batch)
        inserted = time.perf_counter()
        self.metrics.insert_seconds.observe(inserted - started)
        self._inserted_batches += 1
        if self.config.crash_after_insert and self._inserted_batches >= self.config.crash_after_insert:
            log.warning("test hook: crashing after insert, before the offset commit")
            os._exit(99)
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in batch.offsets.items()})
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed; the batch will be replayed and deduplicated",
                        extra={"error": repr(exc)})
        done = time.perf_counter()
        self.metrics.commit_seconds.observe(done - inserted)
        self.metrics.batch_seconds.observe(done - started)
        self.metrics.batch_records.observe(batch.records)
        self.metrics.last_batch.set_to_current_time()
        self.state["batches"] += 1
        self.state["last_batch_ms"] = int(time.time() * 1000)

    async def _fill(self, consumer: AIOKafkaConsumer, stop: asyncio.Event,
                    inserting: asyncio.Task[None] | None) -> Batch:
        """Consume one batch. It closes at ``batch_size`` records, or as soon as it holds records,
        the previous batch's insert is done (group commit: records keep coming in meanwhile) and
        ``batch_interval`` has passed since that insert started. Inserts are spaced, batches do
        not wait for a timer: after a quiet spell the first record is inserted at once, and at a
        steady rate a record waits at most one interval plus one insert. An idle fill returns
        (empty) after ``IDLE_POLL_S`` so the caller can look at ``stop`` and refresh its lag figures."""
        cfg = self.config
        batch = Batch()
        idle_until = time.monotonic() + IDLE_POLL_S
        while batch.records < cfg.batch_size and not stop.is_set():
            now = time.monotonic()
            previous_done = inserting is None or inserting.done()
            due = self._insert_started + cfg.batch_interval
            if batch.records:
                if previous_done and now >= due:
                    break
                timeout = due - now if previous_done else 0.05
            else:
                if now >= idle_until:
                    break
                timeout = idle_until - now
            got = await consumer.getmany(timeout_ms=max(0, int(timeout * 1000)) + 1,
                                         max_records=cfg.batch_size - batch.records)
            loaded_at = int(time.time() * 1000)
            for tp, records in got.items():
                if records:
                    batch.offsets[tp] = records[-1].offset + 1  # fetched in offset order
                    batch.records += len(records)
                    for record in records:
                        self.classify(record, loaded_at, batch)
        return batch

    async def _update_lag(self) -> None:
        """Refresh ``geo_central_consumer_lag`` (at most every ``LAG_REFRESH_S``). A rebalance can
        land while a position is awaited, so each partition is checked to still be assigned and
        a read that fails is skipped: the lag gauge must never stop the loader (once it did: an
        AssertionError 'Partition is not assigned' ended geo-central)."""
        consumer = self._consumer
        assert consumer is not None
        now = time.monotonic()
        if now - self._lag_refreshed < LAG_REFRESH_S:
            return
        self._lag_refreshed = now
        topics = set()
        for tp in list(consumer.assignment()):
            if tp not in consumer.assignment():
                continue  # revoked while an earlier partition's position was awaited
            topics.add(tp.topic)
            try:
                end = consumer.last_stable_offset(tp)
                if end is None:
                    end = consumer.highwater(tp)
                if end is None:
                    continue
                position = await asyncio.wait_for(consumer.position(tp), 5)
            except (asyncio.TimeoutError, KafkaError, AssertionError):
                continue
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))
        self.state["topics"] = sorted(topics)

    async def _connect(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
        """Start the consumer, retrying with backoff while the cluster refuses (down, a wrong
        password, an unknown CA: the reason is logged and in /status as ``kafka_error``).
        False when ``stop`` was set first."""
        delay = 0.5
        while not stop.is_set():
            try:
                await consumer.start()
                self.state["kafka_error"] = None
                return True
            except KafkaError as exc:
                reason = await explain(exc, self.config.bootstrap, self.config.security)
                if reason != self.state.get("kafka_error"):
                    log.error("central kafka unreachable", extra={"error": reason,
                                                                   **self.config.security.describe()})
                self.state["kafka_error"] = reason
                await consumer.stop()
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                delay = min(delay * 2, self.config.retry_backoff_max)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and load until ``stop`` is set; uncommitted work is replayed on the next start.

        While one batch is inserted (in ClickHouse's thread), the next one is consumed and
        converted, and keeps growing (up to ``batch_size``) until that insert is done, so slow
        inserts (fsync) make bigger batches instead of a backlog; a batch's insert starts only after
        the previous batch's offsets are committed."""
        cfg = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap, group_id=cfg.group, client_id="geo-central",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            metadata_max_age_ms=cfg.metadata_max_age_ms, max_partition_fetch_bytes=4 * 1024 * 1024,
            **cfg.security.client_kwargs(),
        )
        consumer.subscribe(pattern=f"(?:{cfg.events_pattern})|(?:{cfg.heartbeats_pattern})")
        self._consumer = consumer
        if not await self._connect(consumer, stop):
            return
        self.state["running"] = True
        log.info("loader started", extra={"bootstrap": cfg.bootstrap, "group": cfg.group})
        inserting: asyncio.Task[None] | None = None  # the previous batch, inserted while this one fills
        try:
            while not stop.is_set():
                batch = await self._fill(consumer, stop, inserting)
                if inserting is not None:  # batches are committed in order: one insert at a time
                    await inserting
                    inserting = None
                if batch.records:
                    self._insert_started = time.monotonic()
                    inserting = asyncio.create_task(self.flush(batch), name="insert")
                await self._update_lag()
            if inserting is not None:
                await inserting
        finally:
            if inserting is not None and not inserting.done():
                inserting.cancel()  # not committed: the batch is replayed (and deduplicated) on restart
                await asyncio.gather(inserting, return_exceptions=True)
            self.state["running"] = False
            await consumer.stop()
            log.info("loader stopped")
