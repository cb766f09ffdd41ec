"""``make demo``: the local geo stack, simulated clients in several countries through the geo
router, every acknowledged event found once in the central table, then a regional failover.

Exits 0 when every check holds, 1 with the reasons otherwise; the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from geostack.audit import wait_for_central
from geostack.clients import run_clients
from geostack.stack import LocalStack
from service_kit.logs import configure_logging

EU_CLIENTS = ["DE", "FR", "RU"]
US_CLIENTS = ["US", "BR", "JP"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geostack.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--events-per-country", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s from all clients")
    parser.add_argument("--fixed-ports", action="store_true", help="use regions.yaml's ports (as make up)")
    parser.add_argument("--wan", choices=("regions", "off"), default=os.environ.get("GEOINGEST_WAN") or "regions",
                        help="region -> centre links: regions.yaml's wan: figures or off (loopback); env GEOINGEST_WAN")
    args = parser.parse_args(argv)
    # CI saw this process end with SIGSEGV once (2026-12-06), after it had printed its summary:
    # a crash leaves every thread's Python stack on stderr
    faulthandler.enable()
    configure_logging("warning", service="geostack-demo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geo-demo-"))
    failures: list[str] = []
    summary: dict[str, object] = {"workdir": str(workdir)}
    started = time.monotonic()
    say(f"starting the geo stack in {workdir} ...")
    with LocalStack(workdir, fixed_ports=args.fixed_ports, wan_links=args.wan) as stack:
        summary["wan"] = stack.link_shapes()
        say(f"up in {time.monotonic() - started:.0f}s; router {stack.router_url} (CA {stack.ca_cert}), "
            f"dashboard {stack.central_url}/")
        failed_region = stack.regions.edge_regions[-1].name
        other_region = stack.regions[failed_region].failover[0]

        say(f"phase 1: {args.events_per_country} events from each of {EU_CLIENTS + US_CLIENTS}")
        first = asyncio.run(run_clients(stack.router_url, EU_CLIENTS + US_CLIENTS, ssl_context=stack.client_ssl(),
                                        events_per_country=args.events_per_country, rate=args.rate))
        audit1 = wait_for_central(stack.central_url, first)
        latency = httpx.get(f"{stack.central_url}/api/latency", timeout=10).json()
        say(f"  acknowledged {len(first.acked)} by pool {first.acked_by_pool}; central has "
            f"{audit1.found} of them by region {audit1.by_region} after {audit1.seconds_to_complete:.1f}s")
        summary["steady"] = {"clients": first.summary(), "central": audit1.as_dict(), "latency": latency}
        check(audit1.exact, f"steady state: {audit1.as_dict()}", failures)
        check(first.gave_up == 0 and first.rejected == 0, f"steady state client failures: {first.summary()}", failures)
        expect_pools = {failed_region, other_region}
        check(set(first.acked_by_pool) == expect_pools, f"both regions served: {first.acked_by_pool}", failures)

        say(f"phase 2: stopping both edges of {failed_region}; its clients must fail over to {other_region}")
        for edge in stack.edges_of(failed_region):
            edge.process.stop()
        stack.wait_routable({failed_region: 0, other_region: stack.edges_per_region}, timeout=60)
        second = asyncio.run(run_clients(stack.router_url, US_CLIENTS, ssl_context=stack.client_ssl(),
                                         events_per_country=args.events_per_country, rate=args.rate))
        audit2 = wait_for_central(stack.central_url, second)
        say(f"  acknowledged {len(second.acked)} by pool {second.acked_by_pool}; central has {audit2.found}")
        summary["failover"] = {"stopped_region": failed_region, "clients": second.summary(),
                               "central": audit2.as_dict()}
        check(second.acked_by_pool == {other_region: len(second.acked)},
              f"failover went to {other_region}: {second.acked_by_pool}", failures)
        check(audit2.exact, f"failover: {audit2.as_dict()}", failures)
        check(second.gave_up == 0, f"failover client failures: {second.summary()}", failures)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["ok"] = not failures
    summary["failures"] = failures
    for failure in failures:
        say(f"FAILED: {failure}")
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if not failures else 1


def check(ok: bool, what: str, failures: list[str]) -> None:
    if not ok:
        failures.append(what)


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
