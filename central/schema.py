"""The tables geo-central writes: events, quarantine, heartbeats (ReplacingMergeTree, so a
replayed batch leaves one visible row per key when read with FINAL)."""

from __future__ import annotations

from dataclasses import dataclass

from central.clickhouse import ClickHouseClient, identifier

_DT = "DateTime64(3, 'UTC')"

#: Column order of the rows that :mod:`central.records` builds for each table.
EVENT_COLUMNS = ("event_id", "event", "os", "browser", "country", "region", "edge", "user_id", "client_ip",
                 "properties", "client_ts", "sent_at", "received_at", "event_time", "mirrored_at", "loaded_at",
                 "topic", "partition", "offset", "source_topic", "source_partition", "source_offset")
HEARTBEAT_COLUMNS = ("region", "ts", "mirrored_at", "loaded_at", "topic", "partition", "offset")
QUARANTINE_COLUMNS = ("reason", "detail", "topic", "partition", "offset", "kafka_ts", "headers", "value_size",
                      "value_preview", "loaded_at")


@dataclass(frozen=True)
class Tables:
    """Fully qualified table names in ``database``."""

    database: str = "geo"

    def __post_init__(self) -> None:
        identifier(self.database)

    @property
    def events(self) -> str:
        return f"{self.database}.events"

    @property
    def quarantine(self) -> str:
        return f"{self.database}.quarantine"

    @property
    def heartbeats(self) -> str:
        return f"{self.database}.heartbeats"


def ddl(tables: Tables, fsync: bool = True) -> list[str]:
    """CREATE statements (idempotent) for the database and its three tables."""
    settings = f"SETTINGS fsync_after_insert = {int(fsync)}, fsync_part_directory = {int(fsync)}"
    return [
        f"CREATE DATABASE IF NOT EXISTS {tables.database}",
        f"""CREATE TABLE IF NOT EXISTS {tables.events} (
            event_id String,
            event LowCardinality(String),
            os LowCardinality(String),
            browser LowCardinality(String),
            country LowCardinality(String),
            region LowCardinality(String),
            edge LowCardinality(String),
            user_id String,
            client_ip String,
            properties String,
            client_ts Nullable({_DT}),
            sent_at Nullable({_DT}),
            received_at {_DT},
            event_time {_DT},
            mirrored_at Nullable({_DT}),
            loaded_at {_DT},
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            source_topic LowCardinality(String),
            source_partition Nullable(UInt32),
            source_offset Nullable(UInt64),
            INDEX idx_event_time event_time TYPE minmax GRANULARITY 1,
            INDEX idx_received_at received_at TYPE minmax GRANULARITY 1
        ) ENGINE = ReplacingMergeTree
        ORDER BY event_id
        {settings}""",
        f"""CREATE TABLE IF NOT EXISTS {tables.quarantine} (
            reason LowCardinality(String),
            detail String,
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            kafka_ts Nullable({_DT}),
            headers String,
            value_size UInt64,
            value_preview String,
            loaded_at {_DT}
        ) ENGINE = ReplacingMergeTree
        ORDER BY (topic, partition, offset)
        {settings}""",
        f"""CREATE TABLE IF NOT EXISTS {tables.heartbeats} (
            region LowCardinality(String),
            ts {_DT},
            mirrored_at Nullable({_DT}),
            loaded_at {_DT},
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64
        ) ENGINE = ReplacingMergeTree
        ORDER BY (region, ts)
        {settings}""",
    ]


def create_schema(client: ClickHouseClient, tables: Tables, fsync: bool = True) -> None:
    """Create the database and tables if they do not exist (blocking; run it in the writer thread)."""
    for statement in ddl(tables, fsync):
        client.execute(statement)
