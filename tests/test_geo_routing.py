"""Geo steering as the router applies it, from the real regions file: country pools, then region
pools, then default pools, then the fallback; and the CIDR-to-country table."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from geostack.geoip import COUNTRY_REGION, DEFAULT_CIDR_COUNTRIES, GeoIP, region_code
from geostack.pools import PoolRotation, SteeringTable
from service_kit.regions import load_regions
from service_kit.steering import CLOUDFLARE_REGION_CODES, steering_pools

REGIONS = load_regions()
TABLE = SteeringTable.from_maps(steering_pools(REGIONS))


def test_country_pool_wins_and_failover_follows() -> None:
    for region in REGIONS.edge_regions:
        for country in region.countries:
            assert TABLE.pools_for(country)[: 1 + len(region.failover)] == [region.name, *region.failover]


def test_region_pool_when_the_country_has_none() -> None:
    listed = {c for r in REGIONS.edge_regions for c in r.countries}
    for country, code in COUNTRY_REGION.items():
        if country in listed:
            continue
        owner = next((r for r in REGIONS.edge_regions if code in r.cloudflare_regions), None)
        pools = TABLE.pools_for(country)
        expected_first = owner.name if owner else REGIONS.default_region
        assert pools[0] == expected_first, (country, code, pools)


def test_unknown_country_goes_to_default_then_fallback() -> None:
    assert TABLE.pools_for(None)[0] == REGIONS.default_region
    assert TABLE.pools_for("AQ")[-1] in {r.name for r in REGIONS.edge_regions}
    assert REGIONS.fallback_region in TABLE.pools_for("AQ")


@given(st.one_of(st.none(), st.text(max_size=4)))
def test_every_client_gets_every_pool_once(country: str | None) -> None:
    pools = TABLE.pools_for(country)
    assert len(pools) == len(set(pools))
    assert REGIONS.fallback_region in pools


def test_country_codes_map_to_cloudflare_region_codes() -> None:
    assert set(COUNTRY_REGION.values()) <= CLOUDFLARE_REGION_CODES
    assert region_code("de") == "WEU" and region_code(None) is None


def test_cidr_table_longest_prefix_and_bad_input() -> None:
    geo = GeoIP.from_specs([*DEFAULT_CIDR_COUNTRIES, "127.10.5.0/24=PL"])
    assert geo.country("127.10.0.1") == "DE"
    assert geo.country("127.10.5.9") == "PL"
    assert geo.country("127.20.1.1") == "US"
    assert geo.country("8.8.8.8") is None
    assert geo.country("not-an-ip") is None and geo.country(None) is None
    with pytest.raises(ValueError):
        GeoIP.from_specs(["127.0.0.0/8"])
    with pytest.raises(ValueError):
        GeoIP.from_specs(["nonsense=DE"])


def test_a_maxmind_database_is_asked_before_the_cidr_table(tmp_path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["127.10.9.0/24"]), {"country": {"iso_code": "JP"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "BR"}})
    path = tmp_path / "countries.mmdb"
    writer.to_db_file(str(path))
    geo = GeoIP.from_specs(DEFAULT_CIDR_COUNTRIES).with_database(str(path))
    assert geo.country("198.51.100.7") == "BR"       # only in the database
    assert geo.country("127.10.9.1") == "JP"         # the database wins over the table
    assert geo.country("127.10.0.1") == "DE"         # not in the database: the table
    assert TABLE.pools_for(geo.country("198.51.100.7"))[0] == "us"


@pytest.mark.parametrize("origins", [2, 3, 4, 6])
def test_every_origin_of_a_pool_is_picked_whatever_the_other_pools_do(origins: int) -> None:
    """Paced clients arrive in a fixed cycle (the fault suite: 12 clients, 4 of them in eu); each
    pool's origins must all be first in turn. A counter shared by all pools picked only some of
    a 4-origin pool here (12 = 0 mod 4): a new edge never got traffic."""
    cycle = ["eu", "us", "eu", "ru", "us", "eu", "ru", "us", "eu", "ru", "us", "ru"]
    rotation = PoolRotation()
    pool_origins = {pool: [f"{pool}-{i}" for i in range(origins)] for pool in set(cycle)}
    first: dict[str, set[str]] = {pool: set() for pool in pool_origins}
    for _ in range(origins):
        for pool in cycle:
            order = rotation.order(pool, pool_origins[pool])
            assert sorted(order) == sorted(pool_origins[pool])  # every origin stays a fallback
            first[pool].add(order[0])
    assert first == {pool: set(names) for pool, names in pool_origins.items()}


def test_a_pool_without_origins_gives_none() -> None:
    assert PoolRotation().order("eu", []) == []
