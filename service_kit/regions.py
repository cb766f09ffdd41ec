"""The regions file (``regions.yaml``): the one source of truth for regions, their Cloudflare
codes and countries, failover order, each edge region's WAN link to the centre and the local
stack's ports."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service_kit.link_shape import LinkShape

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "regions.yaml"


@dataclass(frozen=True)
class Region:
    """One region: an edge region (clients steered to it) or the central one."""

    name: str
    role: str
    consul_datacenter: str
    cloudflare_regions: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    failover: tuple[str, ...] = ()
    local: dict[str, Any] = field(default_factory=dict)
    #: the link between this edge region and the centre (``wan:``), None: not given
    wan: LinkShape | None = None

    @property
    def is_edge(self) -> bool:
        return self.role == "edge"


@dataclass(frozen=True)
class Regions:
    """All regions plus the global settings of the file."""

    domain: str
    default_region: str
    fallback_region: str
    regions: tuple[Region, ...]
    local: dict[str, Any]

    def __getitem__(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    @property
    def edge_regions(self) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.is_edge)

    @property
    def central(self) -> Region:
        return next(r for r in self.regions if r.role == "central")


def load_regions(path: str | Path | None = None) -> Regions:
    """Read and check the regions file (``GEOINGEST_REGIONS`` or the repository's ``regions.yaml``)."""
    path = Path(path or os.environ.get("GEOINGEST_REGIONS") or DEFAULT_PATH)
    doc = yaml.safe_load(path.read_text())
    regions = tuple(
        Region(name=r["name"], role=r["role"], consul_datacenter=r.get("consul_datacenter", r["name"]),
               cloudflare_regions=tuple(r.get("cloudflare_regions", ())),
               countries=tuple(r.get("countries", ())), failover=tuple(r.get("failover", ())),
               local=dict(r.get("local", {})),
               wan=None if r.get("wan") is None else LinkShape.from_mapping(r["wan"], f"region {r['name']}: wan"))
        for r in doc["regions"]
    )
    result = Regions(domain=doc["domain"], default_region=doc["default_region"],
                     fallback_region=doc["fallback_region"], regions=regions,
                     local=dict(doc.get("local", {})))
    _check(result)
    return result


def _check(regions: Regions) -> None:
    names = [r.name for r in regions.regions]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate region names in {names}")
    if sum(r.role == "central" for r in regions.regions) != 1:
        raise ValueError("exactly one region must have role: central")
    edge_names = {r.name for r in regions.edge_regions}
    for region in regions.regions:
        if region.role not in ("edge", "central"):
            raise ValueError(f"region {region.name}: role must be edge or central")
        if region.wan is not None and not region.is_edge:
            raise ValueError(f"region {region.name}: wan is an edge region's link to the centre; "
                             "the central region has none")
        unknown = set(region.failover) - edge_names
        if unknown:
            raise ValueError(f"region {region.name}: failover names unknown edge regions {unknown}")
    for key in ("default_region", "fallback_region"):
        if getattr(regions, key) not in edge_names:
            raise ValueError(f"{key} must name an edge region")
