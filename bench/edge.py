"""Edge benchmark against its peers: one Kafka cluster; geo-edge, a Go reference and Benthos, one at a time.

    python -m bench.edge [--duration 12] [--connections 256] [--peers go,benthos | --skip-peers]

Every system (``bench/peers.py``: geo-edge with its defaults; ``bench/goref``, the original design
in Go; ``bench/benthos``, Benthos v4.27.0) runs the same wrk script posting one event to ``/post``
in four scenarios: keep-alive (``--connections``), ``Connection: close`` (``--close-connections``),
and the same two over HTTPS (TLS 1.3, a throw-away certificate from trustme). Per scenario it
prints the rate, p50/p99 latency, non-2xx answers and socket errors, the load average before it,
the system's own CPU time per request (user + system time of its process tree over the requests
wrk completed: a figure that holds up on a shared, loaded machine better than the rate), the cores
the system, Kafka and wrk used, and the records that reached the system's own Kafka topic (the
end offsets' growth, which must match its 2xx answers: a peer that answers without producing is
no peer). geo-edge also runs 100-event NDJSON batches on ``/v1/events``; then come edge RSS, a
py-spy profile of one worker, the uvicorn ceiling (``bench/ceiling.py``: the same wrk script
against an app that does nothing) and Kafka's own ProducerPerformance for the same record size.
Only one system is under load at a time: the servers of a phase (plain HTTP, then HTTPS) are
all up, idle but one, and each scenario runs on one system after the other (ABC, then CBA) so that
peers are compared minutes apart at most. The last line is one JSON object: every system's figures, the
ratios geo-edge/go and geo-edge/benthos per scenario, and ``goals`` (issue #14's targets). Not a
test: figures, not pass/fail; the exit code is 1 only when a system failed to run or its Kafka
count did not match its answers.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import peers
from bench.procfs import cpu_seconds, rss_mb, tree_pids
from bench.prom import sample_sum, scrape
from bench.topic_offsets import create_topic, settled_count
from bench.wrk import lua_post, run_wrk
from edge.config import EdgeConfig
from harness.kafka import KafkaCluster, java_command
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until

# issue #14's 49-byte event (figures before it used a 130-byte one with a URL and a timestamp)
EVENT = orjson.dumps({"event": "page_view", "os": "linux", "user_id": "u4"})
assert len(EVENT) == 49

# scenario -> (HTTPS, Connection: close)
SCENARIOS = {"keepalive": (False, False), "close": (False, True),
             "tls_keepalive": (True, False), "tls_close": (True, True)}


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def worker_pids(root: int) -> list[int]:
    return [p for p in tree_pids(root) if p != root and b"multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes()]


def profile(pid: int, seconds: int, out: Path) -> list[tuple[str, float]]:
    """py-spy raw (collapsed) samples of one worker; returns the top self-time frames (share)."""
    subprocess.run([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                    "--format", "raw", "--output", str(out), "--nonblocking"],
                   capture_output=True, check=True)
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        leaf = re.sub(r" \(/.*?site-packages/", " (", leaf)
        self_time[leaf] += int(count)
        total += int(count)
    return [(frame, n / total) for frame, n in self_time.most_common(15)]


def producer_perf(bootstrap: str, records: int, size: int, compression: str) -> float:
    argv = java_command("org.apache.kafka.tools.ProducerPerformance", "--topic", "bench-perf",
                        "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
                        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all",
                        f"compression.type={compression}", "linger.ms=5", "enable.idempotence=true",
                        heap="256m")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    last = [l for l in out.splitlines() if "records sent" in l][-1]
    return float(re.search(r"([\d.]+) records/sec", last).group(1))


def uvicorn_ceiling(work: Path, script: Path, args: argparse.Namespace) -> dict[str, float]:
    """wrk against ``bench.ceiling:app`` under the edge's uvicorn settings: the rate any app could reach."""
    port = free_port()
    server = spawn([sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--host", "127.0.0.1", "--port",
                    str(port), "--workers", str(args.workers), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning", "--no-server-header", "--no-date-header",
                    "--backlog", "4096"], work / "ceiling.log", env={**os.environ, "PYTHONPATH": os.getcwd()})
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            try:
                return httpx.post(base + "/post", content=EVENT).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, 30, what="the ceiling app to answer")
        pids = tree_pids(server.pid)
        cpu0 = cpu_seconds(pids)
        result = run_wrk(base, script, args.duration, args.connections)
        result["app_cores"] = round((cpu_seconds(pids) - cpu0) / args.duration, 2)
        return result
    finally:
        terminate(server, 10)


