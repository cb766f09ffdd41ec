"""``geo-central``: the loader, the query API and the dashboard in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Sequence

import uvicorn

from central.api import build_app
from central.clickhouse import DEFAULT_MERGE_NICE, AsyncClickHouse, make_client
from central.loader import DEFAULT_EVENTS_PATTERN, DEFAULT_HEARTBEATS_PATTERN, Loader, LoaderConfig
from central.metrics import CentralMetrics
from central.queries import Queries
from central.schema import Tables, create_schema
from service_kit import kafka_security
from service_kit.config import EnvArgumentParser
from service_kit.gc_tuning import tune_for_throughput
from service_kit.logs import configure_logging
from service_kit.shutdown import shutdown_event

log = logging.getLogger("central")


def build_parser() -> EnvArgumentParser:
    p = EnvArgumentParser(prog="geo-central", description=__doc__)
    p.add_argument("--bootstrap", env="GEO_CENTRAL_BOOTSTRAP", default="127.0.0.1:39092",
                   help="central Kafka cluster (host:port, comma list)")
    p.add_argument("--group", env="GEO_CENTRAL_GROUP", default="geo-central", help="consumer group")
    kafka_security.add_arguments(p, "kafka", "GEO_CENTRAL_KAFKA", "the central Kafka")
    p.add_argument("--events-pattern", env="GEO_CENTRAL_EVENTS_PATTERN", default=DEFAULT_EVENTS_PATTERN,
                   help="regex of the mirrored event topics")
    p.add_argument("--heartbeats-pattern", env="GEO_CENTRAL_HEARTBEATS_PATTERN",
                   default=DEFAULT_HEARTBEATS_PATTERN, help="regex of the mirrored heartbeat topics")
    p.add_argument("--clickhouse-url", env="GEO_CENTRAL_CLICKHOUSE_URL", default="",
                   help="ClickHouse server HTTP URL (http://user:pass@host:8123); empty: chdb embedded")
    p.add_argument("--data-dir", env="GEO_CENTRAL_DATA_DIR", default="var/central/chdb",
                   help="chdb data directory (when no --clickhouse-url)")
    p.add_argument("--merge-nice", env="GEO_CENTRAL_MERGE_NICE", type=int, default=DEFAULT_MERGE_NICE,
                   choices=range(0, 20), metavar="0-19",
                   help="nice value of chdb's background merge threads: merges yield the CPU to "
                        "inserts and everything else on the host (0: as the loader)")
    p.add_argument("--database", env="GEO_CENTRAL_DATABASE", default="geo", help="ClickHouse database")
    p.add_argument("--batch-size", env="GEO_CENTRAL_BATCH_SIZE", type=int, default=50_000,
                   help="flush a batch at this many records")
    p.add_argument("--batch-interval", env="GEO_CENTRAL_BATCH_INTERVAL", type=float, default=0.25,
                   help="... or as soon as the previous batch is inserted and this many seconds "
                        "have passed since its insert started (inserts are spaced; a batch never "
                        "waits for a timer once they are)")
    p.add_argument("--max-record-bytes", env="GEO_CENTRAL_MAX_RECORD_BYTES", type=int, default=1_048_576,
                   help="larger records are quarantined")
    p.add_argument("--metadata-max-age-ms", env="GEO_CENTRAL_METADATA_MAX_AGE_MS", type=int, default=5000,
                   help="how often new topics (regions) are looked for")
    p.add_argument("--no-fsync", env="GEO_CENTRAL_NO_FSYNC", action="store_true",
                   help="do not fsync inserted parts (then a batch survives a process crash, not a power cut)")
    p.add_argument("--host", env="GEO_CENTRAL_HOST", default="127.0.0.1", help="API/dashboard listen host")
    p.add_argument("--port", env="GEO_CENTRAL_PORT", type=int, default=38080,
                   help="API, dashboard, /status and /metrics port")
    p.add_argument("--no-loader", env="GEO_CENTRAL_NO_LOADER", action="store_true",
                   help="serve the API only (no Kafka)")
    p.add_argument("--log-level", env="GEO_CENTRAL_LOG_LEVEL", default="info")
    p.add_argument("--test-crash-after-insert", env="GEO_CENTRAL_TEST_CRASH_AFTER_INSERT", type=int, default=0,
                   help="TEST HOOK: exit(99) right after the Nth batch is inserted, before its offsets "
                        "are committed (0: off)")
    return p


async def run(args: Any) -> None:
    """Open ClickHouse, create the schema, serve the API and run the loader until SIGTERM."""
    stop = shutdown_event()
    tables = Tables(args.database)
    metrics = CentralMetrics()
    clickhouse = AsyncClickHouse(make_client(args.clickhouse_url or None, args.data_dir, args.merge_nice))
    try:
        await clickhouse.in_writer(create_schema, clickhouse.client, tables, not args.no_fsync)
        queries = Queries(clickhouse, tables)
        loader = None if args.no_loader else Loader(LoaderConfig(
            bootstrap=args.bootstrap, group=args.group, events_pattern=args.events_pattern,
            heartbeats_pattern=args.heartbeats_pattern, batch_size=args.batch_size,
            batch_interval=args.batch_interval, max_record_bytes=args.max_record_bytes,
            metadata_max_age_ms=args.metadata_max_age_ms,
            crash_after_insert=args.test_crash_after_insert,
            security=args.kafka_security), clickhouse, tables, metrics)

        async def health() -> tuple[bool, dict[str, Any]]:
            details: dict[str, Any] = {"clickhouse": args.clickhouse_url and "http" or "chdb"}
            try:
                ch_ok = await asyncio.wait_for(queries.ping(), 5)
            except Exception as exc:  # health reports, never raises
                ch_ok, details["clickhouse_error"] = False, str(exc)[:300]
            details["clickhouse_ok"] = ch_ok
            ok = ch_ok
            if loader is not None:
                details["loader"] = dict(loader.state)
                ok = ok and loader.state["running"] and not loader.state["insert_failing"]
            return ok, details

        server = uvicorn.Server(uvicorn.Config(build_app(queries, metrics, health), host=args.host,
                                               port=args.port, log_config=None, access_log=False,
                                               lifespan="off"))
        # uvicorn >= 0.29 captures SIGTERM itself and re-raises it on exit; the service's own
        # shutdown event handles signals here.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        server_task = asyncio.create_task(server.serve())
        log.info("geo-central serving", extra={"host": args.host, "port": args.port,
                                                "clickhouse": args.clickhouse_url or args.data_dir})
        tune_for_throughput()  # the loader allocates per record (service_kit.gc_tuning)
        loader_task = asyncio.create_task(loader.run(stop)) if loader else None
        waiters = [asyncio.create_task(stop.wait()), server_task] + ([loader_task] if loader_task else [])
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        if loader_task is not None:
            try:
                await asyncio.wait_for(loader_task, 30)
            except asyncio.TimeoutError:
                loader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loader_task
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await server_task
        for task in done:
            if task is not stop and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        clickhouse.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.kafka_security = kafka_security.from_args(args, "kafka", "GEO_CENTRAL_KAFKA")
    except kafka_security.KafkaSettingsError as exc:
        parser.error(str(exc))
    configure_logging(args.log_level, service="geo-central")
    started = time.time()
    try:
        try:
            import uvloop
            uvloop.run(run(args))
        except ImportError:
            asyncio.run(run(args))
    except Exception:
        log.exception("geo-central failed")
        return 1
    log.info("geo-central exited", extra={"uptime_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
