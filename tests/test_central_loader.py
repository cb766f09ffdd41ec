"""The loader against real Kafka (transactional producers, read_committed) and real chdb."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import given
from hypothesis import strategies as st

from central.clickhouse import AsyncClickHouse, ChdbClient
from central.loader import Loader, LoaderConfig
from central.metrics import CentralMetrics
from central.queries import Queries
from central.records import KafkaRecord, Rejected, ch_time, event_row, event_time, quarantine_row
from central.sample import Outgoing, event_headers, produce, random_event
from central.schema import EVENT_COLUMNS, HEARTBEAT_COLUMNS, QUARANTINE_COLUMNS, Tables, create_schema
from service_kit.wait import wait_until_async


def test_event_time_rule() -> None:
    # skew-corrected when both the client timestamp and sent-at exist
    assert event_time(received_at=10_000, sent_at=9_000 + 3_600_000, client_ts=8_000 + 3_600_000) == 9_000
    assert event_time(received_at=10_000, sent_at=None, client_ts=5_000) == 10_000
    assert event_time(received_at=10_000, sent_at=7_000, client_ts=None) == 10_000
    assert event_time(received_at=10_000, sent_at=7_000, client_ts=8_000) == 10_000  # capped


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_ch_time_is_exact_to_the_millisecond(ms: int) -> None:
    # what ClickHouse parses is the JSON text of the float: it must be exactly ms / 1000
    assert Decimal(orjson.dumps(ch_time(ms)).decode()) * 1000 == ms


def test_row_columns_match_the_tables(tmp_path: Path) -> None:
    client = ChdbClient(str(tmp_path / "chdb"))
    try:
        tables = Tables("geo")
        create_schema(client, tables, False)
        for table, columns in ((tables.events, EVENT_COLUMNS), (tables.heartbeats, HEARTBEAT_COLUMNS),
                               (tables.quarantine, QUARANTINE_COLUMNS)):
            described = tuple(r["name"] for r in client.select(f"DESCRIBE TABLE {table}"))
            assert described == columns, table
    finally:
        client.close()


HOSTILE_TIMESTAMPS = [b"1e300", b"-1e300", b"-1", b"18446744073709551616", b"9223372036854775807",
                      b'"99999-01-01"', b'"0001-01-01T00:00:00Z"', b"99999999999.5", b"1700000095.5"]


def test_hostile_numbers_never_fail_an_insert(tmp_path: Path) -> None:
    """One out-of-range value would fail a whole batch's insert (and the loader would retry it
    forever): every time and integer is kept in its column's range or the record is quarantined."""
    def headers(event_id: str) -> list[tuple[str, bytes]]:
        return event_headers(event_id, "eu", 1_700_000_010_000, sent_at=1_700_000_100_000)

    rows, quarantined = [], []
    records = [KafkaRecord("eu.events", 0, i, 2**62, b'{"event":"x","timestamp":%s}' % ts, headers(f"t-{i}"))
               for i, ts in enumerate(HOSTILE_TIMESTAMPS)]
    for i, (name, value) in enumerate([("received-at", b"99999999999999999"), ("received-at", b"-5"),
                                       ("sent-at", b"1" * 40), ("mirrored-at", b"-1"),
                                       ("mirror-source-offset", b"-3"), ("mirror-source-partition", b"5000000000")]):
        hostile = [(k, v) for k, v in headers(f"h-{i}") if k != name] + [(name, value)]
        records.append(KafkaRecord("eu.events", 1, i, -7, b'{"event":"y"}', hostile))
    for record in records:
        try:
            rows.append(event_row(record, 1_700_000_011_000, 1 << 20))
        except Rejected as exc:
            quarantined.append(quarantine_row(record, exc.reason, exc.detail, 1_700_000_011_000))
    assert len(quarantined) == 2  # the two unusable received-at headers
    client = ChdbClient(str(tmp_path / "chdb"))
    try:
        tables = Tables("geo")
        create_schema(client, tables, False)
        client.insert(tables.events, EVENT_COLUMNS, rows)
        client.insert(tables.quarantine, QUARANTINE_COLUMNS, quarantined)
        assert client.select(f"SELECT count() AS n FROM {tables.events}")[0]["n"] == len(records) - 2
        times = client.select(f"SELECT min(event_time) AS lo, max(event_time) AS hi, countIf(client_ts IS NOT NULL) AS ts "
                              f"FROM {tables.events}")[0]
        assert times["lo"] >= "1970" and times["hi"] <= "2299" and times["ts"] == 1  # only 1700000095.5 s is usable
    finally:
        client.close()


