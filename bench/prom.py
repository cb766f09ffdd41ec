"""Reading a Prometheus ``/metrics`` page in the benchmarks (prometheus_client's own parser)."""

from __future__ import annotations

import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


_local = threading.local()


def scrape(url: str, timeout: float) -> list[Sample]:
    """Every sample of a Prometheus ``/metrics`` page (one HTTP client per thread: a new client
    per call loads the CA bundle, which made the scraping a large share of bench-stack's own CPU)."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client()
    text = client.get(url, timeout=timeout).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def sample_sum(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())
