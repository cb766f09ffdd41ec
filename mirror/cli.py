"""``geo-mirror``: run the mirror worker (flags, or ``GEO_MIRROR_*`` environment variables)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Sequence

from service_kit import kafka_security
from service_kit.admin import serve_admin
from service_kit.config import EnvArgumentParser
from service_kit.logs import configure_logging
from service_kit.shutdown import shutdown_event

from mirror.config import MirrorConfig
from mirror.metrics import MirrorMetrics
from mirror.policy import DEFAULT_EXCLUDE, ReplicationPolicy, TopicFilter
from mirror.consul_regions import ConsulRegions
from mirror.regions import RegionSource, StaticRegions, parse_region_flags, regions_from_file
from service_kit.regions import load_regions
from mirror.worker import MirrorWorker

log = logging.getLogger("mirror")


def build_parser() -> EnvArgumentParser:
    p = EnvArgumentParser(prog="geo-mirror", description=(
        "Copy regional Kafka topics into the central cluster, exactly once by default."))
    p.add_argument("--central", env="GEO_MIRROR_CENTRAL", default="127.0.0.1:39092",
                   help="central Kafka bootstrap servers")
    p.add_argument("--region", dest="regions", action="extend", nargs="+", default=[],
                   env="GEO_MIRROR_REGIONS", metavar="NAME=HOST:PORT",
                   help="a source region (repeatable); without any, the edge regions of the regions file")
    p.add_argument("--regions-file", env="GEOINGEST_REGIONS", default=None,
                   help="regions.yaml to read regions from when no --region and no --consul-url is given")
    p.add_argument("--consul-url", env="GEO_MIRROR_CONSUL_URL", default="",
                   help="discover regions in Consul: every service `kafka` (Meta.region, Meta.bootstrap) "
                        "in --consul-datacenters; regions come and go at run time")
    p.add_argument("--consul-datacenters", env="GEO_MIRROR_CONSUL_DATACENTERS", nargs="*", default=[],
                   help="datacenters to watch (default: the edge regions' datacenters of the regions file)")
    p.add_argument("--consul-token", env="GEO_MIRROR_CONSUL_TOKEN", default="",
                   help="Consul ACL token (policy `mirror`, read only); never logged")
    p.add_argument("--include", nargs="+", default=[".*"], env="GEO_MIRROR_INCLUDE",
                   help="regexes of topics to mirror (whole name)")
    p.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), env="GEO_MIRROR_EXCLUDE",
                   help="regexes of topics never mirrored (already-mirrored topics always are)")
    p.add_argument("--separator", default=".", env="GEO_MIRROR_SEPARATOR",
                   help="between region and topic in target names")
    p.add_argument("--identity-naming", action="store_true", env="GEO_MIRROR_IDENTITY_NAMING",
                   help="keep source topic names (cycles still stopped by provenance header)")
    p.add_argument("--at-least-once", action="store_true", env="GEO_MIRROR_AT_LEAST_ONCE",
                   help="no transactions: faster, duplicates possible after a crash")
    p.add_argument("--source-group", default="geo-mirror", env="GEO_MIRROR_SOURCE_GROUP",
                   help="consumer group on each source cluster that splits partitions between workers")
    p.add_argument("--positions-group", default="geo-mirror-positions", env="GEO_MIRROR_POSITIONS_GROUP",
                   help="group on the central cluster holding committed source positions")
    p.add_argument("--transactional-id-prefix", default="geo-mirror", env="GEO_MIRROR_TRANSACTIONAL_ID_PREFIX")
    p.add_argument("--slots-per-region", type=int, default=2, env="GEO_MIRROR_SLOTS_PER_REGION",
                   help="transaction slots per region: a round commits one transaction per slot (id "
                        "<prefix>-<region>-slot-<k>) and the source group hands out whole slots, so at most "
                        "this many workers share a region; every worker of a group must use the same value "
                        "(change it with all workers stopped)")
    p.add_argument("--replication-factor", type=int, default=1, env="GEO_MIRROR_REPLICATION_FACTOR",
                   help="of target topics created by the mirror")
    p.add_argument("--refresh-interval", type=float, default=2.0, env="GEO_MIRROR_REFRESH_INTERVAL",
                   help="seconds between checks for new topics, partitions and settings")
    p.add_argument("--batch-interval-ms", type=int, default=100, env="GEO_MIRROR_BATCH_INTERVAL_MS",
                   help="how long a fetch waits for records when the region is idle (the flow then checks its tasks)")
    p.add_argument("--transaction-interval-ms", type=int, default=0, env="GEO_MIRROR_TRANSACTION_INTERVAL_MS",
                   help="shortest time between two rounds of a region (0: a round starts as soon as the "
                        "last one committed and records are there); what arrives meanwhile joins the next round")
    p.add_argument("--max-transactions-per-second", type=float, default=100.0,
                   env="GEO_MIRROR_MAX_TRANSACTIONS_PER_SECOND",
                   help="central transactions per second all regions of this worker may start together (one "
                        "per slot a round touched; each costs the central brokers several log writes whatever "
                        "its size): a round short of budget keeps collecting; 0: no bound")
    p.add_argument("--max-batch-records", type=int, default=50000, env="GEO_MIRROR_MAX_BATCH_RECORDS",
                   help="records per transaction round (all partitions of a region)")
    p.add_argument("--transaction-timeout-ms", type=int, default=30000, env="GEO_MIRROR_TRANSACTION_TIMEOUT_MS")
    p.add_argument("--session-timeout-ms", type=int, default=10000, env="GEO_MIRROR_SESSION_TIMEOUT_MS",
                   help="source group session: how soon a dead worker's partitions move")
    p.add_argument("--no-heartbeats", action="store_true", env="GEO_MIRROR_NO_HEARTBEATS",
                   help="do not emit heartbeats into the regions")
    p.add_argument("--heartbeat-topic", default="heartbeats", env="GEO_MIRROR_HEARTBEAT_TOPIC")
    p.add_argument("--compression", default="lz4", env="GEO_MIRROR_COMPRESSION",
                   choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--client-id", default="geo-mirror", env="GEO_MIRROR_CLIENT_ID")
    p.add_argument("--admin-host", default="127.0.0.1", env="GEO_MIRROR_ADMIN_HOST")
    p.add_argument("--admin-port", type=int, default=39181, env="GEO_MIRROR_ADMIN_PORT",
                   help="/metrics and /status (0: pick a free port)")
    p.add_argument("--log-level", default="info", env="GEO_MIRROR_LOG_LEVEL")
    kafka_security.add_arguments(p, "central", "GEO_MIRROR_CENTRAL", "the central Kafka")
    kafka_security.add_arguments(p, "source", "GEO_MIRROR_SOURCE",
                                 "every source region's Kafka (a region's own: GEO_MIRROR_SOURCE_<REGION>_USERNAME, "
                                 "_PASSWORD or _PASSWORD_FILE, _SECURITY_PROTOCOL, _SASL_MECHANISM, _CA_FILE)")
    return p


def config_from_args(args) -> tuple[MirrorConfig, dict[str, str]]:  # type: ignore[no-untyped-def]
    """Validate the parsed flags; ValueError with a clear message when they are unusable."""
    if args.regions:
        regions = parse_region_flags(args.regions)
    elif args.consul_url:
        regions = {}
    else:
        regions = regions_from_file(args.regions_file)
    if not regions and not args.consul_url:
        raise ValueError("no regions: give --region NAME=HOST:PORT or a regions file with edge regions")
    policy = ReplicationPolicy(separator=args.separator, identity=args.identity_naming)
    config = MirrorConfig(
        central_bootstrap=args.central, policy=policy,
        topic_filter=TopicFilter(include=args.include, exclude=args.exclude, policy=policy),
        exactly_once=not args.at_least_once, source_group=args.source_group,
        positions_group=args.positions_group, transactional_id_prefix=args.transactional_id_prefix,
        slots_per_region=args.slots_per_region, replication_factor=args.replication_factor, refresh_interval_s=args.refresh_interval,
        batch_interval_ms=args.batch_interval_ms, transaction_interval_ms=args.transaction_interval_ms,
        max_transactions_per_s=args.max_transactions_per_second,
        max_batch_records=args.max_batch_records,
        transaction_timeout_ms=args.transaction_timeout_ms, session_timeout_ms=args.session_timeout_ms,
        heartbeats=not args.no_heartbeats, heartbeat_topic=args.heartbeat_topic,
        compression=None if args.compression == "none" else args.compression,
        client_id=args.client_id,
        central_security=kafka_security.from_args(args, "central", "GEO_MIRROR_CENTRAL"),
        source_security=kafka_security.from_args(args, "source", "GEO_MIRROR_SOURCE", partial=True),
    )
    if config.refresh_interval_s <= 0 or config.batch_interval_ms <= 0 or config.max_batch_records <= 0 \
            or config.transaction_interval_ms < 0 or config.slots_per_region < 1 \
            or config.max_transactions_per_s < 0:
        raise ValueError("intervals and batch sizes must be positive")
    return config, regions


def region_source(args, regions: dict[str, str]) -> RegionSource:  # type: ignore[no-untyped-def]
    """Static regions from flags or the regions file, else Consul discovery."""
    if regions or not args.consul_url:
        return StaticRegions(regions)
    datacenters = [d for dc in args.consul_datacenters for d in dc.split(",") if d] or [
        r.consul_datacenter for r in load_regions(args.regions_file).edge_regions]
    return ConsulRegions(args.consul_url, datacenters, token=args.consul_token or None)


async def run(config: MirrorConfig, source: RegionSource, admin_host: str, admin_port: int) -> None:
    stop = shutdown_event()
    metrics = MirrorMetrics()
    worker = MirrorWorker(config, metrics)
    server, server_task = await serve_admin(admin_host, admin_port, worker.health, metrics.registry)
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else admin_port
    log.info("admin listening", extra={"port": port})
    try:
        start = asyncio.create_task(worker.start(stop))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            return
        start.result()
        stopped.cancel()
        log.info("mirror started", extra={"regions": dict(await source.regions()),
                                          "source": type(source).__name__, "exactly_once": config.exactly_once})
        await worker.follow(source, stop)
    finally:
        await worker.stop()
        server.should_exit = True
        await server_task
        log.info("mirror stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, service="geo-mirror")
    try:
        config, regions = config_from_args(args)
    except (ValueError, OSError, KeyError) as exc:
        parser.error(str(exc))
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(config, region_source(args, regions), args.admin_host, args.admin_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