def test_event_row_fields() -> None:
    headers = event_headers("e-1", "eu", 1_700_000_010_000, sent_at=1_700_000_100_000, country="FR")
    value = orjson.dumps({"event": "click", "os": "iOS", "browser": "Safari", "timestamp": 1_700_000_095_000,
                          "user_id": "u1", "button": "buy"})
    row = dict(zip(EVENT_COLUMNS, event_row(KafkaRecord("eu.events", 2, 41, 1, value, headers),
                                            1_700_000_011_000, 1 << 20), strict=True))
    assert row["event_id"] == "e-1" and row["event"] == "click" and row["country"] == "FR"
    assert row["event_time"] == 1_700_000_005.0  # 10_000 - (100_000 - 95_000)
    assert row["received_at"] == 1_700_000_010.0 and row["sent_at"] == 1_700_000_100.0
    assert orjson.loads(row["properties"]) == {"button": "buy"}
    assert (row["topic"], row["partition"], row["offset"]) == ("eu.events", 2, 41)
    with pytest.raises(Rejected) as missing:
        event_row(KafkaRecord("eu.events", 0, 0, 1, value, headers[1:]), 0, 1 << 20)
    assert missing.value.reason == "missing_header"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[AsyncClickHouse, Tables]]:
    clickhouse = AsyncClickHouse(ChdbClient(str(tmp_path / "chdb")))
    tables = Tables("geo")
    await clickhouse.in_writer(create_schema, clickhouse.client, tables, False)
    yield clickhouse, tables
    clickhouse.close()


