"""``geo-router``: run the geo router (Cloudflare's local stand-in) with health from Consul.

The admin port serves ``/metrics``, ``/status`` and the geo discovery API ``/v1/edges``
(the healthy edges per region, as Consul reports them).
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvicorn
from starlette.responses import Response
from starlette.routing import Route

from geostack.geoip import DEFAULT_CIDR_COUNTRIES, GeoIP
from geostack.pools import SteeringTable
from geostack.router import GeoRouter, Origin
from service_kit.admin import EmbeddedServer, admin_app
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
    p.add_argument("--log-level", default="info", env="GEO_ROUTER_LOG_LEVEL")
    return p


async def serve(args) -> None:
    regions = load_regions(args.regions)
    dc_of = {r.name: r.consul_datacenter for r in regions.edge_regions}
    watch = ServiceWatch(args.consul_url, "edge", list(dc_of.values()), token=args.consul_token).start()

    def healthy(pool: str) -> list[Origin]:
        return [Origin(i.id, f"http://{i.hostport}") for i in watch.instances(dc_of.get(pool, pool))]

    router = GeoRouter(SteeringTable.from_maps(steering_pools(regions)), healthy,
                       GeoIP.from_specs(args.cidr_country).with_database(args.geoip_db or None), timeout=args.timeout)

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
    servers = [
        EmbeddedServer(uvicorn.Config(router, host=args.host, port=args.port, log_config=None,
                                      access_log=False, http="httptools", loop="uvloop")),
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
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, service="geo-router")
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
