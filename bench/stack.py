"""``make bench-stack``: the whole local geo stack under load, then a soak.

0. A warm-up (``--warmup-seconds`` at a fifth of ``--rate``, not reported): JIT compilers,
   connections, topics and consumer groups settle.
1. Sustained: ``--rate`` events/s offered through the router for ``--sustained-seconds``; the
   stack keeps up when the acknowledged rate matches the offer, the mirror lag stays bounded,
   the central table grows at the offered rate over the second half of the run
   (``central_rows_per_s_second_half``) and its backlog (acknowledged events not yet in the
   table) does not grow from half-time to the end. First, so that it runs on a table that earlier floods
   have not filled with merges to do.
2. Throughput through the geo router and, for comparison, straight to the edges: simulated
   clients send batches as fast as the stack acknowledges them for ``--seconds``; figures: events/s
   acknowledged end to end (acknowledged events over the time from the first send until the
   loader had inserted as many rows: ``catch_up_s`` after the sending stopped; then the exact
   audit, every acknowledged id once, which takes ``audit_s`` itself on a big table),
   client p50/p99, end-to-end p99 (edge receive -> central table), peak mirror lag, and the cores
   each component used while the clients sent.
3. A soak at ``--soak-rate`` for ``--soak-seconds`` (default 600): every process's RSS at the start
   and at the end (growth would mean a leak), and again nothing lost.

Prints progress, then one JSON object as the last line, with ``host_us_per_record_start`` and
``_end``: the host's speed before and after (``bench.calibrate``; this machine's varies by ~1.5x
over an hour, and the latency figures with it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import uvloop

from bench.calibrate import host_us_per_record
from bench.procfs import cpu_seconds, rss_mb, thread_cpu_seconds, tree_pids
from bench.prom import sample_sum, scrape
from geostack.audit import wait_for_central
from harness import tcp_proxy
from geostack.clients import LoadReport, run_clients
from geostack.stack import LocalStack
from service_kit.wait import wait_until
from service_kit.logs import configure_logging

COUNTRIES = ["DE", "FR", "RU", "US", "BR", "JP"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="each throughput run")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--clients-per-country", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10_500.0,
                        help="events/s offered through the router in the sustained run: 5%% above the "
                             "10,000 target, as the clients' pacing and the final catch-up keep the "
                             "end-to-end figure a little under what is offered")
    parser.add_argument("--runs", default="sustained,router,direct",
                        help="which throughput runs, in order (comma list of sustained, router, direct)")
    parser.add_argument("--sustained-seconds", type=float, default=120.0,
                        help="the run at --rate (long enough for the central table's merges to matter)")
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--brokers", type=int, default=1,
                        help="Kafka brokers per cluster (3: replication factor 3, min.insync.replicas 2)")
    parser.add_argument("--wan", choices=("regions", "off"), default=os.environ.get("GEOINGEST_WAN") or "regions",
                        help="region -> centre links: regions.yaml's wan: figures (emulated by the proxies, "
                             "thread wan-proxy) or off (loopback figures); env GEOINGEST_WAN")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    parser.add_argument("--soak-rate", type=float, default=6_000.0,
                        help="events/s during the soak (below what the stack sustains end to end)")
    args = parser.parse_args(argv)
    runs = [m.strip() for m in args.runs.split(",") if m.strip()]
    if not set(runs) <= {"sustained", "router", "direct"}:
        parser.error(f"--runs: unknown run in {args.runs!r}")
    configure_logging("warning", service="bench-stack")
    workdir = Path(tempfile.mkdtemp(prefix="geo-bench-stack-"))
    result: dict[str, object] = {"load_average_start": os.getloadavg()[0], "cores": os.cpu_count(),
                                 "host_us_per_record_start": host_us_per_record(),
                                 "brokers_per_cluster": args.brokers}
    with LocalStack(workdir, brokers=args.brokers, wan_links=args.wan) as stack:
        result["wan"] = stack.link_shapes()  # region -> the link shape in force (null: loopback)
        say(f"stack up in {workdir}, WAN links {result['wan']}")
        if args.warmup_seconds > 0:
            warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup_seconds, "rate": args.rate / 5})
            say(f"warm-up: {throughput_run(stack, 'sustained', warm)['events_per_s_acknowledged']} events/s")
        for mode in runs:
            run_args = argparse.Namespace(**{**vars(args), "seconds": args.sustained_seconds}) \
                if mode == "sustained" else args
            result[mode] = throughput_run(stack, mode, run_args)
            say(f"{mode}: {result[mode]}")
        if args.soak_seconds > 0:
            result["soak"] = soak(stack, args)
            say(f"soak: {result['soak']}")
    result["load_average_end"] = os.getloadavg()[0]
    result["host_us_per_record_end"] = host_us_per_record()  # after the stack stopped (bench.calibrate)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


def throughput_run(stack: LocalStack, mode: str, args: argparse.Namespace) -> dict[str, object]:
    lag = LagSampler(stack).start()
    started = time.time()
    cpu_before = cpu_by_component(stack)
    loader_before = loader_figures(stack)
    mirror_before = mirror_figures(stack)
    report = LoadReport(run_id=f"{mode}-{int(started)}")
    halfway: dict[str, float] = {}
    timer = threading.Timer(args.seconds / 2, lambda: halfway.update(
        loader_figures(stack), acked=len(report.acked)))
    timer.start()
    if mode in ("router", "sustained"):
        rate = args.rate if mode == "sustained" else 1e9
        uvloop.run(run_clients(stack.router_url, COUNTRIES, duration=args.seconds, rate=rate, batch=args.batch,
                                clients_per_country=args.clients_per_country, report=report,
                                ssl_context=stack.client_ssl()))
    else:
        async def all_edges() -> None:
            await asyncio.gather(*(run_clients(f"https://127.0.0.1:{e.port}", COUNTRIES[:1],
                                               duration=args.seconds, rate=1e9, batch=args.batch,
                                               clients_per_country=args.clients_per_country, report=report,
                                               ssl_context=stack.client_ssl())
                                   for e in stack.edges))
        uvloop.run(all_edges())
        report.finished = time.monotonic()
    sending = time.time() - started
    cpu_after = cpu_by_component(stack)
    lag_at_end = lag.current
    timer.cancel()
    at_stop = loader_figures(stack)
    mirror_at_stop = mirror_figures(stack)
    transactions = mirror_at_stop["transactions"] - mirror_before["transactions"]
    mirror = {"transactions_per_s": round(transactions / sending, 1),
              "records_per_transaction": round((mirror_at_stop["records"] - mirror_before["records"])
                                               / transactions, 1) if transactions else None}
    # rows the table gained per second over the second half of the sending (the steady state)
    central_rate = (round((at_stop["event_rows"] - halfway["event_rows"]) / (at_stop["at"] - halfway["at"]))
                    if halfway else None)
    central_backlog = len(report.acked) - round(at_stop["event_rows"] - loader_before["event_rows"])
    backlog_halfway = (round(halfway["acked"] - (halfway["event_rows"] - loader_before["event_rows"]))
                       if halfway else None)
    caught_up = wait_for_rows(stack, loader_before["event_rows"] + len(report.acked), timeout=300)
    end_to_end_s = caught_up - started
    audit = wait_for_central(stack.central_url, report, timeout=300)
    lag.stop()
    loader_after = loader_figures(stack)
    batches = loader_after["batches"] - loader_before["batches"]
    loader = {"batches": batches,
              "mean_batch_records": round((loader_after["records"] - loader_before["records"]) / batches)
              if batches else None,
              **{f"mean_batch_{part}_s": round((loader_after[key] - loader_before[key]) / batches, 3)
                 if batches else None
                 for part, key in (("insert_commit", "seconds"), ("insert", "insert_seconds"),
                                   ("commit", "commit_seconds"))}}
    e2e = e2e_latency(stack, started)
    client = report.summary()
    cores = {name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / sending, 2) for name in cpu_after}
    return {"events_per_s_acknowledged": client["events_per_s"],
            "events_per_s_end_to_end": round(len(report.acked) / end_to_end_s, 1),
            "acknowledged": len(report.acked), "lost": audit.missing, "duplicates": audit.duplicates,
            "client_request_p50_ms": client["request_p50_ms"], "client_request_p99_ms": client["request_p99_ms"],
            "client_errors_retried": client["client_errors_retried"], "end_to_end_p99_ms": e2e,
            "central_rows_per_s_second_half": central_rate,
            "central_backlog_halfway": backlog_halfway, "central_backlog_when_sending_stopped": central_backlog,
            "mirror_lag_peak_records": lag.peak, "mirror_lag_when_sending_stopped": lag_at_end,
            "catch_up_s": round(end_to_end_s - sending, 1),
            "audit_s": round(audit.seconds_to_complete, 1),
            "cores_used_while_sending": cores, "loader": loader, "mirror": mirror}


def soak(stack: LocalStack, args: argparse.Namespace) -> dict[str, object]:
    before = rss_by_component(stack)
    report = LoadReport(run_id=f"soak-{int(time.time())}")
    thread = threading.Thread(target=lambda: uvloop.run(run_clients(
        stack.router_url, COUNTRIES, duration=args.soak_seconds, rate=args.soak_rate, batch=args.batch,
        report=report, ssl_context=stack.client_ssl())), daemon=True)
    thread.start()
    thread.join()
    after = rss_by_component(stack)
    audit = wait_for_central(stack.central_url, report, timeout=300)
    return {"seconds": args.soak_seconds, "acknowledged": len(report.acked), "lost": audit.missing,
            "duplicates": audit.duplicates,
            "rss_mb": {name: {"start": before[name], "end": after.get(name)} for name in before}}


def component_pids(stack: LocalStack) -> dict[str, int]:
    """The root process of every component of the stack, by name."""
    pids: dict[str, int | None] = {
        f"kafka-{n}" if len(c.nodes) == 1 else f"kafka-{n}-{node.node_id}": node.pid
        for n, c in stack.kafka.items() for node in c.nodes}
    pids |= {f"consul-{n}": a.pid for n, a in stack.consul.items()}
    pids |= {f"edge-{e.node_id}": e.process.pid for e in stack.edges}
    for name in ("mirror", "central", "router"):
        proc = getattr(stack, name)
        pids[name] = proc.pid if proc is not None else None
    return {name: pid for name, pid in pids.items() if pid}


def rss_by_component(stack: LocalStack) -> dict[str, float]:
    """Resident memory (MB, process tree summed) of every process of the stack."""
    return {name: round(rss_mb(tree_pids(pid)), 1) for name, pid in component_pids(stack).items()}


def cpu_by_component(stack: LocalStack) -> dict[str, float]:
    """CPU seconds used so far (process tree summed) by every component; this process is split
    into the WAN proxies that the stack runs in it (``wan-proxy``) and the rest (``clients``:
    the simulated clients and the benchmark itself)."""
    out = {name: cpu_seconds(tree_pids(pid)) for name, pid in component_pids(stack).items()}
    out["wan-proxy"] = thread_cpu_seconds(os.getpid(), tcp_proxy.THREAD_NAME)
    out["clients"] = cpu_seconds([os.getpid()]) - out["wan-proxy"]
    return out


def loader_figures(stack: LocalStack) -> dict[str, float]:
    """geo-central's loader totals so far: batches, records, seconds spent inserting + committing."""
    samples = scrape(f"{stack.central_url}/metrics", 10)
    return {"batches": sample_sum(samples, "geo_central_batch_seconds_count"),
            "seconds": sample_sum(samples, "geo_central_batch_seconds_sum"),
            "insert_seconds": sample_sum(samples, "geo_central_insert_seconds_sum"),
            "commit_seconds": sample_sum(samples, "geo_central_commit_seconds_sum"),
            "records": sample_sum(samples, "geo_central_batch_records_sum"),
            "event_rows": sample_sum(samples, "geo_central_rows_loaded_total", table="events"),
            "at": time.monotonic()}


