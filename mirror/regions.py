"""Where the mirror learns its source regions: ``name -> bootstrap servers``.

A static source (flags or regions.yaml) now; a Consul-backed one plugs in through the same
:class:`RegionSource` protocol and :meth:`mirror.worker.MirrorWorker.set_regions`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from service_kit.regions import load_regions

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class RegionSource(Protocol):
    """Anything that can tell the current regions (polled by the worker)."""

    async def regions(self) -> Mapping[str, str]: ...


class StaticRegions:
    """A fixed mapping of region name to bootstrap servers."""

    def __init__(self, regions: Mapping[str, str]) -> None:
        for name, bootstrap in regions.items():
            check_region(name, bootstrap)
        self._regions = dict(regions)

    async def regions(self) -> Mapping[str, str]:
        return dict(self._regions)


def check_region(name: str, bootstrap: str) -> None:
    """Raise ValueError for a region name or bootstrap string the mirror cannot use."""
    if not _NAME.match(name):
        raise ValueError(f"bad region name {name!r}: letters, digits, '_' and '-' only")
    if not bootstrap or any(":" not in part for part in bootstrap.split(",")):
        raise ValueError(f"region {name}: bootstrap must be host:port[,host:port], got {bootstrap!r}")


def parse_region_flags(values: Sequence[str]) -> dict[str, str]:
    """``["eu=127.0.0.1:19092", ...]`` -> ``{"eu": "127.0.0.1:19092"}`` (ValueError when malformed)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, bootstrap = value.partition("=")
        if not sep:
            raise ValueError(f"--region wants NAME=HOST:PORT, got {value!r}")
        name, bootstrap = name.strip(), bootstrap.strip()
        check_region(name, bootstrap)
        if name in out:
            raise ValueError(f"region {name} given twice")
        out[name] = bootstrap
    return out


def regions_from_file(path: str | Path | None = None, host: str = "127.0.0.1") -> dict[str, str]:
    """The edge regions of regions.yaml with their local stack Kafka ports."""
    out: dict[str, str] = {}
    for region in load_regions(path).edge_regions:
        port = region.local.get("kafka_port")
        if port:
            out[region.name] = f"{host}:{port}"
    return out
