"""The query API's numbers against a known data set in real chdb, and its parameter validation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import orjson
import pytest

from central.api import build_app
from central.clickhouse import AsyncClickHouse, ChdbClient
from central.metrics import CentralMetrics
from central.queries import Queries
from central.records import KafkaRecord, Row, ch_time, event_row
from central.sample import event_headers
from central.schema import EVENT_COLUMNS, HEARTBEAT_COLUMNS, Tables, create_schema

MINUTE = 60_000


def known_rows(base: int) -> list[Row]:
    """eu: 10 events one per minute, latency 100..1000 ms; us: 5 events, latency 1000 ms; one old."""
    rows = []
    for i in range(10):
        doc = {"event": "click" if i < 6 else "view", "os": "iOS", "browser": "Safari", "n": i}
        rec = KafkaRecord("eu.events", 0, i, None, orjson.dumps(doc),
                          event_headers(f"eu-{i}", "eu", base + i * MINUTE, country="DE"))
        rows.append(event_row(rec, base + i * MINUTE + 100 * (i + 1), 1 << 20))
    for i in range(5):
        doc = {"event": "view", "os": "Android", "browser": "Chrome"}
        rec = KafkaRecord("us.events", 1, i, None, orjson.dumps(doc),
                          event_headers(f"us-{i}", "us", base + i * MINUTE + 30_000, country="US"))
        rows.append(event_row(rec, base + i * MINUTE + 31_000, 1 << 20))
    old = KafkaRecord("us.events", 1, 99, None, b'{"event":"old"}', event_headers("old", "us", base - 7_200_000))
    rows.append(event_row(old, base - 7_200_000 + 5, 1 << 20))
    return rows


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int, int]]:
    clickhouse = AsyncClickHouse(ChdbClient(str(tmp_path / "chdb")))
    tables = Tables("geo")
    await clickhouse.in_writer(create_schema, clickhouse.client, tables, False)
    now = int(time.time() * 1000)
    base = (now // (5 * MINUTE)) * 5 * MINUTE - 30 * MINUTE
    rows = known_rows(base)
    await clickhouse.insert(tables.events, EVENT_COLUMNS, rows)
    await clickhouse.insert(tables.events, EVENT_COLUMNS, rows)  # a replayed batch changes no number
    beats = [("eu", ch_time(now - 2_000), None, ch_time(now), "eu.heartbeats", 0, 0),
             ("us", ch_time(now - 9_000), None, ch_time(now), "us.heartbeats", 0, 0)]
    await clickhouse.insert(tables.heartbeats, HEARTBEAT_COLUMNS, beats)

    async def health() -> tuple[bool, dict[str, Any]]:
        return True, {}

    app = build_app(Queries(clickhouse, tables), CentralMetrics(), health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://central") as client:
        yield client, base, now
    clickhouse.close()


async def test_counts_top_latency_freshness_event(api) -> None:
    client, base, now = api
    rng = f"from={base}&to={base + 10 * MINUTE}"
    counts = (await client.get(f"/api/counts?by=region&bucket=60&{rng}")).json()
    assert counts["bucket_s"] == 60
    got = {(r["t"], r["key"]): r["count"] for r in counts["rows"]}
    want = {(base + i * MINUTE, "eu"): 1 for i in range(10)} | {(base + i * MINUTE, "us"): 1 for i in range(5)}
    assert got == want
    by_event = (await client.get(f"/api/counts?by=event&bucket=300&{rng}")).json()["rows"]
    assert {(r["t"] - base, r["key"]): r["count"] for r in by_event} == {
        (0, "click"): 5, (0, "view"): 5, (5 * MINUTE, "click"): 1, (5 * MINUTE, "view"): 4}
    for by, want_top in (("event", [["view", 9], ["click", 6]]), ("os", [["iOS", 10], ["Android", 5]]),
                         ("browser", [["Safari", 10], ["Chrome", 5]]), ("country", [["DE", 10], ["US", 5]])):
        top = (await client.get(f"/api/top?by={by}&limit=5&{rng}")).json()["rows"]
        assert [[r["key"], r["count"]] for r in top] == want_top, by
    latency = {r["region"]: r for r in (await client.get(f"/api/latency?{rng}")).json()["rows"]}
    assert latency["eu"] == {"region": "eu", "count": 10, "p50_ms": 600, "p90_ms": 1000, "p99_ms": 1000,
                             "max_ms": 1000, "mirror_p99_ms": 5, "load_p99_ms": 995}  # mirrored 5 ms after receive
    assert latency["us"]["p50_ms"] == 1000 and latency["us"]["count"] == 5
    fresh = {r["region"]: r for r in (await client.get("/api/freshness")).json()["rows"]}
    assert fresh["eu"]["last_heartbeat_ms"] == now - 2_000 and fresh["us"]["last_heartbeat_ms"] == now - 9_000
    assert 2_000 <= fresh["eu"]["behind_ms"] < 60_000 and fresh["us"]["behind_ms"] >= 9_000
    event = (await client.get("/api/events/eu-3")).json()
    assert event["event"] == "click" and event["region"] == "eu" and orjson.loads(event["properties"]) == {"n": 3}
    assert event["received_at"] == base + 3 * MINUTE and event["loaded_at"] == base + 3 * MINUTE + 400
    assert event["offset"] == 3 and event["source_topic"] == "events"
    assert (await client.get("/api/events/nope")).status_code == 404
    assert (await client.get("/api/summary")).json()["events"] == 16


@pytest.mark.parametrize("query", [
    "/api/counts?by=password", "/api/counts?by=region%3B%20DROP%20TABLE%20geo.events", "/api/counts?bucket=7",
    "/api/counts?bucket=abc", "/api/counts?from=200&to=100", "/api/counts?from=yesterday",
    "/api/counts?bucket=1&from=0&to=86400000", "/api/top?limit=0", "/api/top?limit=1000",
    "/api/latency?from=0&to=99999999999999",
])
async def test_bad_parameters_are_400(api, query: str) -> None:
    client, _, _ = api
    response = await client.get(query)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert (await client.get("/api/summary")).json()["events"] == 16


async def test_audit_counts_a_run_once(tmp_path: Path) -> None:
    clickhouse = AsyncClickHouse(ChdbClient(str(tmp_path / "chdb-audit")))
    tables = Tables("geo")
    await clickhouse.in_writer(create_schema, clickhouse.client, tables, False)
    now = int(time.time() * 1000)
    rows = []
    for i in range(6):  # run r1: 4 events in eu, 2 in us; event r1-0 delivered twice (offsets 0, 100)
        region = "eu" if i < 4 else "us"
        doc = {"event": "view", "run_id": "r1"}
        rows.append(event_row(KafkaRecord(f"{region}.events", 0, i, None, orjson.dumps(doc),
                                          event_headers(f"r1-{i}", region, now)), now + 5, 1 << 20))
    rows.append(event_row(KafkaRecord("eu.events", 0, 100, None, b'{"event":"view","run_id":"r1"}',
                                      event_headers("r1-0", "eu", now)), now + 5, 1 << 20))
    rows.append(event_row(KafkaRecord("eu.events", 0, 7, None, b'{"event":"view","run_id":"other"}',
                                      event_headers("o-1", "eu", now)), now + 5, 1 << 20))
    await clickhouse.insert(tables.events, EVENT_COLUMNS, rows)
    await clickhouse.insert(tables.events, EVENT_COLUMNS, rows)  # a loader replay

    async def health() -> tuple[bool, dict[str, Any]]:
        return True, {}

    app = build_app(Queries(clickhouse, tables), CentralMetrics(), health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://central") as client:
        doc = (await client.get("/api/audit?run_id=r1&ids=1")).json()
        assert (await client.get("/api/audit")).status_code == 400
    clickhouse.close()
    assert doc["events"] == 6 and doc["by_region"] == {"eu": 4, "us": 2}
    assert doc["duplicates"] == 0
    assert sorted(doc["event_ids"]) == [f"r1-{i}" for i in range(6)]