def produce_totals(metrics_url: str) -> tuple[float, float]:
    """(Kafka batches acknowledged, events accepted) of the edge so far."""
    samples = scrape(metrics_url, 10)
    return (sample_sum(samples, "geo_edge_kafka_produce_duration_seconds_count"),
            sample_sum(samples, "geo_edge_events_accepted_total"))


def measure(server: peers.Server, topic: str, script: Path, connections: int, cluster: KafkaCluster,
            args: argparse.Namespace, events_per_request: int = 1) -> dict[str, Any]:
    """One scenario on a running system: a warm-up run, then the counted run with its CPU and Kafka count."""
    if args.warmup > 0:  # JIT in Kafka, connections, caches: not counted
        run_wrk(server.base, script, args.warmup, connections)
    before = settled_count(cluster.bootstrap, topic)
    pids = server.pids()
    load = load_average()
    cpu0, kafka0 = cpu_seconds(pids), cpu_seconds([cluster.pid])
    r = run_wrk(server.base, script, args.duration, connections)
    cpu = cpu_seconds(pids) - cpu0
    kafka_cores = (cpu_seconds([cluster.pid]) - kafka0) / args.duration
    landed = settled_count(cluster.bootstrap, topic) - before
    ok = r["requests"] - r["non_2xx"]
    # every 2xx is in Kafka; requests in flight when wrk stopped (at most one per connection) or
    # that wrk gave up on may be there too
    slack = (connections + r["errors"]["timeout"]) * events_per_request
    kafka_ok = ok * events_per_request <= landed <= ok * events_per_request + slack
    work_done = max(1, r["requests"] * events_per_request)
    return {"rps": round(r["rps"]), "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "cpu_us_per_request": round(cpu / max(1, r["requests"]) * 1e6, 1),
            "cpu_us_per_event": round(cpu / work_done * 1e6, 1),
            "requests": r["requests"], "non_2xx": r["non_2xx"], "socket_errors": r["errors"],
            "kafka_events": landed, "kafka_matches": kafka_ok, "connections": connections,
            "load1_before": load, "cores": {"app": round(cpu / args.duration, 2), "kafka": round(kafka_cores, 2),
                                            "wrk": r["wrk_cores"]}}


def show(system: str, scenario: str, m: dict[str, Any], unit: str = "req/s") -> None:
    print(f"{system:9} {scenario:14} {m['rps']:>7} {unit}  p50 {m['p50_ms']:.1f} ms  p99 {m['p99_ms']:.1f} ms"
          f"  non-2xx {m['non_2xx']}  socket errors {m['socket_errors']}  load1 before {m['load1_before']:.2f}"
          f"  app CPU {m['cpu_us_per_request']:.0f} us/request ({m['cores']['app']:.2f} cores)"
          f"  Kafka {m['cores']['kafka']:.2f} cores  wrk {m['cores']['wrk']:.2f} cores"
          f"  Kafka got {m['kafka_events']} for {m['requests'] - m['non_2xx']} 2xx"
          f"{'' if m['kafka_matches'] else '  MISMATCH'}", flush=True)


