"""The API's queries: validated parameters in, parameterised SQL out (user input is never
interpolated into SQL; dimension names come from an allow-list of column names)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from central.clickhouse import AsyncClickHouse, Rows
from central.schema import Tables

DIMENSIONS = {"region": "region", "event": "event", "os": "os", "browser": "browser",
              "country": "country", "edge": "edge"}
BUCKETS_S = (1, 10, 60, 300, 900, 3600, 21600, 86400)
MAX_BUCKETS = 5000
MAX_RANGE_MS = 93 * 86400 * 1000
MAX_LIMIT = 100
DEFAULT_RANGE_MS = 3600 * 1000


class BadParameter(ValueError):
    """A query parameter that fails validation (answered with 400)."""


def parse_time(raw: str, name: str) -> int:
    """``raw`` as ms since the epoch: an integer (ms) or ISO 8601 text (UTC when no offset)."""
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        value = int(raw)
    else:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise BadParameter(f"{name}: expected ms since the epoch or ISO 8601, got {raw[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = int(parsed.timestamp() * 1000)
    if not 0 <= value < 253402300800000:
        raise BadParameter(f"{name}: out of range")
    return value


@dataclass(frozen=True)
class TimeRange:
    """A half-open interval [start, end) in ms since the epoch."""

    start: int
    end: int

    @classmethod
    def from_params(cls, params: Mapping[str, str], now_ms: int | None = None) -> "TimeRange":
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        end = parse_time(params["to"], "to") if params.get("to") else now_ms
        start = parse_time(params["from"], "from") if params.get("from") else end - DEFAULT_RANGE_MS
        if start >= end:
            raise BadParameter("from must be before to")
        if end - start > MAX_RANGE_MS:
            raise BadParameter(f"time range longer than {MAX_RANGE_MS // 86400000} days")
        return cls(start, end)

    def sql_params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end}


_IN_RANGE = ("event_time >= fromUnixTimestamp64Milli(toInt64({start:Int64}), 'UTC') "
             "AND event_time < fromUnixTimestamp64Milli(toInt64({end:Int64}), 'UTC')")


def dimension(params: Mapping[str, str], default: str = "region") -> str:
    name = params.get("by", default)
    if name not in DIMENSIONS:
        raise BadParameter(f"by: one of {sorted(DIMENSIONS)}, got {name[:40]!r}")
    return DIMENSIONS[name]


def bucket_seconds(params: Mapping[str, str], span_ms: int) -> int:
    raw = params.get("bucket", "60")
    if not raw.isdigit() or int(raw) not in BUCKETS_S:
        raise BadParameter(f"bucket: seconds, one of {list(BUCKETS_S)}, got {raw[:40]!r}")
    seconds = int(raw)
    if span_ms / (seconds * 1000) > MAX_BUCKETS:
        raise BadParameter(f"more than {MAX_BUCKETS} buckets: widen the bucket or narrow the range")
    return seconds


def limit(params: Mapping[str, str], default: int = 10) -> int:
    raw = params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadParameter(f"limit: an integer in 1..{MAX_LIMIT}")
    return int(raw)


class Queries:
    """The dashboard's and the API's queries against the three tables (all read with FINAL)."""

    def __init__(self, clickhouse: AsyncClickHouse, tables: Tables) -> None:
        self.ch = clickhouse
        self.t = tables

    async def counts(self, by: str, bucket_s: int, rng: TimeRange) -> Rows:
        """Events per time bucket and value of ``by`` (an allow-listed column)."""
        assert by in DIMENSIONS.values()
        sql = (f"SELECT intDiv(toUnixTimestamp64Milli(event_time), {{bucket_ms:Int64}}) * {{bucket_ms:Int64}} AS t, "
               f"{by} AS key, count() AS count FROM {self.t.events} FINAL WHERE {_IN_RANGE} "
               f"GROUP BY t, key ORDER BY t, key")
        return await self.ch.select(sql, {**rng.sql_params(), "bucket_ms": bucket_s * 1000})

    async def top(self, by: str, rng: TimeRange, n: int) -> Rows:
        """The ``n`` most frequent values of ``by`` in the range."""
        assert by in DIMENSIONS.values()
        sql = (f"SELECT {by} AS key, count() AS count FROM {self.t.events} FINAL WHERE {_IN_RANGE} "
               f"GROUP BY key ORDER BY count DESC, key LIMIT {{n:UInt32}}")
        return await self.ch.select(sql, {**rng.sql_params(), "n": n})

    async def latency(self, rng: TimeRange) -> Rows:
        """End-to-end latency (edge receive → load) percentiles per region, in ms, and its two
        legs' p99: edge receive → mirrored (regional Kafka, the WAN, the mirror's round) and
        mirrored → load (the central commit and the loader)."""
        received, mirrored, loaded = (f"toUnixTimestamp64Milli({c})" for c in ("received_at", "mirrored_at", "loaded_at"))
        sql = (f"SELECT region, count() AS count, "
               f"quantilesExact(0.5, 0.9, 0.99)({loaded} - {received}) AS q, "
               f"max({loaded} - {received}) AS max_ms, "
               f"quantileExact(0.99)({mirrored} - {received}) AS mirror_p99, "
               f"quantileExact(0.99)({loaded} - {mirrored}) AS load_p99 "
               f"FROM {self.t.events} FINAL WHERE {_IN_RANGE} GROUP BY region ORDER BY region")
        rows = await self.ch.select(sql, rng.sql_params())
        return [{"region": r["region"], "count": r["count"], "p50_ms": r["q"][0], "p90_ms": r["q"][1],
                 "p99_ms": r["q"][2], "max_ms": r["max_ms"], "mirror_p99_ms": r["mirror_p99"],
                 "load_p99_ms": r["load_p99"]} for r in rows]

    async def freshness(self) -> Rows:
        """Per region: the last heartbeat loaded and how far behind real time it is (ms)."""
        sql = (f"SELECT region, toUnixTimestamp64Milli(max(ts)) AS last_heartbeat_ms, "
               f"toUnixTimestamp64Milli(now64(3)) - toUnixTimestamp64Milli(max(ts)) AS behind_ms, "
               f"toUnixTimestamp64Milli(max(loaded_at)) AS last_loaded_ms "
               f"FROM {self.t.heartbeats} GROUP BY region ORDER BY region")
        return await self.ch.select(sql)

    async def event(self, event_id: str) -> dict[str, Any] | None:
        """One event by id, times in ms since the epoch."""
        sql = (f"SELECT event_id, event, os, browser, country, region, edge, user_id, client_ip, properties, "
               f"toUnixTimestamp64Milli(client_ts) AS client_ts, toUnixTimestamp64Milli(sent_at) AS sent_at, "
               f"toUnixTimestamp64Milli(received_at) AS received_at, toUnixTimestamp64Milli(event_time) AS event_time, "
               f"toUnixTimestamp64Milli(mirrored_at) AS mirrored_at, toUnixTimestamp64Milli(loaded_at) AS loaded_at, "
               f"topic, partition, offset, source_topic, source_partition, source_offset "
               f"FROM {self.t.events} FINAL WHERE event_id = {{id:String}} LIMIT 1")
        rows = await self.ch.select(sql, {"id": event_id})
        return rows[0] if rows else None

    async def summary(self) -> dict[str, Any]:
        """Totals: events (deduplicated), quarantined records by reason, heartbeats."""
        events = await self.ch.select(f"SELECT count() AS n FROM {self.t.events} FINAL")
        quarantine = await self.ch.select(
            f"SELECT reason, count() AS n FROM {self.t.quarantine} FINAL GROUP BY reason ORDER BY reason")
        heartbeats = await self.ch.select(f"SELECT count() AS n FROM {self.t.heartbeats} FINAL")
        return {"events": events[0]["n"], "quarantined": {r["reason"]: r["n"] for r in quarantine},
                "heartbeats": heartbeats[0]["n"]}

    async def audit(self, run_id: str, with_ids: bool) -> dict[str, Any]:
        """Exactly-once evidence for one load run (events carrying ``run_id``).

        ``events`` and ``by_region``: what queries see (deduplicated); ``duplicates``: event ids
        that queries would return more than once (must be 0). Duplicates upstream (the same event
        id at two central Kafka positions) are merged away by the table; count them in Kafka.
        """
        rows = await self.ch.select(
            f"SELECT event_id, region FROM {self.t.events} FINAL "
            "WHERE JSONExtractString(properties, 'run_id') = {run:String}", {"run": run_id})
        ids = {r["event_id"] for r in rows}
        by_region: dict[str, int] = {}
        for row in rows:
            by_region[row["region"]] = by_region.get(row["region"], 0) + 1
        doc: dict[str, Any] = {"run_id": run_id, "events": len(rows), "by_region": by_region,
                               "duplicates": len(rows) - len(ids)}
        if with_ids:
            doc["event_ids"] = sorted(ids)
        return doc

    async def ping(self) -> bool:
        rows = await self.ch.select("SELECT 1 AS ok")
        return bool(rows and rows[0]["ok"] == 1)
