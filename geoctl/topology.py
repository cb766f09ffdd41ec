"""The whole topology joined from its sources, and its verdict: per region the edges (Consul),
the Kafka cluster (its admin API), the mirror's view (its metrics) and geo-central's freshness.

``collect(sources)`` asks everything once; ``Region.problems`` says in words what is wrong and
``Region.state`` is ``ok``, ``degraded`` (works, but needs a look) or ``down``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from geoctl.consul_source import EDGE_STATES, Consul, ConsulUnavailable, ServiceInstance
from geoctl.kafka_source import KafkaHealth, many
from geoctl.metrics_source import CentralView, MirrorRegion, MirrorView, central_view, mirror_view
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity
from service_kit.regions import Regions


SEVERITY = ("ok", "degraded", "down")


@dataclass(frozen=True)
class Limits:
    """Beyond these a region is ``degraded``."""

    max_records_behind: float = 50_000
    max_latency_s: float = 30.0
    max_freshness_s: float = 60.0
    max_backlog: float = 200_000


@dataclass
class Sources:
    """Where to look (from flags, env and the local stack's state file)."""

    consul: Consul
    regions: Regions
    mirror_urls: list[str] = field(default_factory=list)
    central_url: str = ""
    #: region -> Kafka bootstrap known without Consul (the local stack's state); wins over Consul's meta
    kafka_bootstraps: dict[str, str] = field(default_factory=dict)
    kafka_security: KafkaSecurity = PLAINTEXT
    kafka_timeout: float = 6.0
    limits: Limits = field(default_factory=Limits)


@dataclass
class Region:
    name: str
    role: str
    datacenter: str
    in_regions_file: bool = True
    in_consul: bool = False
    edges: list[ServiceInstance] = field(default_factory=list)
    kafka_instances: list[ServiceInstance] = field(default_factory=list)
    kafka: KafkaHealth | None = None
    mirror: MirrorRegion | None = None
    freshness_s: float | None = None
    consul_error: str = ""   # the region's datacenter did not answer
    problems: list[str] = field(default_factory=list)
    severity: str = "ok"

    @property
    def edge_counts(self) -> dict[str, int]:
        counts = Counter(e.state for e in self.edges)
        return {state: counts.get(state, 0) for state in EDGE_STATES}

    @property
    def state(self) -> str:
        return self.severity

    def flag(self, severity: str, problem: str) -> None:
        self.problems.append(problem)
        if SEVERITY.index(severity) > SEVERITY.index(self.severity):
            self.severity = severity

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.name, "role": self.role, "datacenter": self.datacenter, "state": self.state,
            "in_regions_file": self.in_regions_file, "in_consul": self.in_consul,
            "edges": self.edge_counts,
            "edge_list": [{"id": e.id, "address": f"{e.address}:{e.port}", "state": e.state,
                           "version": e.meta.get("version", "")} for e in self.edges],
            "kafka": self.kafka.as_dict() if self.kafka else None,
            "kafka_in_consul": {"instances": len(self.kafka_instances),
                                "passing": sum(i.state == "passing" for i in self.kafka_instances)},
            "mirror": None if self.mirror is None else {
                "up": self.mirror.up, "records_behind": self.mirror.records_behind,
                "replication_latency_s": self.mirror.latency_s, "partitions": self.mirror.partitions},
            "freshness_s": self.freshness_s,
            "problems": self.problems,
        }


@dataclass
class Topology:
    regions: list[Region]
    mirror: MirrorView
    central: CentralView | None
    problems: list[str] = field(default_factory=list)   # not of one region

    @property
    def healthy(self) -> bool:
        return not self.problems and all(r.state == "ok" for r in self.regions)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        central = self.central
        return {
            "healthy": self.healthy,
            "regions": [r.as_dict() for r in self.regions],
            "mirror": {"workers": self.mirror.workers, "central_up": self.mirror.central_up,
                       "errors": self.mirror.errors},
            "central": None if central is None else {
                "url": central.url, "healthy": central.healthy, "backlog": central.backlog,
                "freshness_s": central.freshness_s, "error": central.error or None,
                "loader": central.status.get("loader")},
            "problems": self.problems,
        }


