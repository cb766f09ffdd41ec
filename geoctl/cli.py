"""``geoctl``: one command for the people who run geoingest's regions.

    geoctl status                    the whole topology on one screen; exit 1 when unhealthy
    geoctl regions                   the regions file joined with Consul and the mirror
    geoctl edges REGION              a region's edges: address, version, health, requests/s, 503s/s
    geoctl edges add REGION [--count N]    start edges in the running local stack (make up)
    geoctl edges drain NODE          the SIGTERM drain of one edge, until Consul forgot it

Read commands take ``--json``. Against the local stack (``make up``) no flag is needed: geoctl
reads ``<stack dir>/geoctl.json``. In production give ``--consul-url`` and a read-only token
(``--consul-token-file`` or ``GEOCTL_CONSUL_TOKEN``), ``--mirror-url`` and ``--central-url``.
Exit codes: 0 healthy / done, 1 unhealthy (status, regions), 2 usage, connection or auth error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import orjson

from geoctl import render
from geoctl.consul_source import Consul, ConsulUnavailable
from geoctl.errors import GeoctlError
from geoctl.local import DEFAULT_STACK_DIR, StackState, add_edges, drain_edge, load_state
from geoctl.metrics_source import edge_traffic
from geoctl.topology import Limits, Sources, collect
from service_kit import kafka_security
from service_kit.config import EnvArgumentParser
from service_kit.kafka_security import KafkaSettingsError
from service_kit.regions import load_regions

EXIT_OK, EXIT_UNHEALTHY, EXIT_ERROR = 0, 1, 2


def options_parser() -> EnvArgumentParser:
    """The options every command takes (a parent parser: they may follow the command)."""
    p = EnvArgumentParser(add_help=False)
    a = p.add_argument
    a("--stack-dir", env="GEOCTL_STACK_DIR", type=Path, default=DEFAULT_STACK_DIR,
      help="work directory of the local stack (make up's); its geoctl.json gives every address "
           "and token when --consul-url is not given")
    a("--consul-url", env="GEOCTL_CONSUL_URL", default="",
      help="Consul HTTP API of any datacenter of the federation (default: the local stack's primary)")
    a("--consul-token", env="GEOCTL_CONSUL_TOKEN", default="",
      help="Consul ACL token (policy geoctl, read only); prefer the variable or --consul-token-file "
           "(a flag is visible in ps); never printed")
    a("--consul-token-file", env="GEOCTL_CONSUL_TOKEN_FILE", default="",
      help="file holding the Consul ACL token")
    a("--regions-file", env="GEOINGEST_REGIONS", default="",
      help="the regions file (default: the repository's regions.yaml)")
    a("--mirror-url", env="GEOCTL_MIRROR_URLS", nargs="*", default=[],
      help="admin base URL of each geo-mirror worker, e.g. http://mirror:39181 (default: the local stack's)")
    a("--central-url", env="GEOCTL_CENTRAL_URL", default="",
      help="geo-central's base URL (default: the local stack's)")
    a("--timeout", env="GEOCTL_TIMEOUT", type=float, default=5.0,
      help="seconds each request to Consul, Kafka or a metrics page may take")
    a("--color", env="GEOCTL_COLOR", choices=("auto", "always", "never"), default="auto",
      help="colour the tables: auto = on a terminal unless NO_COLOR is set")
    a("--json", action="store_true", help="print JSON instead of tables (read commands)")
    a("--max-records-behind", env="GEOCTL_MAX_RECORDS_BEHIND", type=float, default=Limits.max_records_behind,
      help="status: a region whose mirror is further behind is degraded")
    a("--max-latency", env="GEOCTL_MAX_LATENCY", type=float, default=Limits.max_latency_s,
      help="status: seconds of replication latency (age of the last mirrored heartbeat) beyond which a region is degraded")
    a("--max-freshness", env="GEOCTL_MAX_FRESHNESS", type=float, default=Limits.max_freshness_s,
      help="status: seconds of central data age beyond which a region is degraded")
    a("--max-backlog", env="GEOCTL_MAX_BACKLOG", type=float, default=Limits.max_backlog,
      help="status: records not yet loaded beyond which geo-central counts as degraded")
    kafka_security.add_arguments(p, "kafka", "GEOCTL_KAFKA", "every region's Kafka (admin API)")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = options_parser()
    parser = EnvArgumentParser(prog="geoctl", description=__doc__ + "\nEvery command's options: geoctl COMMAND --help.",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("status", parents=[common], help="the whole topology; exit 1 when unhealthy",
                        description="Per region: edges, Kafka, the mirror's lag, central freshness.")
    commands.add_parser("regions", parents=[common], help="the regions file joined with Consul and the mirror")
    edges = commands.add_parser(
        "edges", parents=[common], help="edges: list a region's, add, drain",
        description="geoctl edges REGION | geoctl edges add REGION [--count N] | geoctl edges drain NODE")
    edges.add_argument("words", nargs="+", metavar="ARG", help="REGION, or add REGION, or drain NODE")
    edges.add_argument("--count", type=int, default=1, help="edges add: how many")
    edges.add_argument("--window", type=float, default=1.0,
                       help="edges REGION: seconds between the two metrics scrapes the rates come from")
    edges.add_argument("--wait", type=float, default=90.0,
                       help="edges add / drain: longest wait for Consul to see the change")
    return parser


def read_token(args: argparse.Namespace) -> str:
    if args.consul_token:
        return args.consul_token.strip()
    if args.consul_token_file:
        try:
            return Path(args.consul_token_file).read_text().strip()
        except OSError as exc:
            raise GeoctlError(f"cannot read --consul-token-file: {exc.strerror}") from None
    return os.environ.get("CONSUL_HTTP_TOKEN", "").strip()


def sources_from(args: argparse.Namespace) -> tuple[Sources, StackState | None]:
    """Where to look: the flags, else the local stack's state."""
    local = not args.consul_url
    state = load_state(args.stack_dir, required=False) if local else None
    if local and state is None:
        raise GeoctlError(f"no --consul-url given and no local stack state at {args.stack_dir}/geoctl.json "
                          f"(start one with `make up`, or name a Consul with --consul-url)")
    token = read_token(args) or (state.consul_token if state else "")
    consul = Consul(args.consul_url or state.primary_consul_url, token, timeout=args.timeout)  # type: ignore[union-attr]
    try:
        security = kafka_security.from_args(args, "kafka", "GEOCTL_KAFKA")
        regions = load_regions(args.regions_file or None)
    except (KafkaSettingsError, OSError, ValueError) as exc:
        raise GeoctlError(str(exc)) from None
    sources = Sources(
        consul=consul, regions=regions,
        mirror_urls=list(args.mirror_url) or (list(state.doc.get("mirror_urls") or []) if state else []),
        central_url=args.central_url or (state.doc.get("central_url", "") if state else ""),
        kafka_bootstraps=state.kafka_bootstraps if state else {},
        kafka_security=security, kafka_timeout=args.timeout,
        limits=Limits(args.max_records_behind, args.max_latency, args.max_freshness, args.max_backlog))
    return sources, state


