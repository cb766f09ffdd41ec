"""The mirror's Prometheus metrics (prefix ``geo_mirror_``), in a registry of their own so that
several workers can live in one process (tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MirrorMetrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter("geo_mirror_records", "Records copied into the central cluster",
                               ["region", "topic"], registry=r)
        self.bytes = Counter("geo_mirror_bytes", "Key+value bytes copied into the central cluster",
                             ["region", "topic"], registry=r)
        self.records_behind = Gauge("geo_mirror_records_behind",
                                    "Source records not yet copied (high watermark - position)",
                                    ["region", "topic", "partition"], registry=r)
        self.latency = Histogram("geo_mirror_replication_latency_seconds",
                                 "Source record timestamp to central commit",
                                 ["region"], buckets=LATENCY_BUCKETS, registry=r)
        self.round_seconds = Histogram("geo_mirror_round_seconds",
                                       "One copy round's phases: collect (fetched records taken until "
                                       "the round closes) and commit (write + commit every partition)",
                                       ["region", "phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.round_records = Histogram("geo_mirror_round_records", "Records per copy round",
                                       ["region"], buckets=(1, 10, 100, 1000, 10000, 50000), registry=r)
        self.transactions = Counter("geo_mirror_transactions", "Central transactions by outcome (exactly once: one per slot and round; at least once: "
                                    "one commit per slot and round)",
                                    ["region", "outcome"], registry=r)
        self.errors = Counter("geo_mirror_errors", "Errors by kind", ["region", "kind"], registry=r)
        self.region_up = Gauge("geo_mirror_region_up", "1 when the region's Kafka answers",
                               ["region"], registry=r)
        self.central_up = Gauge("geo_mirror_central_up", "1 when the central Kafka answers",
                                registry=r)
        self.central_is_up = False
        self.partitions = Gauge("geo_mirror_assigned_partitions",
                                "Source partitions this worker copies", ["region"], registry=r)
        self.slots = Gauge("geo_mirror_assigned_slots",
                           "Transaction slots of the region this worker holds (one producer each)",
                           ["region"], registry=r)
        self.out_of_range = Counter("geo_mirror_offset_out_of_range",
                                    "Times source retention deleted records not yet copied",
                                    ["region", "topic", "partition"], registry=r)
        self.records_lost = Counter("geo_mirror_records_lost",
                                    "Source records deleted by retention before they were copied",
                                    ["region", "topic"], registry=r)
        self.cycle_skipped = Counter("geo_mirror_cycle_skipped_records",
                                     "Records not copied because they already carry provenance",
                                     ["region", "topic"], registry=r)
        self.heartbeat_ts = Gauge("geo_mirror_last_heartbeat_timestamp_seconds",
                                  "Source timestamp of the region's last mirrored heartbeat",
                                  ["region"], registry=r)
        self.refetched = Counter("geo_mirror_refetched_records",
                                 "Records fetched again within one round after a seek (not copied twice)",
                                 ["region"], registry=r)
        self.topics = Gauge("geo_mirror_topics", "Source topics mirrored", ["region"], registry=r)

    def assigned(self, region: str, partitions: int, slots: int) -> None:
        """What this worker holds of ``region`` now."""
        self.partitions.labels(region).set(partitions)
        self.slots.labels(region).set(slots)

    def set_central_up(self, up: bool) -> None:
        """Record whether the central cluster answers (the gauge, and the worker's health)."""
        self.central_is_up = up
        self.central_up.set(1 if up else 0)
