"""Where a client is: country from ``CF-IPCountry`` or from its IP, and the Cloudflare region code
serving that country.

A GeoIP database (MaxMind DB format: GeoLite2/GeoIP2 Country or City, ``--geoip-db``) is asked
first when one is given; then the CIDR-to-country table (``--cidr-country 127.10.0.0/16=DE``),
the local stand-in: simulated clients bind source addresses in loopback ranges that it places.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

# Cloudflare geo-steering region codes for the countries the local stack simulates and a few more.
# The real region is that of the Cloudflare data centre that answered; this table approximates it.
COUNTRY_REGION: dict[str, str] = {
    **dict.fromkeys(["GB", "IE", "FR", "DE", "NL", "BE", "LU", "ES", "PT", "IT", "CH", "AT", "DK",
                     "NO", "SE", "IS"], "WEU"),
    **dict.fromkeys(["PL", "CZ", "SK", "HU", "RO", "BG", "GR", "FI", "EE", "LV", "LT", "UA", "BY",
                     "RU", "MD", "RS", "HR", "SI", "TR"], "EEU"),
    **dict.fromkeys(["AE", "SA", "IL", "IR", "IQ", "QA", "KW", "JO"], "ME"),
    **dict.fromkeys(["EG", "MA", "DZ", "TN", "LY"], "NAF"),
    **dict.fromkeys(["ZA", "NG", "KE", "GH", "ET"], "SAF"),
    **dict.fromkeys(["IN", "PK", "BD", "LK", "NP", "KZ", "UZ"], "SAS"),
    **dict.fromkeys(["SG", "MY", "TH", "VN", "ID", "PH"], "SEAS"),
    **dict.fromkeys(["JP", "KR", "CN", "TW", "HK", "MN"], "NEAS"),
    **dict.fromkeys(["AU", "NZ"], "OC"),
    **dict.fromkeys(["US-WEST", "CA-WEST"], "WNAM"),
    **dict.fromkeys(["US", "CA", "MX"], "ENAM"),
    **dict.fromkeys(["CO", "VE", "EC", "PE"], "NSAM"),
    **dict.fromkeys(["BR", "AR", "CL", "UY", "PY", "BO"], "SSAM"),
}

DEFAULT_CIDR_COUNTRIES = ("127.10.0.0/16=DE", "127.11.0.0/16=FR", "127.12.0.0/16=RU",
                          "127.20.0.0/16=US", "127.21.0.0/16=BR", "127.22.0.0/16=JP",
                          "127.30.0.0/16=IN")


@dataclass(frozen=True)
class GeoIP:
    """Country lookup by source address: a MaxMind database when given, then a CIDR table
    (longest prefix wins)."""

    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]
    database: Any = None

    def with_database(self, path: str | None) -> "GeoIP":
        """The same lookup, asking the MaxMind database at ``path`` first (None: unchanged)."""
        if not path:
            return self
        import maxminddb

        return GeoIP(self.networks, maxminddb.open_database(path))

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> "GeoIP":
        """Build from ``CIDR=CC`` strings; raises ValueError on a malformed one."""
        pairs = []
        for spec in specs:
            cidr, sep, country = spec.partition("=")
            if not sep or len(country.strip()) != 2:
                raise ValueError(f"expected CIDR=CC, got {spec!r}")
            pairs.append((ipaddress.ip_network(cidr.strip(), strict=False), country.strip().upper()))
        pairs.sort(key=lambda p: p[0].prefixlen, reverse=True)
        return cls(tuple(pairs))

    def country(self, ip: str | None) -> str | None:
        if not ip:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if self.database is not None:
            record = self.database.get(addr)
            code = (record or {}).get("country", {}).get("iso_code") if isinstance(record, dict) else None
            if code:
                return str(code).upper()
        for network, country in self.networks:
            if addr in network:
                return country
        return None


def region_code(country: str | None) -> str | None:
    """The Cloudflare region code for an ISO country code, when known."""
    return COUNTRY_REGION.get(country.upper()) if country else None