def emit_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def emit_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def cmd_status(args: argparse.Namespace, regions_view: bool = False) -> int:
    sources, _ = sources_from(args)
    sources.consul.check_token()
    topology = collect(sources, with_central=True)
    if args.json:
        emit_json(topology.as_dict())
    else:
        colour = render.use_colour(args.color, sys.stdout)
        width = render.terminal_width()
        emit_lines(render.regions_lines(topology, width, colour) if regions_view
                   else render.status_lines(topology, width, colour))
    return EXIT_OK if topology.healthy else EXIT_UNHEALTHY


def cmd_edges(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] in ("add", "drain"):
        if len(words) != 2:
            raise GeoctlError(f"usage: geoctl edges {words[0]} {'REGION' if words[0] == 'add' else 'NODE'}")
        sources, state = sources_from(args)
        sources.consul.check_token()
        if words[0] == "add":
            if state is None:
                raise GeoctlError("edges add works on the local stack only (no --consul-url): in production "
                                  "start geo-edge where it runs (docs/deploy.md)")
            result: Any = add_edges(state, sources.consul, words[1], args.count, timeout=args.wait)
            lines = [f"edge {r['node']} passing in Consul after {r['seconds_to_passing']} s "
                     f"(127.0.0.1:{r['port']}, pid {r['pid']}, log {r['log']})" for r in result]
        else:
            result = drain_edge(sources.consul, words[1], state.workdir if state else None, timeout=args.wait)
            lines = [f"edge {result['node']} drained and gone from Consul after "
                     f"{result['seconds_to_drained']} s (pid {result['pid']})"]
        emit_json(result) if args.json else emit_lines(lines)
        return EXIT_OK
    if len(words) != 1:
        raise GeoctlError("usage: geoctl edges REGION | edges add REGION [--count N] | edges drain NODE")
    sources, _ = sources_from(args)
    sources.consul.check_token()
    region = words[0]
    known = {r.name: r for r in sources.regions.regions}
    datacenter = known[region].consul_datacenter if region in known else region
    if datacenter not in sources.consul.datacenters():
        raise GeoctlError(f"unknown region {region!r}: Consul has no datacenter {datacenter!r}")
    edges = [e for e in sources.consul.edges(datacenter) if e.region in ("", region)]
    urls = {e.id: (f"http://{e.meta['metrics']}/metrics" if e.meta.get("metrics") else "") for e in edges}
    traffic = edge_traffic(urls, window=args.window, timeout=args.timeout)
    if args.json:
        emit_json([{"node": e.id, "region": e.region, "address": f"{e.address}:{e.port}",
                    "version": e.meta.get("version"), "health": e.state, "check_output": e.output or None,
                    "metrics": urls[e.id] or None, "requests_per_s": traffic[e.id].requests_per_s,
                    "errors_503_per_s": traffic[e.id].errors_503_per_s,
                    "error": traffic[e.id].error or None} for e in edges])
    else:
        emit_lines(render.edges_lines(edges, traffic, render.terminal_width(),
                                      render.use_colour(args.color, sys.stdout))
                   + ([f"no edges registered in {region}"] if not edges else []))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_ERROR
    try:
        if args.command == "status":
            return cmd_status(args)
        if args.command == "regions":
            return cmd_status(args, regions_view=True)
        return cmd_edges(args)
    except ConsulUnavailable as exc:
        hint = "" if args.consul_url else f" (is the local stack of {args.stack_dir} running? `make up`)"
        print(f"geoctl: {exc}{hint}", file=sys.stderr)
        return EXIT_ERROR
    except GeoctlError as exc:
        print(f"geoctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
