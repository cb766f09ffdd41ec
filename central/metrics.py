"""geo-central's Prometheus metrics, in their own registry (several instances can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CentralMetrics:
    """Rows loaded, quarantined records, batch latency, consumer lag, query latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows_loaded = Counter("geo_central_rows_loaded_total",
                                   "Rows inserted, by table (replays included)", ["table"], registry=r)
        self.quarantined = Counter("geo_central_quarantined_total",
                                   "Records sent to the quarantine table, by reason", ["reason"], registry=r)
        self.batch_seconds = Histogram("geo_central_batch_seconds",
                                       "Time to insert a batch and commit its offsets",
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                       registry=r)
        self.insert_seconds = Histogram("geo_central_insert_seconds",
                                        "Time to insert a batch's rows (all tables, retries included)",
                                        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                        registry=r)
        self.commit_seconds = Histogram("geo_central_commit_seconds",
                                        "Time to commit a batch's offsets after its insert",
                                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                        registry=r)
        self.batch_records = Histogram("geo_central_batch_records", "Records per batch",
                                       buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000), registry=r)
        self.consumer_lag = Gauge("geo_central_consumer_lag",
                                  "Records not yet loaded (last stable offset - position)",
                                  ["topic", "partition"], registry=r)
        self.insert_errors = Counter("geo_central_insert_errors_total",
                                     "Failed inserts (the batch is retried, offsets not committed)", registry=r)
        self.commit_failures = Counter("geo_central_commit_failures_total",
                                       "Offset commits that failed after a successful insert "
                                       "(the batch will be replayed and deduplicated)", registry=r)
        self.last_batch = Gauge("geo_central_last_batch_timestamp_seconds",
                                "When the last batch was committed", registry=r)
        self.query_seconds = Histogram("geo_central_query_seconds", "API query latency", ["endpoint"],
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                       registry=r)
