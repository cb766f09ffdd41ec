"""``geo-router``: run the geo router (Cloudflare's local stand-in) with health from Consul.

The public port serves HTTPS when ``--tls-cert``/``--tls-key`` are given (TLS 1.2+), and
``--http-port`` adds a plain-HTTP listener for clients of the original service. Edges that
register ``Meta.scheme = https`` in Consul are reached over HTTPS, their certificates verified
against ``--edge-ca-file`` (Cloudflare's "Full (strict)"). Both public listeners protect
themselves from slow clients as the edge does (``service_kit.http_protocol``).

The admin port serves ``/metrics``, ``/status`` and the geo discovery API ``/v1/edges``
(the healthy edges per region, as Consul reports them).
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import orjson
import uvicorn
from starlette.responses import Response
from starlette.routing import Route

from geostack.geoip import DEFAULT_CIDR_COUNTRIES, GeoIP
from geostack.pools import SteeringTable
from geostack.router import GeoRouter, Origin
from service_kit.admin import EmbeddedServer, admin_app
from service_kit import http_protocol
from service_kit.config import EnvArgumentParser
from service_kit.consul_watch import ServiceWatch
from service_kit.logs import configure_logging
from service_kit.regions import load_regions
from service_kit.shutdown import shutdown_event
from service_kit.steering import steering_pools


def build_parser() -> EnvArgumentParser:
    p = EnvArgumentParser(prog="geo-router", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", env="GEO_ROUTER_HOST", help="public listen address")
    p.add_argument("--port", type=int, default=8080, env="GEO_ROUTER_PORT", help="public port")
    p.add_argument("--tls-cert", default="", env="GEO_ROUTER_TLS_CERT",
                   help="PEM certificate chain: the public port serves HTTPS (TLS 1.2+)")
    p.add_argument("--tls-key", default="", env="GEO_ROUTER_TLS_KEY", help="PEM private key for --tls-cert")
    p.add_argument("--http-port", type=int, default=0, env="GEO_ROUTER_HTTP_PORT",
                   help="a second public port serving plain HTTP (0: none)")
    p.add_argument("--edge-ca-file", default="", env="GEO_ROUTER_EDGE_CA_FILE",
                   help="PEM CA that signed the edges' certificates, verified for every HTTPS edge "
                        "(default: the system's CAs)")
    p.add_argument("--admin-port", type=int, default=9180, env="GEO_ROUTER_ADMIN_PORT",
                   help="port of /metrics, /status and /v1/edges")
    p.add_argument("--consul-url", default="http://127.0.0.1:8500", env="GEO_ROUTER_CONSUL_URL",
                   help="Consul HTTP API")
    p.add_argument("--consul-token", default=None, env="GEO_ROUTER_CONSUL_TOKEN",
                   help="Consul ACL token (read-only policy 'georouter')")
    p.add_argument("--regions", default=None, env="GEOINGEST_REGIONS", help="regions file")
    p.add_argument("--cidr-country", nargs="*", default=list(DEFAULT_CIDR_COUNTRIES),
                   env="GEO_ROUTER_CIDR_COUNTRY", help="CIDR=CC pairs placing source addresses")
    p.add_argument("--geoip-db", default="", env="GEO_ROUTER_GEOIP_DB",
                   help="MaxMind DB (GeoLite2/GeoIP2 Country or City) asked before the CIDR table")
    p.add_argument("--timeout", type=float, default=10.0, env="GEO_ROUTER_TIMEOUT",
                   help="seconds to wait for an edge's answer")
    http_protocol.add_arguments(p, "GEO_ROUTER", ROUTER_LIMITS)
    p.add_argument("--log-level", default="info", env="GEO_ROUTER_LOG_LEVEL")
    return p


#: the router's slow-client defaults: the edge's, with uvicorn's 5-s keep-alive it always had
ROUTER_LIMITS = http_protocol.ConnectionLimits(keepalive_timeout=5.0)


async def serve(args) -> None:
    regions = load_regions(args.regions)
    dc_of = {r.name: r.consul_datacenter for r in regions.edge_regions}
    watch = ServiceWatch(args.consul_url, "edge", list(dc_of.values()), token=args.consul_token).start()

    def healthy(pool: str) -> list[Origin]:
        return [Origin(i.id, f"{i.meta.get('scheme', 'http')}://{i.hostport}")
                for i in watch.instances(dc_of.get(pool, pool))]

    router = GeoRouter(SteeringTable.from_maps(steering_pools(regions)), healthy,
                       GeoIP.from_specs(args.cidr_country).with_database(args.geoip_db or None), timeout=args.timeout,
                       edge_tls=ssl.create_default_context(cafile=args.edge_ca_file or None))

    def edges_snapshot() -> dict[str, list[dict[str, object]]]:
        return {name: [{"id": i.id, "address": i.hostport, "meta": dict(i.meta)}
                       for i in watch.instances(dc)] for name, dc in dc_of.items()}

    def health() -> tuple[bool, dict[str, object]]:
        edges = edges_snapshot()
        return any(edges.values()), {"healthy_edges": {k: len(v) for k, v in edges.items()}}

    admin = admin_app(health)
    admin.router.routes.append(Route("/v1/edges", lambda _: Response(
        orjson.dumps(edges_snapshot()), media_type="application/json")))
    stop = shutdown_event()
    limits = http_protocol.limits_from_args(args, retry_after=1)
    public = dict(host=args.host, log_config=None, access_log=False, loop="uvloop", limits=limits,
                  backlog=4096)
    servers = [
        EmbeddedServer(http_protocol.ProtectedConfig(router, port=args.port, ssl_certfile=args.tls_cert or None,
                                                     ssl_keyfile=args.tls_key or None, **public)),
        *([EmbeddedServer(http_protocol.ProtectedConfig(router, port=args.http_port, lifespan="off", **public))]
          if args.http_port else []),
        EmbeddedServer(uvicorn.Config(admin, host=args.host, port=args.admin_port, log_config=None,
                                      access_log=False, lifespan="off")),
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    await stop.wait()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)
    watch.stop()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("TLS needs both --tls-cert and --tls-key")
    try:
        http_protocol.limits_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    configure_logging(args.log_level, service="geo-router")
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