def edge_extras(server: peers.Server, topic: str, work: Path, cluster: KafkaCluster, scripts: dict[str, Path],
                args: argparse.Namespace) -> dict[str, Any]:
    """geo-edge only (plain HTTP): batches on /v1/events, RSS, a py-spy profile."""
    extras: dict[str, Any] = {}
    rss_single = rss_mb(server.pids())
    connections = args.batch_connections or max(8, args.connections // 4)
    batch = measure(server, topic, scripts["batch"], connections, cluster, args, events_per_request=args.batch)
    batch_events = {**batch, "events_per_s": round(batch["rps"] * args.batch), "batch": args.batch}
    print(f"geo-edge  batch x{args.batch:<7} {batch_events['events_per_s']:>7} events/s ({batch['rps']} req/s)"
          f"  p50 {batch['p50_ms']:.1f} ms  p99 {batch['p99_ms']:.1f} ms  non-2xx {batch['non_2xx']}"
          f"  load1 before {batch['load1_before']:.2f}  edge CPU {batch['cpu_us_per_event']:.1f} us/event"
          f" ({batch['cores']['app']:.2f} cores)  Kafka got {batch['kafka_events']} events"
          f"{'' if batch['kafka_matches'] else '  MISMATCH'}", flush=True)
    extras["batch"] = batch_events
    extras["edge_rss_mb"] = round(max(rss_single, rss_mb(server.pids())))
    print(f"edge RSS (supervisor + workers): {extras['edge_rss_mb']} MB", flush=True)
    workers = worker_pids(server.proc.pid)
    top: list[tuple[str, float]] = []
    if workers and not args.skip_profile:
        prof_secs = 6
        close = args.profile_scenario == "close"
        loader = subprocess.Popen(["wrk", "-t", "1", "-c", str(args.close_connections if close else args.connections),
                                   "-d", f"{prof_secs + 2}s", "-s", str(scripts["close" if close else "single"]),
                                   server.base], stdout=subprocess.DEVNULL)
        time.sleep(1)  # not a wait: wrk's first second is ramp-up; the profile covers steady load
        try:
            top = profile(workers[0], prof_secs, work / "profile.txt")
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"py-spy failed: {exc}", flush=True)
        loader.wait()
        print(f"py-spy (one worker under /post {args.profile_scenario} load, self time; raw stacks in {work / 'profile.txt'}):")
        for frame, share in top:
            print(f"  {share * 100:5.1f}%  {frame}")
    extras["profile_top"] = [[f, round(sh, 3)] for f, sh in top[:8]]
    return extras


