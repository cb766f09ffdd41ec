"""Regions discovered in Consul: every passing service ``kafka`` with ``Meta.region`` and
``Meta.bootstrap`` registered in the watched datacenters is a source region.

A region whose ``kafka`` service appears starts flowing; one that is deregistered stops. A failing
check does not stop the flow (the flow itself pauses and retries with backoff). While Consul is unreachable the last known set is kept, so an outage of
Consul never stops replication. Central clusters (``Meta.role = central``) are never sources.
"""

from __future__ import annotations

import logging
from typing import Mapping

from mirror.regions import check_region
from service_kit.consul_watch import ServiceWatch

log = logging.getLogger(__name__)


class ConsulRegions:
    """A :class:`mirror.regions.RegionSource` backed by Consul blocking queries."""

    def __init__(self, url: str, datacenters: list[str], token: str | None = None,
                 service: str = "kafka") -> None:
        self.watch = ServiceWatch(url, service, datacenters, token=token, passing_only=False).start()

    async def regions(self) -> Mapping[str, str]:
        found: dict[str, str] = {}
        for dc, instances in self.watch.snapshot().items():
            for inst in instances:
                region = inst.meta.get("region") or dc
                bootstrap = inst.meta.get("bootstrap") or inst.hostport
                if inst.meta.get("role") == "central":
                    continue
                try:
                    check_region(region, bootstrap)
                except ValueError as exc:
                    log.warning("ignoring kafka service", extra={"dc": dc, "id": inst.id, "error": str(exc)})
                    continue
                found[region] = bootstrap
        return found

    def close(self) -> None:
        self.watch.stop()
