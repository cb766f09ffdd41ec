"""Figures from the components' own pages: edges' and the mirror's Prometheus ``/metrics``,
geo-central's ``/status``, ``/api/freshness`` and ``/metrics``. Unreachable pages are findings
(``error``), never exceptions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page as (name, labels, value)."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def total(samples: Samples, name: str, exclude: dict[str, str] | None = None, **labels: str) -> float:
    """Sum of the samples ``name`` whose labels include ``labels`` and match none of ``exclude``."""
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items()
               and not (exclude and any(lab.get(k) == x for k, x in exclude.items())))


def scrape(client: httpx.Client, url: str) -> Samples:
    answer = client.get(url)
    answer.raise_for_status()
    return parse(answer.text)


# -- edges -------------------------------------------------------------------------------------

@dataclass
class EdgeTraffic:
    """An edge's request rates over the sampling window (the Consul check's /status excluded)."""

    requests_per_s: float | None = None
    errors_503_per_s: float | None = None
    kafka_up: bool | None = None
    error: str = ""


def _edge_counts(samples: Samples) -> tuple[float, float]:
    not_status = {"route": "/status"}
    return (total(samples, "geo_edge_http_requests_total", exclude=not_status),
            total(samples, "geo_edge_http_requests_total", exclude=not_status, status="503"))


def edge_traffic(urls: dict[str, str], window: float = 1.0, timeout: float = 3.0) -> dict[str, EdgeTraffic]:
    """Scrape every edge's metrics URL twice, ``window`` seconds apart (id -> URL; empty URL:
    the edge publishes none)."""
    result = {node: EdgeTraffic(error="" if url else "no metrics address in Consul") for node, url in urls.items()}
    first: dict[str, tuple[float, float, float]] = {}
    with httpx.Client(timeout=timeout) as client:
        for node, url in urls.items():
            if url:
                try:
                    samples = scrape(client, url)
                    first[node] = (*_edge_counts(samples), time.monotonic())
                    result[node].kafka_up = total(samples, "geo_edge_kafka_up") >= 1
                except (httpx.HTTPError, ValueError) as exc:
                    result[node].error = f"metrics unreachable ({type(exc).__name__})"
        if first:
            time.sleep(window)  # the sampling window of the rates, by definition
        for node, (requests, errors, at) in first.items():
            try:
                samples = scrape(client, urls[node])
            except (httpx.HTTPError, ValueError) as exc:
                result[node].error = f"metrics unreachable ({type(exc).__name__})"
                continue
            now_requests, now_errors = _edge_counts(samples)
            elapsed = max(time.monotonic() - at, 1e-3)
            result[node].requests_per_s = max(0.0, now_requests - requests) / elapsed
            result[node].errors_503_per_s = max(0.0, now_errors - errors) / elapsed
    return result


# -- mirror ------------------------------------------------------------------------------------

@dataclass
class MirrorRegion:
    """The mirror's view of one source region (summed / best over its workers)."""

    up: bool = False
    records_behind: float = 0.0
    latency_s: float | None = None    # age of the region's last mirrored heartbeat
    partitions: float = 0.0


@dataclass
class MirrorView:
    regions: dict[str, MirrorRegion] = field(default_factory=dict)
    central_up: bool | None = None
    workers: int = 0
    errors: list[str] = field(default_factory=list)


def mirror_view(urls: Iterable[str], timeout: float = 3.0, now: float | None = None) -> MirrorView:
    """Every mirror worker's ``/metrics`` (``url``: its admin base URL) joined per region."""
    view = MirrorView()
    now = time.time() if now is None else now
    with httpx.Client(timeout=timeout) as client:
        for url in urls:
            try:
                samples = scrape(client, f"{url.rstrip('/')}/metrics")
            except (httpx.HTTPError, ValueError) as exc:
                view.errors.append(f"mirror {url} unreachable ({type(exc).__name__})")
                continue
            view.workers += 1
            add_mirror_samples(view, samples, now)
    return view


def add_mirror_samples(view: MirrorView, samples: Samples, now: float) -> None:
    for name, labels, value in samples:
        region = labels.get("region")
        if name == "geo_mirror_central_up":
            view.central_up = bool(value) or bool(view.central_up)
        if not region:
            continue
        r = view.regions.setdefault(region, MirrorRegion())
        if name == "geo_mirror_region_up":
            r.up = r.up or value >= 1
        elif name == "geo_mirror_records_behind":
            r.records_behind += value
        elif name == "geo_mirror_assigned_partitions":
            r.partitions += value
        elif name == "geo_mirror_last_heartbeat_timestamp_seconds" and value > 0:
            age = max(0.0, now - value)
            r.latency_s = age if r.latency_s is None else min(r.latency_s, age)


# -- geo-central -------------------------------------------------------------------------------

@dataclass
class CentralView:
    """geo-central's health, its loader's backlog and each region's freshness."""

    url: str
    healthy: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    backlog: float | None = None
    freshness_s: dict[str, float] = field(default_factory=dict)
    error: str = ""


def central_view(url: str, timeout: float = 5.0) -> CentralView:
    view = CentralView(url)
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        try:
            status = client.get(f"{base}/status")
            view.healthy = status.status_code == 200
            view.status = status.json()
            view.backlog = total(scrape(client, f"{base}/metrics"), "geo_central_consumer_lag")
            fresh = client.get(f"{base}/api/freshness")
            fresh.raise_for_status()
            for row in fresh.json().get("rows") or []:
                view.freshness_s[str(row["region"])] = float(row["behind_ms"]) / 1000.0
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            view.error = f"geo-central at {url} unreachable ({type(exc).__name__})"
            view.healthy = False
    return view