class Running:
    """A Loader task with its stop event."""

    def __init__(self, loader: Loader) -> None:
        self.loader, self.stop = loader, asyncio.Event()
        self.task = asyncio.create_task(loader.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def _loader(bootstrap: str, prefix: str, store: tuple[AsyncClickHouse, Tables], group: str, **kw: Any) -> Loader:
    clickhouse, tables = store
    config = LoaderConfig(bootstrap=bootstrap, group=group, events_pattern=rf"^{prefix}[a-z0-9]+\.events$",
                          heartbeats_pattern=rf"^{prefix}[a-z0-9]+\.heartbeats$",
                          **{"batch_size": 300, "batch_interval": 0.3, "metadata_max_age_ms": 500, **kw})
    return Loader(config, clickhouse, tables, CentralMetrics())


async def test_loads_committed_events_quarantines_bad_ones_and_finds_new_regions(kafka, store) -> None:
    prefix = "c" + uuid.uuid4().hex[:8]
    eu, us, ap = f"{prefix}eu", f"{prefix}us", f"{prefix}ap"
    rng = random.Random(1)
    good = [random_event(eu, f"{eu}.events", rng, index=i) for i in range(700)]
    good += [random_event(us, f"{us}.events", rng, index=i) for i in range(500)]
    await produce(kafka.bootstrap, good, per_transaction=200)
    aborted = [random_event(eu, f"{eu}.events", rng) for _ in range(150)]
    await produce(kafka.bootstrap, aborted, abort=True)
    now = int(time.time() * 1000)
    ok_headers = event_headers("bad", eu, now)
    bad = [
        Outgoing(f"{eu}.events", None, b"{not json", event_headers("q1", eu, now)),
        Outgoing(f"{eu}.events", None, b"[1, 2]", event_headers("q2", eu, now)),
        Outgoing(f"{eu}.events", None, b'{"event":"x"}', [h for h in ok_headers if h[0] != "received-at"]),
        Outgoing(f"{eu}.events", None, b'{"event":"x"}', [h for h in ok_headers if h[0] != "event-id"]),
        Outgoing(f"{eu}.events", None, orjson.dumps({"event": "big", "blob": "x" * 5000}), event_headers("q5", eu, now)),
        Outgoing(f"{eu}.events", None, b'{"event":"x"}',
                 [(k, b"soon" if k == "received-at" else v) for k, v in event_headers("q6", eu, now)]),
        Outgoing(f"{eu}.heartbeats", eu.encode(), b'{"region": 5}', []),
    ]
    heartbeats = [Outgoing(f"{r}.heartbeats", r.encode(), orjson.dumps({"region": r, "ts": now - 1000 * k}), [])
                  for r in (eu, us) for k in range(3)]
    await produce(kafka.bootstrap, bad + heartbeats)

    clickhouse, tables = store
    queries = Queries(clickhouse, tables)
    running = Running(_loader(kafka.bootstrap, prefix, store, f"g-{prefix}", max_record_bytes=4096))
    try:
        async def loaded(n: int, q: int) -> Any:
            async def check() -> bool:
                s = await queries.summary()
                return s["events"] >= n and sum(s["quarantined"].values()) >= q
            return check

        await wait_until_async(await loaded(1200, 7), 60, interval=0.2, what="first load")
        # a region that appears after the loader started is picked up by the pattern
        late = [random_event(ap, f"{ap}.events", rng, index=i) for i in range(50)]
        await produce(kafka.bootstrap, late)
        await wait_until_async(await loaded(1250, 7), 60, interval=0.2, what="new region")
        summary = await queries.summary()
        assert summary["events"] == 1250  # aborted transaction invisible (read_committed)
        assert summary["quarantined"] == {"invalid_json": 1, "not_an_object": 1, "missing_header": 2,
                                          "too_large": 1, "bad_header": 1, "bad_heartbeat": 1}
        assert summary["heartbeats"] == 6
        ids = {h[1].decode() for r in good for h in r.headers if h[0] == "event-id"}
        rows = await clickhouse.select(f"SELECT event_id FROM {tables.events} FINAL")
        assert {r["event_id"] for r in rows} == ids | {h[1].decode() for r in late for h in r.headers
                                                        if h[0] == "event-id"}
        q = await clickhouse.select(f"SELECT reason, topic, partition, offset FROM {tables.quarantine} "
                                    f"WHERE reason = 'too_large'")
        assert q[0]["topic"] == f"{eu}.events" and q[0]["offset"] >= 0
        metrics = running.loader.metrics
        assert metrics.registry.get_sample_value("geo_central_quarantined_total",
                                                 {"reason": "too_large"}) == 1
        assert running.loader.state["running"] and running.loader.state["batches"] >= 2
        # each batch's time is split into its insert and its offset commit, both observed
        counts = {name: metrics.registry.get_sample_value(f"geo_central_{name}_seconds_count")
                  for name in ("batch", "insert", "commit")}
        assert counts["batch"] >= 2 and counts["insert"] == counts["commit"] == counts["batch"]
        spent = {name: metrics.registry.get_sample_value(f"geo_central_{name}_seconds_sum")
                 for name in ("batch", "insert", "commit")}
        assert 0 < spent["insert"] + spent["commit"] <= spent["batch"]
    finally:
        await running.close()


@contextlib.asynccontextmanager
async def _running_loader(kafka, store, prefix: str, **kw: Any) -> AsyncIterator[Queries]:  # type: ignore[no-untyped-def]
    """A loader of ``prefix``'s topics, running (closed on the way out); the queries of its store."""
    clickhouse, tables = store
    running = Running(_loader(kafka.bootstrap, prefix, store, f"g-{prefix}", **kw))
    try:
        await wait_until_async(lambda: running.loader.state["running"], 30, what="loader running")
        yield Queries(clickhouse, tables)
    finally:
        await running.close()


async def _events_at_least(queries: Queries, n: int) -> bool:
    return (await queries.summary())["events"] >= n


async def test_a_record_after_a_quiet_spell_is_loaded_without_waiting_for_the_interval(kafka, store) -> None:
    """Inserts are spaced by ``batch_interval``; a batch never waits for that timer once the
    last insert is far enough back. With a 120-s interval, a record arriving on an idle loader is
    in the table long before the interval (a loader that filled every batch for the interval
    would show it after two minutes)."""
    prefix = "q" + uuid.uuid4().hex[:8]
    async with _running_loader(kafka, store, prefix, batch_interval=120.0) as queries:
        await produce(kafka.bootstrap, [random_event(f"{prefix}eu", f"{prefix}eu.events", random.Random(5), index=0)])
        await wait_until_async(lambda: _events_at_least(queries, 1), 30, interval=0.2, what="first record loaded")


async def test_loaded_at_is_when_the_rows_insert_started_not_when_they_were_fetched(kafka, store) -> None:
    """``loaded_at`` - ``received_at`` is the table's end-to-end latency, so ``loaded_at`` must
    include a fetched record's wait for its insert. With inserts spaced 2 s, a record fetched
    just after an insert waits about 2 s: its ``loaded_at`` is at least the spacing after the
    previous batch's (stamped at fetch time it was a few ms after it)."""
    prefix = "s" + uuid.uuid4().hex[:8]
    rng = random.Random(7)
    clickhouse, tables = store
    async with _running_loader(kafka, store, prefix, batch_interval=2.0) as queries:
        for index in (0, 1):
            await produce(kafka.bootstrap, [random_event(f"{prefix}eu", f"{prefix}eu.events", rng, index=index)])
            await wait_until_async(lambda: _events_at_least(queries, index + 1), 30, interval=0.05,
                                   what=f"record {index} loaded")
        rows = await clickhouse.select(f"SELECT toUnixTimestamp64Milli(loaded_at) AS t FROM {tables.events} "
                                       f"FINAL ORDER BY t")
    first, second = (r["t"] for r in rows)
    assert second - first >= 1900, (first, second)


async def _at_least(count, n: int) -> bool:
    return await count() >= n


async def test_the_loader_rides_over_rebalances_of_its_group(kafka, store) -> None:
    """A second loader of the same group joins and leaves six times while events arrive (and a new
    region's topic appears each time, one more rebalance of the pattern subscription): each
    time the first one's partitions are revoked and assigned again, also while it refreshes its
    lag gauge (a position awaited there once met a revoked partition, and the AssertionError
    ended geo-central). The first loader keeps running; every event is loaded."""
    prefix = "r" + uuid.uuid4().hex[:8]
    rng = random.Random(7)
    clickhouse, tables = store
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}eu.events", 12, 1)])
    finally:
        await admin.close()
    first = Running(_loader(kafka.bootstrap, prefix, store, f"g-{prefix}"))
    sent = 0
    try:
        for round_ in range(6):
            batch = [random_event(f"{prefix}eu", f"{prefix}eu.events", rng, index=sent + i) for i in range(200)]
            await produce(kafka.bootstrap, batch)
            # a new region's topic too: the pattern subscription rebalances the group once more
            await produce(kafka.bootstrap, [random_event(f"{prefix}x{round_}", f"{prefix}x{round_}.events", rng)])
            sent += len(batch)
            second = Running(_loader(kafka.bootstrap, prefix, store, f"g-{prefix}"))
            await wait_until_async(lambda: second.loader.state["running"], 30, what="second loader running")
            await wait_until_async(lambda: bool(second.loader.state.get("topics")) or first.task.done(), 30,
                                   interval=0.1, what=f"second loader assigned (round {round_})")
            await second.close()
            assert not first.task.done(), first.task.exception()

        async def loaded() -> int:
            rows = await clickhouse.select(
                f"SELECT count() AS n FROM {tables.events} FINAL WHERE region = '{prefix}eu'")
            return rows[0]["n"]

        await wait_until_async(lambda: _at_least(loaded, sent), 60, interval=0.2, what=f"{sent} events loaded")
        assert not first.task.done()
        assert await loaded() == sent
    finally:
        await first.close()


