"""Enrichment: the Kafka key and headers of ARCHITECTURE.md's data contract (names and key rule
from :mod:`service_kit.contract`).

Headers: ``event-id``, ``received-at``, ``region``, ``edge`` always; ``client-ip`` (forwarded
headers only from trusted proxies), ``country`` (``CF-IPCountry`` from a trusted proxy) and
``sent-at`` when known, ``source`` (the write key's source) when write keys are on. Key:
:func:`~service_kit.contract.user_key` (a non-empty string ``user_id``, else ``anonymous_id``),
else the event id.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, NamedTuple, Sequence

import uuid_utils

from service_kit.contract import (CLIENT_IP, COUNTRY, EDGE, EVENT_ID, FIELD_EVENT_ID, FIELD_SENT_AT, RECEIVED_AT,
                                  REGION, SENT_AT, SOURCE, user_key)

Headers = list[tuple[str, bytes]]
_COUNTRY = re.compile(rb"^[A-Z0-9]{2}$")
_MAX_ID = 200


class RequestContext(NamedTuple):
    """What the edge knows about one request, shared by all its events (a NamedTuple: built
    per request, cheaper than a frozen dataclass)."""

    received_at: bytes
    client_ip: bytes | None
    country: bytes | None
    sent_at: bytes | None
    idempotency_key: bytes | None
    source: bytes | None = None


class ProxyTrust:
    """Decides which peers' forwarded headers (CF-Connecting-IP, X-Forwarded-For, CF-IPCountry) count."""

    def __init__(self, cidrs: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def trusted(self, address: str) -> bool:
        hit = self._cache.get(address)
        if hit is None:
            try:
                ip = ipaddress.ip_address(address)
                hit = any(ip in net for net in self.networks)
            except ValueError:
                hit = False
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[address] = hit
        return hit

    def client(self, peer: str | None, headers: dict[bytes, bytes]) -> tuple[bytes | None, bool]:
        """``(client ip, peer trusted)``: the forwarded address only when ``peer`` is trusted."""
        if peer is None:
            return None, False
        if not self.networks or not self.trusted(peer):
            return peer.encode(), False
        cf = headers.get(b"cf-connecting-ip")
        if cf:
            return cf.strip()[:64], True
        xff = headers.get(b"x-forwarded-for")
        if xff:
            hops = [h.strip() for h in xff.split(b",") if h.strip()]
            for hop in reversed(hops):  # the right-most address that is not a trusted proxy
                if not self.trusted(hop.decode("latin-1")):
                    return hop[:64], True
            if hops:
                return hops[0][:64], True
        return peer.encode(), True


def country_of(value: bytes | None) -> bytes | None:
    """``CF-IPCountry`` if it looks like one (two upper-case letters/digits: ``DE``, ``XX``, ``T1``)."""
    if value and _COUNTRY.match(value):
        return value
    return None


def sent_at_of(value: Any) -> bytes | None:
    """Client send time in ms from a ``sent_at`` field or ``X-Sent-At`` header, when it is a number."""
    if type(value) is int and value >= 0:
        return str(value).encode()
    if type(value) is float and 0 <= value < 1e15:
        return str(int(value)).encode()
    if isinstance(value, (bytes, str)):
        text = value.strip()
        if text and text.isdigit() and len(text) < 16:
            return text.encode() if isinstance(text, str) else text
    return None


def event_id_and_key(doc: dict[str, Any], idempotency_key: bytes | None) -> tuple[bytes, bytes]:
    """The event id (client's ``event_id`` / ``Idempotency-Key`` or a new UUIDv7) and the record key."""
    given = doc.get(FIELD_EVENT_ID)
    if type(given) is str and 0 < len(given) <= _MAX_ID:
        event_id = given.encode()
    elif idempotency_key:
        event_id = idempotency_key
    else:
        event_id = str(uuid_utils.uuid7()).encode()
    user = user_key(doc)
    return event_id, (event_id if user is None else user.encode())


class Enricher:
    """Builds the headers of one record from the event and its request context."""

    def __init__(self, region: str, node_id: str) -> None:
        self.region = (REGION, region.encode())
        self.edge = (EDGE, node_id.encode())

    def headers(self, doc: dict[str, Any], ctx: RequestContext, event_id: bytes) -> Headers:
        headers: Headers = [(EVENT_ID, event_id), (RECEIVED_AT, ctx.received_at), self.region, self.edge]
        if ctx.client_ip is not None:
            headers.append((CLIENT_IP, ctx.client_ip))
        if ctx.country is not None:
            headers.append((COUNTRY, ctx.country))
        if ctx.source is not None:
            headers.append((SOURCE, ctx.source))
        sent = doc.get(FIELD_SENT_AT)
        sent_at = sent_at_of(sent) if sent is not None else ctx.sent_at
        if sent_at is not None:
            headers.append((SENT_AT, sent_at))
        return headers
