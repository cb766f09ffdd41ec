"""geo-central benchmark: load rate into chdb (direct batch inserts, and through Kafka with the
real loader), and the latency of each dashboard query at 10 million rows.

    python -m bench.central [--rows 10000000] [--kafka-events 100000]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from central.clickhouse import AsyncClickHouse, ChdbClient
from central.loader import Loader, LoaderConfig
from central.metrics import CentralMetrics
from central.queries import Queries, TimeRange
from central.records import KafkaRecord, Row, event_row
from central.sample import produce, random_event
from central.schema import EVENT_COLUMNS, Tables, create_schema
from harness.kafka import KafkaCluster
from service_kit.wait import wait_until_async


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def realistic_batches(count: int, batch: int) -> tuple[list[list[Row]], float]:
    """Row batches built by the loader's own decoding; returns them and the decode rate."""
    rng = random.Random(7)
    now = int(time.time() * 1000)
    records = []
    for i in range(count):
        out = random_event("eu" if i % 2 else "us", "eu.events", rng, now, i)
        records.append(KafkaRecord(out.topic, i % 6, i, now, out.value, out.headers))
    started = time.perf_counter()
    batches, rows = [], []
    for rec in records:
        rows.append(event_row(rec, now + 50, 1 << 20))
        if len(rows) == batch:
            batches.append(rows)
            rows = []
    if rows:
        batches.append(rows)
    return batches, count / (time.perf_counter() - started)


def bench_direct(client: ChdbClient, count: int, batch: int, fsync: bool) -> float:
    tables = Tables("bench_direct_fsync" if fsync else "bench_direct")
    create_schema(client, tables, fsync)
    batches, _ = realistic_batches(count, batch)
    started = time.perf_counter()
    for rows in batches:
        client.insert(tables.events, EVENT_COLUMNS, rows)
    return count / (time.perf_counter() - started)