def discover_regions(sources: Sources) -> list[Region]:
    """The regions file's regions, then any region that only Consul knows (a ``kafka`` instance
    registered at run time with meta ``region``), each with its Consul instances."""
    consul = sources.consul
    regions = {r.name: Region(r.name, r.role, r.consul_datacenter) for r in sources.regions.regions}
    datacenters = consul.datacenters()
    unanswered: dict[str, str] = {}
    for dc in datacenters:
        try:
            instances = consul.kafka(dc)
        except ConsulUnavailable as exc:  # one datacenter cut off is a finding, not a failure
            unanswered[dc] = f"Consul datacenter {dc} did not answer ({exc})"
            continue
        for instance in instances:
            name = instance.region or dc
            region = regions.get(name)
            if region is None:
                region = regions[name] = Region(name, instance.meta.get("role", "edge"), dc, in_regions_file=False)
            region.in_consul = True
            region.kafka_instances.append(instance)
    for region in regions.values():
        if region.datacenter in unanswered:
            region.consul_error = unanswered[region.datacenter]
        elif region.datacenter not in datacenters:
            region.consul_error = f"Consul has no datacenter {region.datacenter}"
        elif region.role == "edge":
            try:
                region.edges = [e for e in consul.edges(region.datacenter) if e.region in ("", region.name)]
            except ConsulUnavailable as exc:
                region.consul_error = f"Consul datacenter {region.datacenter} did not answer ({exc})"
    return list(regions.values())


def bootstrap_of(region: Region, sources: Sources) -> str:
    if region.name in sources.kafka_bootstraps:
        return sources.kafka_bootstraps[region.name]
    for instance in region.kafka_instances:
        if instance.meta.get("bootstrap"):
            return instance.meta["bootstrap"]
    return ""


def collect(sources: Sources, with_central: bool = True) -> Topology:
    """Ask every source once and judge each region."""
    regions = discover_regions(sources)
    bootstraps = {r.name: b for r in regions if (b := bootstrap_of(r, sources))}
    kafka = asyncio.run(many(bootstraps, sources.kafka_security, sources.kafka_timeout)) if bootstraps else {}
    mirror = mirror_view(sources.mirror_urls)
    central = central_view(sources.central_url) if (with_central and sources.central_url) else None
    topology = Topology(regions, mirror, central)
    for region in regions:
        region.kafka = kafka.get(region.name)
        region.mirror = mirror.regions.get(region.name) if region.role == "edge" else None
        if central is not None and region.role == "edge":
            region.freshness_s = central.freshness_s.get(region.name)
        judge(region, topology, sources.limits)
    if not sources.mirror_urls:
        topology.problems.append("no mirror admin URL given (--mirror-url)")
    if with_central and not sources.central_url:
        topology.problems.append("no geo-central URL given (--central-url)")
    topology.problems.extend(mirror.errors)
    if mirror.central_up is False:
        topology.problems.append("the mirror cannot reach the central Kafka")
    if sources.central_url and central is not None:
        if central.error:
            topology.problems.append(central.error)
        elif not central.healthy:
            topology.problems.append(f"geo-central unhealthy: {short(central.status)}")
        elif central.backlog is not None and central.backlog > sources.limits.max_backlog:
            topology.problems.append(f"geo-central backlog {central.backlog:,.0f} records "
                                     f"(> {sources.limits.max_backlog:,.0f})")
    return topology


def short(doc: Any, limit: int = 120) -> str:
    text = " ".join(str(doc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judge(region: Region, topology: Topology, limits: Limits) -> None:
    """Fill ``region.problems`` and its state from what was collected."""
    if region.consul_error:
        region.flag("down", region.consul_error)
    k = region.kafka
    if k is None:
        region.flag("down", "no Kafka known (no kafka service in Consul)")
    elif not k.reachable:
        region.flag("down", f"Kafka {k.bootstrap} unreachable ({k.error})")
    else:
        if k.offline:
            region.flag("down", f"{k.offline} offline partitions")
        if k.under_replicated:
            region.flag("degraded", f"{k.under_replicated} under-replicated partitions")
    failing_kafka = [i.id for i in region.kafka_instances if i.state != "passing"]
    if failing_kafka:
        region.flag("degraded", f"Consul check failing for {', '.join(failing_kafka)}")
    if region.role != "edge":
        return
    bad = [f"{e.id} {e.state}" for e in region.edges if e.state in ("warning", "critical")]
    if region.edge_counts["passing"] == 0:
        region.flag("down", "no passing edge" + (f" ({', '.join(bad)})" if bad else ""))
    elif bad:
        region.flag("degraded", f"edges not passing: {', '.join(bad)}")
    m = region.mirror
    if topology.mirror.workers:
        if m is None or not m.up:
            region.flag("down", "the mirror cannot read this region's Kafka")
        else:
            if m.records_behind > limits.max_records_behind:
                region.flag("degraded", f"mirror {m.records_behind:,.0f} records behind")
            if m.latency_s is not None and m.latency_s > limits.max_latency_s:
                region.flag("degraded", f"replication latency {m.latency_s:.0f} s")
    if region.freshness_s is not None and region.freshness_s > limits.max_freshness_s:
        region.flag("degraded", f"central data {region.freshness_s:.0f} s old")
