"""Cloudflare geo-steering maps computed from the regions file.

One function, :func:`steering_pools`, turns ``regions.yaml`` into the four fields of a Cloudflare
load balancer with ``steering_policy = "geo"``: ``region_pools`` and ``country_pools`` (maps of
lists, each list in failover order: the region's own pool, then its ``failover`` pools),
``default_pools`` and ``fallback_pool``. Terraform computes the same maps in
``terraform/modules/steering`` (tests/test_terraform.py checks that both agree); the local geo
router uses this function to pick a region the way Cloudflare would.

Cloudflare's lookup order is ``pop_pools`` -> ``country_pools`` -> ``region_pools`` ->
``default_pools``; ``fallback_pool`` serves when every pool is unhealthy.
"""

from __future__ import annotations

import re
from typing import Callable, TypedDict

from service_kit.regions import Region, Regions

#: Cloudflare's 13 geo-steering region codes.
CLOUDFLARE_REGION_CODES = frozenset(
    {"WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS", "NEAS"})

_COUNTRY = re.compile(r"^[A-Z]{2}$")


class SteeringPools(TypedDict):
    """The steering fields of a Cloudflare load balancer, with pools named by ``pool_name``."""

    region_pools: dict[str, list[str]]
    country_pools: dict[str, list[str]]
    default_pools: list[str]
    fallback_pool: str


def failover_order(region: Region) -> list[str]:
    """The region names a client of ``region`` is served by, in order: itself, then its failover."""
    return list(dict.fromkeys([region.name, *region.failover]))


def steering_pools(regions: Regions, pool_name: Callable[[str], str] = str) -> SteeringPools:
    """Compute Cloudflare's geo-steering maps from the regions file.

    ``pool_name`` maps a region name to the pool's name or id (identity by default). Raises
    ``ValueError`` for an unknown Cloudflare region code, a malformed country code, or a code
    claimed by two regions (Cloudflare would keep only one of them).
    """
    region_pools: dict[str, list[str]] = {}
    country_pools: dict[str, list[str]] = {}
    owners: dict[tuple[str, str], str] = {}
    for region in regions.edge_regions:
        pools = [pool_name(name) for name in failover_order(region)]
        for kind, codes, target in (("cloudflare_regions", region.cloudflare_regions, region_pools),
                                    ("countries", region.countries, country_pools)):
            for code in codes:
                if kind == "cloudflare_regions" and code not in CLOUDFLARE_REGION_CODES:
                    raise ValueError(f"region {region.name}: unknown Cloudflare region code {code!r}")
                if kind == "countries" and not _COUNTRY.match(code):
                    raise ValueError(f"region {region.name}: country {code!r} is not ISO 3166-1 alpha-2")
                owner = owners.setdefault((kind, code), region.name)
                if owner != region.name:
                    raise ValueError(f"{kind} code {code!r} is claimed by both {owner} and {region.name}")
                target[code] = list(pools)
    default = failover_order(regions[regions.default_region])
    default += [r.name for r in regions.edge_regions if r.name not in default]
    return SteeringPools(region_pools=region_pools, country_pools=country_pools,
                         default_pools=[pool_name(name) for name in default],
                         fallback_pool=pool_name(regions.fallback_region))


def pools_for(steering: SteeringPools, country: str | None = None,
              cloudflare_region: str | None = None) -> list[str]:
    """The pools Cloudflare would try, in order, for a client's country and Cloudflare region."""
    if country and country.upper() in steering["country_pools"]:
        return list(steering["country_pools"][country.upper()])
    if cloudflare_region and cloudflare_region.upper() in steering["region_pools"]:
        return list(steering["region_pools"][cloudflare_region.upper()])
    return list(steering["default_pools"])