def run_phase(todo: list[peers.System], use_tls: bool, systems: dict[str, dict[str, Any]], work: Path,
              cluster: KafkaCluster, tls: peers.TlsFiles, scripts: dict[str, Path], args: argparse.Namespace) -> None:
    """The plain-HTTP (or the HTTPS) scenarios of every system, interleaved: all servers start (and
    idle), then each scenario runs on one system after the other (ABC, then CBA, ...) so that a
    system and its peers are measured minutes apart at most, whatever the machine's load does.
    Failures land in ``systems[name]["error"]``; the other systems go on."""
    wanted = [s for s, (t, _) in SCENARIOS.items() if t == use_tls and s in args.scenarios]
    servers: dict[str, peers.Server] = {}
    try:
        for system in todo:
            info = systems[system.name]
            if "error" in info or not (wanted or (system.name == "geo-edge" and not use_tls)):
                continue
            try:
                server = system.start(work, tls if use_tls else None, EVENT)
                servers[system.name] = server
                for _ in range(args.warmup_posts):  # warm up every worker's producer
                    httpx.post(server.base + "/post", content=EVENT, verify=server.verify(),
                               headers={"Content-Type": "application/json"})
                if use_tls:
                    info["tls_version"] = server.tls_version()
            except Exception as exc:  # noqa: BLE001 - reported in the result, the others still run
                print(f"{system.name}: failed to start: {exc!r}", flush=True)
                info["error"] = repr(exc)[:2000]
        for i, scenario in enumerate(wanted):
            close = SCENARIOS[scenario][1]
            order = list(servers) if i % 2 == 0 else list(servers)[::-1]
            for name in order:
                server = servers[name]
                try:
                    edge_counts = name == "geo-edge" and scenario == "keepalive"
                    totals0 = produce_totals(server.metrics_url) if edge_counts else (0.0, 0.0)
                    m = measure(server, systems[name]["topic"], scripts["close" if close else "single"],
                                args.close_connections if close else args.connections, cluster, args)
                    if edge_counts:  # how well the edge batches single events into Kafka
                        totals1 = produce_totals(server.metrics_url)
                        m["events_per_kafka_batch"] = round((totals1[1] - totals0[1])
                                                            / max(1.0, totals1[0] - totals0[0]), 1)
                    systems[name]["scenarios"][scenario] = m
                    show(name, scenario, m)
                except Exception as exc:  # noqa: BLE001 - reported in the result, the others still run
                    print(f"{name} {scenario}: failed: {exc!r}", flush=True)
                    systems[name]["error"] = f"{scenario}: {exc!r}"[:2000]
        if not use_tls and "geo-edge" in servers and "error" not in systems["geo-edge"]:
            systems["geo-edge"]["extras"] = edge_extras(servers["geo-edge"], systems["geo-edge"]["topic"], work,
                                                        cluster, scripts, args)
    finally:
        for server in servers.values():
            server.stop()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def compare(systems: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ratios geo-edge/peer per scenario (rate and CPU per request) and issue #14's goals."""
    def fig(name: str, scenario: str, key: str) -> float | None:
        return systems.get(name, {}).get("scenarios", {}).get(scenario, {}).get(key)

    ratios: dict[str, Any] = {}
    for peer in peers.PEERS:
        if peer in systems and "scenarios" in systems[peer]:
            ratios[f"geo-edge/{peer}"] = {
                s: {"rps": _ratio(fig("geo-edge", s, "rps"), fig(peer, s, "rps")),
                    "cpu_per_request": _ratio(fig("geo-edge", s, "cpu_us_per_request"),
                                              fig(peer, s, "cpu_us_per_request"))}
                for s in SCENARIOS if fig(peer, s, "rps") is not None}
    go = ratios.get("geo-edge/go", {})

    def at_least(scenario: str, factor: float) -> bool | None:
        r = go.get(scenario, {}).get("rps")
        return None if r is None else r >= factor

    cpu = go.get("keepalive", {}).get("cpu_per_request")
    batch = systems.get("geo-edge", {}).get("extras", {}).get("batch", {}).get("events_per_s")
    goals = {"keepalive_rps_ge_1.2x_go": at_least("keepalive", 1.2),
             "keepalive_cpu_per_request_lt_go": None if cpu is None else cpu < 1.0,
             "close_rps_ge_go": at_least("close", 1.0),
             "batch_ge_150k_events_per_s": None if batch is None else batch >= 150_000,
             "tls_keepalive_rps_ge_go": at_least("tls_keepalive", 1.0),
             "tls_close_rps_ge_go": at_least("tls_close", 1.0)}
    return ratios, goals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=12, help="seconds per counted wrk run")
    ap.add_argument("--warmup", type=int, default=4, help="seconds of an uncounted wrk run before each one")
    ap.add_argument("--warmup-posts", type=int, default=200, help="single POSTs after a system starts")
    ap.add_argument("--connections", type=int, default=256,
                    help="wrk connections for single events on keep-alive (each waits for its Kafka ack)")
    ap.add_argument("--close-connections", type=int, default=64, help="wrk connections with Connection: close")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="geo-edge workers")
    ap.add_argument("--batch", type=int, default=100, help="events per batch request")
    ap.add_argument("--batch-connections", type=int, default=0, help="wrk connections for batches "
                    "(default: a quarter of --connections, at least 8)")
    ap.add_argument("--linger-ms", type=int, default=EdgeConfig.linger_ms, help="the edge's producer linger")
    ap.add_argument("--topic-partitions", type=int, default=EdgeConfig.topic_partitions,
                    help="partitions of each benchmark topic")
    ap.add_argument("--peers", default=",".join(peers.PEERS),
                    help=f"comma-separated peers to measure beside geo-edge ({', '.join(peers.PEERS)})")
    ap.add_argument("--skip-peers", action="store_true", help="geo-edge alone")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"subset of {', '.join(SCENARIOS)}")
    ap.add_argument("--build-jobs", type=int, default=None, help="go build -p for the peers' first build")
    ap.add_argument("--skip-perf", action="store_true", help="skip Kafka's ProducerPerformance run")
    ap.add_argument("--skip-profile", action="store_true", help="skip the py-spy profile")
    ap.add_argument("--profile-scenario", choices=("keepalive", "close"), default="keepalive",
                    help="the wrk load under which one worker is profiled")
    ap.add_argument("--skip-ceiling", action="store_true", help="skip the uvicorn ceiling run")
    args = ap.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS) | (set(args.peers.split(",")) - set(peers.PEERS) - {""})
    if unknown:
        ap.error(f"unknown scenario or peer: {', '.join(sorted(unknown))}")
    wanted_peers = [] if args.skip_peers else [p for p in args.peers.split(",") if p]

    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    result: dict[str, Any] = {"workers": args.workers, "cores": os.cpu_count(), "event_bytes": len(EVENT),
                              "duration_s": args.duration, "connections": {"keepalive": args.connections,
                                                                           "close": args.close_connections}}
    systems: dict[str, dict[str, Any]] = {}
    failed = False
    cluster = KafkaCluster(work / "kafka", heap="512m").start()
    try:
        # build (or find cached) peers before any measurement so that a build never competes with one
        builders = {"go": lambda: peers.go_reference(cluster.bootstrap, "bench-go", jobs=args.build_jobs),
                    "benthos": lambda: peers.benthos(cluster.bootstrap, "bench-benthos", args.connections,
                                                     jobs=args.build_jobs)}
        todo = [peers.geo_edge(cluster.bootstrap, "bench-geo-edge", workers=args.workers,
                               max_pending_events=200_000, log_level="warning", linger_ms=args.linger_ms,
                               topic_partitions=args.topic_partitions)]
        for name in wanted_peers:
            try:
                todo.append(builders[name]())
            except Exception as exc:  # noqa: BLE001 - reported in the result, the others still run
                print(f"{name}: cannot build: {exc}", flush=True)
                systems[name] = {"error": f"build: {exc}"}
                failed = True
        for system in todo:
            create_topic(cluster.bootstrap, system.topic, args.topic_partitions)
        tls = peers.make_tls(work / "tls")
        scripts = {"single": lua_post(work / "single.lua", "/post", EVENT, "application/json"),
                   "close": lua_post(work / "close.lua", "/post", EVENT, "application/json", close=True),
                   "batch": lua_post(work / "batch.lua", "/v1/events",
                                     b"\n".join([EVENT] * args.batch) + b"\n", "application/x-ndjson")}
        for system in todo:
            systems[system.name] = {"describe": system.describe, "topic": system.topic, "scenarios": {}}
        for use_tls in (False, True):
            run_phase(todo, use_tls, systems, work, cluster, tls, scripts, args)
        if not args.skip_ceiling:
            ceiling = uvicorn_ceiling(work, scripts["single"], args)
            print(f"uvicorn ceiling (bench/ceiling.py, no Kafka, same wrk script): {ceiling['rps']:.0f} req/s"
                  f"  p50 {ceiling['p50_ms']:.1f} ms  p99 {ceiling['p99_ms']:.1f} ms  app CPU"
                  f" {ceiling['app_cores']:.2f} cores  wrk {ceiling['wrk_cores']:.2f} cores", flush=True)
            result["uvicorn_ceiling_rps"] = round(ceiling["rps"])
            result["uvicorn_ceiling_cores"] = {"app": ceiling["app_cores"], "wrk": ceiling["wrk_cores"]}
        if not args.skip_perf:
            compression = EdgeConfig.compression
            perf = producer_perf(cluster.bootstrap, 1_000_000, len(EVENT), compression)
            print(f"Kafka ProducerPerformance ({len(EVENT)} B, acks=all, {compression}): {perf:.0f} records/s",
                  flush=True)
            result["kafka_producer_perf_records_per_s"] = round(perf)
    finally:
        cluster.stop()
    for info in systems.values():
        failed |= "error" in info
        failed |= any(not m["kafka_matches"] for m in info.get("scenarios", {}).values())
        failed |= not info.get("extras", {}).get("batch", {}).get("kafka_matches", True)
    ratios, goals = compare(systems)
    result.update({"systems": systems, "ratios": ratios, "goals": goals})
    print(orjson.dumps(result).decode())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