def wait_for_rows(stack: LocalStack, rows: float, timeout: float) -> float:
    """When (``time.time()``) the loader's inserted event rows reached ``rows`` (the run's
    acknowledged events on top of what was there): a cheap poll of its metrics. Rows inserted
    twice (a replayed batch, a client's retry after a lost answer) count too, so with any of
    those this is a little early; the exact audit (every id, once) follows, and on a table of
    millions of rows it takes seconds itself."""
    try:
        wait_until(lambda: loader_figures(stack)["event_rows"] >= rows, timeout, interval=0.2,
                   what=f"{rows:.0f} event rows inserted")
    except TimeoutError:
        pass  # as before: the time it gave up; the audit that follows reports what is missing
    return time.time()


def mirror_figures(stack: LocalStack) -> dict[str, float]:
    """geo-mirror's totals so far: records copied and central transactions committed."""
    samples = scrape(f"http://127.0.0.1:{stack.mirror_admin_port}/metrics", 10)
    return {"records": sample_sum(samples, "geo_mirror_records_total"),
            "transactions": sample_sum(samples, "geo_mirror_transactions_total", outcome="committed")}


def e2e_latency(stack: LocalStack, since: float) -> dict[str, float] | None:
    doc = httpx.get(f"{stack.central_url}/api/latency", params={"from": int(since * 1000)}, timeout=30).json()
    rows = doc.get("rows", [])
    return {**{r["region"]: r["p99_ms"] for r in rows},
            **{f"{r['region']}_legs_p99": {"to_mirrored": r["mirror_p99_ms"], "mirrored_to_loaded": r["load_p99_ms"]}
               for r in rows}} if rows else None


class LagSampler:
    """Samples the mirror's total records behind twice a second; keeps the peak."""

    def __init__(self, stack: LocalStack) -> None:
        self.url = f"http://127.0.0.1:{stack.mirror_admin_port}/metrics"
        self.peak = 0.0
        self.current = 0.0
        self._stop = threading.Event()

    def start(self) -> "LagSampler":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                lag = sample_sum(scrape(self.url, 2), "geo_mirror_records_behind")
            except httpx.HTTPError:
                continue
            self.current = lag
            self.peak = max(self.peak, lag)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
