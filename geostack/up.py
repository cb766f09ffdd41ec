"""``make up``: the local geo topology in the foreground until Ctrl-C.

Two edge regions and the central one from ``regions.yaml`` on the ports it gives: three Kafka
clusters, a Consul datacenter per region (ACLs on), two edges per edge region, the mirror,
``geo-central`` with its dashboard, and the geo router on one public port.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import orjson

from geostack.stack import LocalStack
from service_kit.logs import configure_logging

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geostack.up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "stack",
                        help="data and logs of every component")
    parser.add_argument("--free-ports", action="store_true",
                        help="take free loopback ports instead of regions.yaml's")
    parser.add_argument("--edges-per-region", type=int, default=2)
    parser.add_argument("--no-acl", action="store_true", help="run Consul without ACLs")
    parser.add_argument("--brokers", type=int, default=None,
                        help="Kafka brokers per cluster (default: each region's local.brokers in "
                             "regions.yaml, else 1); 3: replication factor 3, min.insync.replicas 2")
    parser.add_argument("--wan", choices=("regions", "off"), default=os.environ.get("GEOINGEST_WAN") or "regions",
                        help="the links from each edge region to the centre: regions.yaml's wan: figures "
                             "(emulated in user space) or off (loopback); env GEOINGEST_WAN")
    args = parser.parse_args(argv)
    configure_logging("info", service="geostack")
    stack = LocalStack(args.workdir, fixed_ports=not args.free_ports,
                       edges_per_region=args.edges_per_region, acl=not args.no_acl, brokers=args.brokers, wan_links=args.wan,
                       prometheus_config=None if args.free_ports else REPO / "observability" / "prometheus.yml")
    print(f"starting the geo stack in {args.workdir} (logs in {args.workdir / 'logs'}) ...", flush=True)
    with stack:
        print("geo stack is up; WAN links to the centre:", orjson.dumps(stack.link_shapes()).decode())
        for name, url in stack.urls().items():
            print(f"  {name:24} {url}")
        print(orjson.dumps(stack.urls()).decode())
        print("Ctrl-C stops everything.", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean stop short
            signal.signal(sig, signal.SIG_IGN)
        print("stopping ...", flush=True)
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
