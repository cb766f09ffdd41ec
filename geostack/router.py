"""The geo router: the local stand-in for Cloudflare's proxied, geo-steered load balancer.

For each request: the client's country (``CF-IPCountry``, else its source address through the
CIDR table), the pools in steering order, a healthy edge of the first pool that has one (health
from Consul; each pool's edges taken in turn), and the request forwarded with ``CF-Connecting-IP``
and ``CF-IPCountry`` set as Cloudflare sets them. A connection that fails before the request was
sent is retried on another edge; a request that an edge may already have accepted is never sent
twice.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import aiohttp
from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from geostack.geoip import GeoIP
from geostack.pools import PoolRotation, SteeringTable

log = logging.getLogger(__name__)

REQUESTS = Counter("geo_router_requests_total", "Requests answered, by chosen pool and status",
                   ["pool", "status"])
UPSTREAM_FAILURES = Counter("geo_router_upstream_failures_total",
                            "Upstream failures, by pool and kind (connect: retried elsewhere; "
                            "after_send: answered 503, never retried)", ["pool", "kind"])
FAILOVERS = Counter("geo_router_failovers_total",
                    "Requests served by a pool other than the client's first pool", ["from_pool", "to_pool"])
DURATION = Histogram("geo_router_request_duration_seconds", "Time to answer a request",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class Origin:
    """One edge that can take traffic."""

    id: str
    base_url: str


HealthyOrigins = Callable[[str], Sequence[Origin]]


class GeoRouter:
    """ASGI app routing every request to an edge chosen by geo steering and health."""

    def __init__(self, steering: SteeringTable, healthy: HealthyOrigins, geoip: GeoIP,
                 timeout: float = 10.0, max_connections: int = 512,
                 edge_tls: ssl.SSLContext | None = None) -> None:
        self.steering, self.healthy, self.geoip = steering, healthy, geoip
        #: how HTTPS edges are verified (default: the system's CAs; never unverified)
        self.edge_tls = edge_tls or ssl.create_default_context()
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=1.0)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.rotation = PoolRotation()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created in the serving loop
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, auto_decompress=False, skip_auto_headers=("User-Agent", "Content-Type"),
                connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=None,
                                               ssl=self.edge_tls))
        return self._session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        request = Request(scope, receive)
        started = time.perf_counter()
        response, pool = await self.route(request)
        REQUESTS.labels(pool, str(response.status_code)).inc()
        DURATION.observe(time.perf_counter() - started)
        await response(scope, receive, send)

    async def route(self, request: Request) -> tuple[Response, str]:
        peer = request.client.host if request.client else ""
        country = (request.headers.get("cf-ipcountry") or self.geoip.country(peer) or "XX").upper()
        pools = self.steering.pools_for(country)
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
                   and k.lower() not in ("cf-connecting-ip", "cf-ipcountry")]
        headers += [("cf-connecting-ip", peer), ("cf-ipcountry", country)]
        forwarded = request.headers.get("x-forwarded-for")
        headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
        headers.append(("x-forwarded-for", f"{forwarded}, {peer}" if forwarded else peer))
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        for pool in pools:
            for origin in self.rotation.order(pool, self.healthy(pool)):
                try:
                    async with self.session.request(request.method, origin.base_url + target, data=body,
                                                    headers=headers, allow_redirects=False) as upstream:
                        content = await upstream.read()
                        status = upstream.status
                        out_headers = {k: v for k, v in upstream.headers.items()
                                       if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server")}
                except aiohttp.ClientConnectorError as exc:
                    UPSTREAM_FAILURES.labels(pool, "connect").inc()
                    log.warning("edge unreachable, trying another", extra={"edge": origin.id, "error": repr(exc)})
                    continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    UPSTREAM_FAILURES.labels(pool, "after_send").inc()
                    log.warning("edge failed after the request was sent; not retried",
                                extra={"edge": origin.id, "error": repr(exc)})
                    return _error(503, "upstream_failed", "the edge failed after the request was sent; "
                                  "whether it stored the events is unknown: retry with the same event_id",
                                  retry_after=1), pool
                if pool != pools[0]:
                    FAILOVERS.labels(pools[0], pool).inc()
                out_headers["x-geo-pool"] = pool
                out_headers["x-geo-edge"] = origin.id
                return Response(content, status, headers=out_headers), pool
        return _error(503, "no_healthy_origin", f"no healthy edge in pools {pools}", retry_after=1), "none"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _error(status: int, reason: str, detail: str, retry_after: int | None = None) -> Response:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": {"reason": reason, "detail": detail}}, status_code=status, headers=headers)
