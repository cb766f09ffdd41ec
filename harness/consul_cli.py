"""``python -m harness.consul_cli``: print the consul binary, or run federated agents in the foreground.

    python -m harness.consul_cli binary                       # builds it the first time
    python -m harness.consul_cli up --datacenters ru eu us --acl --workdir /tmp/c
        # prints one JSON line: {"datacenters": {dc: url}, "management_token": ...}; stops on
        # SIGINT/SIGTERM. With --acl the first datacenter is the primary.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
from pathlib import Path

from harness.consul import consul_binary, start_agents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.consul_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("binary", help="print the path of the consul binary (build it if needed)")
    up = sub.add_parser("up", help="start one agent per datacenter, WAN-joined, until a signal")
    up.add_argument("--datacenters", nargs="+", default=["ru", "eu", "us"])
    up.add_argument("--acl", action="store_true", help="ACLs on, default deny")
    up.add_argument("--persistent", action="store_true", help="servers with a data dir, not -dev")
    up.add_argument("--workdir", type=Path, help="logs and data (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.cmd == "binary":
        print(consul_binary())
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geo-consul-"))
    agents = start_agents(args.datacenters, workdir, acl=args.acl, dev=not args.persistent)
    print(json.dumps({"datacenters": {a.datacenter: a.url for a in agents},
                      "management_token": agents[0].management_token or None,
                      "workdir": str(workdir)}), flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    for agent in agents:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
