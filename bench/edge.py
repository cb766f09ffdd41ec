"""Edge benchmark: one Kafka cluster, one edge (a uvicorn worker per core), wrk over keep-alive.

    python -m bench.edge [--duration 12] [--connections 256]

Prints single-event requests/s, batched events/s (100-event NDJSON), p50/p99 latency, the load
average before each run, the edge's own CPU time per request/event (a figure that holds up on a
shared, loaded machine better than the rate) and the cores that the edge, Kafka and wrk used, edge
RSS, the uvicorn ceiling (``bench/ceiling.py``: the same wrk script against an app that does
nothing), Kafka's own ProducerPerformance rate for the same record size, and a py-spy profile
summary of one worker. The last line is one JSON object. Not a test: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.procfs import cpu_seconds, rss_mb, tree_pids
from bench.prom import sample_sum, scrape
from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, wait_status
from harness.kafka import KafkaCluster, java_command
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until

EVENT = orjson.dumps({"event": "page_view", "os": "linux", "browser": "firefox", "user_id": "user-12345",
                      "url": "https://shop.example/p/42", "ts": 1700000000000})


def lua_post(path: Path, route: str, body: bytes, ctype: str) -> Path:
    body_lua = body.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    path.write_text(f'wrk.method = "POST"\nwrk.path = "{route}"\nwrk.body = "{body_lua}"\n'
                    f'wrk.headers["Content-Type"] = "{ctype}"\n'
                    'done = function(summary, latency, requests)\n'
                    '  io.write(string.format("P50 %d\\nP99 %d\\nNON2XX %d\\n", latency:percentile(50),'
                    ' latency:percentile(99), summary.errors.status))\nend\n')
    return path


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    """One wrk run: rate, latency percentiles, errors and wrk's own CPU (cores)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = int(re.search(r"^P50 (\d+)", out, re.M).group(1)) / 1000
    p99 = int(re.search(r"^P99 (\d+)", out, re.M).group(1)) / 1000
    non2xx = int(re.search(r"^NON2XX (\d+)", out, re.M).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / duration
    return {"rps": rps, "wrk_cores": round(wrk_cores, 2), "p50_ms": p50, "p99_ms": p99, "non_2xx": non2xx,
            "socket_errors": errors.group(1) if errors else ""}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=12, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=256,
                    help="wrk connections for single events (each waits for its Kafka ack)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=100, help="events per batch request")
    ap.add_argument("--batch-connections", type=int, default=0, help="wrk connections for batches "
                    "(default: a quarter of --connections, at least 8)")
    ap.add_argument("--linger-ms", type=int, default=EdgeConfig.linger_ms, help="the edge's producer linger")
    ap.add_argument("--topic-partitions", type=int, default=EdgeConfig.topic_partitions,
                    help="partitions of the benchmark topic")
    ap.add_argument("--skip-perf", action="store_true", help="skip Kafka's ProducerPerformance run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    cluster = KafkaCluster(work / "kafka", heap="512m").start()
    port = free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=cluster.bootstrap, topic="bench-events", workers=args.workers,
                     max_pending_events=200_000, log_level="warning", linger_ms=args.linger_ms,
                     topic_partitions=args.topic_partitions)
    edge = spawn(edge_argv(cfg), work / "edge.log", env=edge_env())
    base = f"http://127.0.0.1:{port}"
    metrics_url = f"http://127.0.0.1:{cfg.metrics_port}/metrics"
    result: dict[str, object] = {"workers": args.workers, "cores": os.cpu_count(), "event_bytes": len(EVENT)}
    try:
        wait_status(base + "/status", 200, 90)
        for _ in range(200):  # warm up every worker's producer
            httpx.post(base + "/post", content=EVENT)
        single = lua_post(work / "single.lua", "/post", EVENT, "application/json")
        batch_body = b"\n".join([EVENT] * args.batch) + b"\n"
        batch = lua_post(work / "batch.lua", "/v1/events", batch_body, "application/x-ndjson")

        run_wrk(base, single, 4, args.connections)  # warm-up (JIT in Kafka, connections, caches): not counted
        pids = tree_pids(edge.pid)
        load_s = load_average()
        cpu0, kafka0 = cpu_seconds(pids), cpu_seconds([cluster.pid])
        batches0, events0 = produce_totals(metrics_url)
        s = run_wrk(base, single, args.duration, args.connections)
        cpu_s = cpu_seconds(pids) - cpu0
        batches1, events1 = produce_totals(metrics_url)
        per_batch = (events1 - events0) / max(1.0, batches1 - batches0)
        kafka_s = (cpu_seconds([cluster.pid]) - kafka0) / args.duration
        s_cpu_us = cpu_s / max(1.0, s["rps"] * args.duration) * 1e6
        print(f"single /post: {s['rps']:.0f} req/s  p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms"
              f"  non-2xx {s['non_2xx']} {s['socket_errors']}  load1 before {load_s:.2f}"
              f"  edge CPU {s_cpu_us:.0f} us/request ({cpu_s / args.duration:.2f} cores)"
              f"  Kafka {kafka_s:.2f} cores  wrk {s['wrk_cores']:.2f} cores"
              f"  {per_batch:.1f} events per Kafka batch", flush=True)
        rss_single = rss_mb(tree_pids(edge.pid))
        load_b = load_average()
        cpu0, kafka0 = cpu_seconds(pids), cpu_seconds([cluster.pid])
        b = run_wrk(base, batch, args.duration, args.batch_connections or max(8, args.connections // 4))
        cpu_b = cpu_seconds(pids) - cpu0
        kafka_b = (cpu_seconds([cluster.pid]) - kafka0) / args.duration
        b_cpu_us = cpu_b / max(1.0, b["rps"] * args.batch * args.duration) * 1e6
        print(f"batch /v1/events x{args.batch}: {b['rps'] * args.batch:.0f} events/s ({b['rps']:.0f} req/s)"
              f"  p50 {b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms  non-2xx {b['non_2xx']}"
              f"  load1 before {load_b:.2f}  edge CPU {b_cpu_us:.1f} us/event ({cpu_b / args.duration:.2f} cores)"
              f"  Kafka {kafka_b:.2f} cores  wrk {b['wrk_cores']:.2f} cores",
              flush=True)
        rss = max(rss_single, rss_mb(tree_pids(edge.pid)))
        print(f"edge RSS (supervisor + workers): {rss:.0f} MB", flush=True)

        workers = worker_pids(edge.pid)
        top: list[tuple[str, float]] = []
        if workers:
            prof_secs = 6
            loader = subprocess.Popen(["wrk", "-t", "1", "-c", str(args.connections), "-d", f"{prof_secs + 2}s",
                                       "-s", str(single), base], stdout=subprocess.DEVNULL)
            time.sleep(1)  # not a wait: wrk's first second is ramp-up; the profile covers steady load
            try:
                top = profile(workers[0], prof_secs, work / "profile.txt")
            except (subprocess.CalledProcessError, FileNotFoundError) as exc:
                print(f"py-spy failed: {exc}", flush=True)
            loader.wait()
            print(f"py-spy (one worker under /post load, self time; raw stacks in {work / 'profile.txt'}):")
            for frame, share in top:
                print(f"  {share * 100:5.1f}%  {frame}")

        ceiling = uvicorn_ceiling(work, single, args)
        print(f"uvicorn ceiling (bench/ceiling.py, no Kafka, same wrk script): {ceiling['rps']:.0f} req/s"
              f"  p50 {ceiling['p50_ms']:.1f} ms  p99 {ceiling['p99_ms']:.1f} ms  app CPU {ceiling['app_cores']:.2f}"
              f" cores  wrk {ceiling['wrk_cores']:.2f} cores", flush=True)
        perf = 0.0 if args.skip_perf else producer_perf(cluster.bootstrap, 1_000_000, len(EVENT), cfg.compression)
        print(f"Kafka ProducerPerformance ({len(EVENT)} B, acks=all, {cfg.compression}): {perf:.0f} records/s",
              flush=True)
        result.update({
            "single_rps": round(s["rps"]), "single_p50_ms": s["p50_ms"], "single_p99_ms": s["p99_ms"],
            "single_non_2xx": s["non_2xx"], "single_load1_before": load_s,
            "single_edge_cpu_us_per_request": round(s_cpu_us),
            "single_events_per_kafka_batch": round(per_batch, 1), "batch_load1_before": load_b,
            "single_cores": {"edge": round(cpu_s / args.duration, 2), "kafka": round(kafka_s, 2),
                             "wrk": s["wrk_cores"]},
            "batch_cores": {"edge": round(cpu_b / args.duration, 2), "kafka": round(kafka_b, 2),
                            "wrk": b["wrk_cores"]},
            "batch_edge_cpu_us_per_event": round(b_cpu_us, 1),
            "batch_events_per_s": round(b["rps"] * args.batch), "batch_requests_per_s": round(b["rps"]),
            "batch_p50_ms": b["p50_ms"], "batch_p99_ms": b["p99_ms"], "batch_non_2xx": b["non_2xx"],
            "edge_rss_mb": round(rss), "uvicorn_ceiling_rps": round(ceiling["rps"]),
            "uvicorn_ceiling_cores": {"app": ceiling["app_cores"], "wrk": ceiling["wrk_cores"]},
            "kafka_producer_perf_records_per_s": round(perf),
            "profile_top": [[f, round(sh, 3)] for f, sh in top[:8]],
        })
    finally:
        terminate(edge, 30)
        cluster.stop()
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
