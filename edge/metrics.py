"""The edge's Prometheus metrics (``geo_edge_*``). With several workers prometheus_client runs in
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) and the metrics listener aggregates them."""

from __future__ import annotations

import bisect
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from service_kit.prometheus_internals import add_counts, upper_bounds

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("geo_edge_http_requests", "HTTP requests answered, by route and status code",
                   ["route", "status"])
REQUEST_SECONDS = Histogram("geo_edge_http_request_duration_seconds",
                            "Time from request start to the answer, by route", ["route"],
                            buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("geo_edge_http_requests_in_flight", "Requests being handled (sampled 4/s)",
                  multiprocess_mode="livesum")
EVENTS_ACCEPTED = Counter("geo_edge_events_accepted", "Events acknowledged by Kafka, by route", ["route"])
EVENTS_REJECTED = Counter("geo_edge_events_rejected",
                          "Events (or whole requests) not stored, by reason", ["reason"])
PRODUCE_SECONDS = Histogram("geo_edge_kafka_produce_duration_seconds",
                            "Time from handing a batch to the producer to its Kafka ack, per batch",
                            buckets=LATENCY_BUCKETS)
PENDING_EVENTS = Gauge("geo_edge_kafka_pending_events", "Events awaiting a Kafka ack (sampled 4/s)",
                       multiprocess_mode="livesum")
KAFKA_UP = Gauge("geo_edge_kafka_up", "1 when this edge can produce to Kafka (min over workers)",
                 multiprocess_mode="livemin")
DRAINING = Gauge("geo_edge_draining", "1 once shutdown started (/status answers 503)",
                 multiprocess_mode="livemax")
DEAD_LETTERS = Counter("geo_edge_dead_letter_records", "Rejected elements sent to the dead-letter topic",
                       ["outcome"])
RATE_LIMITED = Counter("geo_edge_rate_limited", "Requests refused with 429, by bucket kind (ip, key)",
                       ["scope"])


class LIVE:
    """Plain counters of the hot path, published to their gauges a few times a second."""

    in_flight = 0


class BufferedCounter:
    """A counter child incremented locally and written to prometheus_client by ``flush_buffers``
    (a few times a second): per request this is an integer add, not an mmap write."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pending = 0.0
        _BUFFERS.append(self)

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self.child.inc(amount)


class BufferedHistogram:
    """A histogram child observed locally (bucket counts and sum), flushed like ``BufferedCounter``
    (``service_kit.prometheus_internals.add_counts``)."""

    __slots__ = ("child", "bounds", "counts", "sum")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = list(upper_bounds(child))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        _BUFFERS.append(self)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def flush(self) -> None:
        counts, total = self.counts, self.sum
        if not any(counts):
            return
        self.counts, self.sum = [0] * len(self.bounds), 0.0
        add_counts(self.child, counts, total)


_BUFFERS: list[Any] = []


def flush_buffers() -> None:
    """Write every buffered counter/histogram to prometheus_client."""
    for buffer in _BUFFERS:
        buffer.flush()