async def bench_kafka(clickhouse: AsyncClickHouse, workdir: Path, count: int) -> dict[str, float]:
    cluster = KafkaCluster(workdir / "kafka", partitions=6, heap="512m")
    while cluster.cluster_id.startswith("-"):  # StorageTool takes a leading '-' for an option
        cluster.cluster_id = KafkaCluster(workdir / "kafka").cluster_id
    await asyncio.to_thread(cluster.start)  # its readiness check runs its own event loop
    try:
        rng = random.Random(9)
        records = [random_event(r, f"{r}.events", rng, index=i) for i in range(count // 2) for r in ("eu", "us")]
        started = time.perf_counter()
        await produce(cluster.bootstrap, records, per_transaction=5000)
        produce_rate = len(records) / (time.perf_counter() - started)
        say(f"produced {len(records)} transactionally at {produce_rate:,.0f}/s")
        tables = Tables("bench_kafka")
        await clickhouse.in_writer(create_schema, clickhouse.client, tables, True)
        queries = Queries(clickhouse, tables)
        loader = Loader(LoaderConfig(bootstrap=cluster.bootstrap, group="bench", batch_size=10_000,
                                     batch_interval=1.0), clickhouse, tables, CentralMetrics())
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(loader.run(stop))

        async def all_loaded() -> bool:
            return (await queries.summary())["events"] >= len(records)

        await wait_until_async(all_loaded, 300, interval=0.2, what=f"all {len(records)} records loaded")
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return {"kafka_produce_events_per_s": round(produce_rate),
                "kafka_to_chdb_events_per_s": round(len(records) / elapsed)}
    finally:
        cluster.stop()


async def bench_queries(clickhouse: AsyncClickHouse, rows: int, repeat: int) -> dict[str, Any]:
    tables = Tables("bench_10m")
    await clickhouse.in_writer(create_schema, clickhouse.client, tables, False)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    # 10M events over the last 24 hours, 3 regions, UUIDv7 ids (time-ordered, like the edge's)
    await clickhouse.execute(f"""
        INSERT INTO {tables.events} (event_id, event, os, browser, country, region, edge, user_id, properties,
            received_at, event_time, mirrored_at, loaded_at, topic, partition, offset, source_topic)
        SELECT toString(generateUUIDv7(number)),
               ['page_view','click','signup','purchase','search','logout'][number % 6 + 1],
               ['Android','iOS','Windows','macOS','Linux'][intHash32(number) % 5 + 1],
               ['Chrome','Safari','Firefox','Edge','Samsung'][intHash32(number + 1) % 5 + 1],
               ['DE','FR','GB','US','BR','JP','RU','IN'][intHash32(number + 2) % 8 + 1],
               ['eu','us','ap'][number % 3 + 1], concat('edge-', toString(number % 4)),
               concat('user-', toString(intHash32(number) % 100000)), '{{"url":"https://shop.example/p/1"}}',
               fromUnixTimestamp64Milli(toInt64({{now:Int64}} - 86400000 + intDiv(number * 86400000, {{rows:Int64}})), 'UTC') AS r,
               r, r + toIntervalMillisecond(20), r + toIntervalMillisecond(50 + number % 900),
               concat(['eu','us','ap'][number % 3 + 1], '.events'), number % 6, number, 'events'
        FROM numbers({{rows:UInt64}})""", {"now": now, "rows": rows})
    await clickhouse.execute(f"OPTIMIZE TABLE {tables.events} FINAL")
    gen_s = time.perf_counter() - started
    say(f"generated {rows:,} rows in {gen_s:.1f}s")
    one_id = (await clickhouse.select(f"SELECT event_id FROM {tables.events} LIMIT 1 OFFSET 123456"))[0]["event_id"]
    q = Queries(clickhouse, tables)
    hour = TimeRange(now - 3_600_000, now)
    day = TimeRange(now - 86_400_000, now)
    cases = {
        "counts_by_region_1m_last_hour": lambda: q.counts("region", 60, hour),
        "counts_by_region_5m_last_day": lambda: q.counts("region", 300, day),
        "top_events_last_hour": lambda: q.top("event", hour, 10),
        "top_os_last_hour": lambda: q.top("os", hour, 10),
        "top_browsers_last_hour": lambda: q.top("browser", hour, 10),
        "top_events_last_day": lambda: q.top("event", day, 10),
        "latency_last_hour": lambda: q.latency(hour),
        "latency_last_day": lambda: q.latency(day),
        "freshness": lambda: q.freshness(),
        "event_by_id": lambda: q.event(one_id),
        "summary_count_final": lambda: q.summary(),
    }
    out: dict[str, Any] = {"rows": rows, "generate_s": round(gen_s, 1)}
    for name, run in cases.items():
        await run()  # warm
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await run()
            times.append((time.perf_counter() - t0) * 1000)
        out[f"{name}_ms"] = round(statistics.median(times), 1)
        say(f"{name}: median {statistics.median(times):.1f} ms over {repeat}")
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        workdir = Path(tmp)
        client = ChdbClient(str(workdir / "chdb"))
        clickhouse = AsyncClickHouse(client)
        result: dict[str, Any] = {"bench": "central"}
        try:
            _, decode_rate = realistic_batches(50_000, 10_000)
            result["decode_events_per_s"] = round(decode_rate)
            say(f"record decoding (Python, one core): {decode_rate:,.0f}/s")
            for fsync in (False, True):
                rate = await clickhouse.in_writer(bench_direct, client, args.direct_events, 10_000, fsync)
                key = "direct_insert_events_per_s" + ("_fsync" if fsync else "")
                result[key] = round(rate)
                say(f"direct inserts of 10k-row batches{' (fsync)' if fsync else ''}: {rate:,.0f}/s")
            if args.kafka_events:
                result.update(await bench_kafka(clickhouse, workdir, args.kafka_events))
                say(f"through Kafka with the loader: {result['kafka_to_chdb_events_per_s']:,}/s")
            result["queries"] = await bench_queries(clickhouse, args.rows, args.repeat)
        finally:
            clickhouse.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.central", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows for the query benchmark")
    parser.add_argument("--direct-events", type=int, default=200_000)
    parser.add_argument("--kafka-events", type=int, default=100_000, help="0 to skip the Kafka run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(main_async(args))).decode(), flush=True)


if __name__ == "__main__":
    main()
