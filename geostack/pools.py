"""Cloudflare's geo-steering order, applied locally: country pools, then region pools, then the
default pools, then the fallback pool; the first pool with a healthy origin wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from geostack.geoip import region_code

T = TypeVar("T")


@dataclass(frozen=True)
class SteeringTable:
    """The load balancer's steering maps (as ``service_kit.steering.steering_pools`` builds them
    from the regions file; pool names are region names)."""

    region_pools: Mapping[str, Sequence[str]]
    country_pools: Mapping[str, Sequence[str]]
    default_pools: Sequence[str]
    fallback_pool: str

    @classmethod
    def from_maps(cls, maps: Mapping[str, object]) -> "SteeringTable":
        return cls(region_pools=maps["region_pools"], country_pools=maps["country_pools"],  # type: ignore[arg-type]
                   default_pools=maps["default_pools"], fallback_pool=maps["fallback_pool"])  # type: ignore[arg-type]

    def pools_for(self, country: str | None) -> list[str]:
        """Pools in failover order for a client in ``country`` (ISO code or None)."""
        country = country.upper() if country else None
        ordered: Sequence[str] = ()
        if country and country in self.country_pools:
            ordered = self.country_pools[country]
        else:
            code = region_code(country)
            if code and code in self.region_pools:
                ordered = self.region_pools[code]
        result: list[str] = []
        for pool in (*ordered, *self.default_pools, self.fallback_pool):
            if pool not in result:
                result.append(pool)
        return result


class PoolRotation:
    """Where each pool's next request starts in its list of origins: a round robin *per pool*.

    One counter shared by all pools aliases: the fault suite's paced clients arrive in a fixed
    cycle (12 clients, one batch each per interval), so a pool's requests took the same counter
    values modulo the cycle, and with four origins in the pool (12 ≡ 0 mod 4) some origins were
    never picked — a new edge could wait forever for traffic. Counting each pool's own requests
    walks every origin of it in turn whatever the other pools do."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def order(self, pool: str, origins: Sequence[T]) -> list[T]:
        """``origins`` rotated to start at this pool's next one (empty stays empty)."""
        if not origins:
            return []
        turn = self._next.get(pool, 0)
        self._next[pool] = turn + 1
        start = turn % len(origins)
        return [*origins[start:], *origins[:start]]