async def test_replayed_batches_are_invisible(kafka, store) -> None:
    prefix = "d" + uuid.uuid4().hex[:8]
    rng = random.Random(2)
    records = [random_event(f"{prefix}eu", f"{prefix}eu.events", rng, index=i) for i in range(900)]
    await produce(kafka.bootstrap, records)
    clickhouse, tables = store
    queries = Queries(clickhouse, tables)

    async def raw_count() -> int:
        return (await clickhouse.select(f"SELECT count() AS n FROM {tables.events}"))[0]["n"]

    # Two consumer groups load the same records: the second is a full replay of every batch.
    # Merges are stopped so that the duplicates stay physically present until we ask for them.
    await clickhouse.execute(f"SYSTEM STOP MERGES {tables.events}")
    for group in ("first", "replay"):
        running = Running(_loader(kafka.bootstrap, prefix, store, f"{group}-{prefix}"))
        try:
            target = 900 if group == "first" else 1800

            async def done() -> bool:
                return await raw_count() >= target
            try:
                await wait_until_async(done, 60, interval=0.2, what=f"{group} load")
            except TimeoutError:
                raise AssertionError(f"{group}: {await raw_count()} rows, state {running.loader.state}")
        finally:
            await running.close()
    assert await raw_count() == 1800  # the duplicates are physically there ...
    assert (await queries.summary())["events"] == 900  # ... and invisible with FINAL
    await clickhouse.execute(f"SYSTEM START MERGES {tables.events}")
    await clickhouse.execute(f"OPTIMIZE TABLE {tables.events} FINAL")
    assert await raw_count() == 900  # and merged away
