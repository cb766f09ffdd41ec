"""Mirror benchmark: geo-mirror (exactly-once and at-least-once) against Apache Kafka's
MirrorMaker 2 (dedicated mode, at least once and exactly once), same machine, same data, one run.

MirrorMaker 2 runs as its users run it: the JVM options and heap of Kafka's own
``bin/connect-mirror-maker.sh`` (G1, -Xms256M -Xmx2G), not the harness's C1-only broker options;
exactly once as Kafka's documentation says (``central.exactly.once.source.support = enabled``,
``dedicated.mode.enable.internal.rest = true``, ``read_committed`` source consumers).

Throughput: a source topic preloaded with N records (Kafka's ProducerPerformance), the mirror
started, the rate measured from the first copied record to the last (startup excluded).
Latency: while the mirror runs, ProducerPerformance writes 10,000 records/s for 2 + 30 s
(`--warmup-seconds`, `--seconds`) and a ``read_committed`` consumer of the central topic records
now - source timestamp. The percentiles are those of the records written after the warm-up (the
steady state at 10,000/s); ``p99_ms_with_warmup`` counts every record. The warm-up is left out
because the load generator starts with a burst: its JVM creates ~2,000 records in its first 40 ms
and sends them late (35-63 ms in the baseline, no mirror at all), 0.7 % of a 30-s run, and which
mirror's round that burst happens to meet decided the whole-run p99 (54-148 ms for the same code).

    python -m bench.mirror [--records-100 300000] [--records-1k 100000] [--kinds geo-mirror-eos,mm2-eos]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from subprocess import Popen

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from harness.kafka import KAFKA_SCRIPT_JVM_OPTS, KafkaCluster, java_command
from bench.procfs import cpu_seconds, tree_pids
from bench.stats import nearest_rank
from bench.topic_offsets import ensure_topic, reader_at_end
from harness.tcp_proxy import TcpProxyGroup
from harness.wan import Link
from service_kit.link_shape import LinkShape
from service_kit.regions import load_regions
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until_async

PARTITIONS = 6
KINDS = ("geo-mirror-eos", "geo-mirror-alo", "mm2-alo", "mm2-eos")
#: bin/connect-mirror-maker.sh's KAFKA_HEAP_OPTS
MM2_HEAP = ("256m", "2g")
LOG4J = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
"""


def producer_perf(bootstrap: str, topic: str, records: int, size: int, rate: int = -1) -> list[str]:
    return java_command("org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                        "--num-records", str(records), "--record-size", str(size),
                        "--throughput", str(rate), "--producer-props",
                        f"bootstrap.servers={bootstrap}", "acks=1", "linger.ms=5",
                        "batch.size=262144", "compression.type=lz4", heap="256m")


async def end_offsets_sum(consumer: AIOKafkaConsumer, topic: str) -> int:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        return sum((await consumer.end_offsets(tps)).values())
    except Exception:  # noqa: BLE001 - topic not there yet
        return 0


def metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and 'topic="heartbeats"' not in line)


class Mirror:
    """One mirror under test: ours (a geo-mirror process) or MirrorMaker 2."""

    def __init__(self, kind: str, source: KafkaCluster, central: KafkaCluster, topic: str,
                 workdir: Path) -> None:
        self.kind, self.source, self.central, self.topic = kind, source, central, topic
        #: where the mirror reaches the source cluster: its own listener, or across a WAN proxy
        self.source_bootstrap = source.bootstrap
        self.workdir = workdir
        self.port = free_port()
        self.proc: Popen[bytes] | None = None
        #: more geo-mirror flags (a setting under study, e.g. --transaction-interval-ms 100)
        self.extra_args: list[str] = []

    @property
    def target(self) -> str:
        return f"eu.{self.topic}"

    def start(self) -> None:
        tag = uuid.uuid4().hex[:6]
        if self.kind.startswith("mm2"):
            argv = self._mm2_command(tag)
        else:
            argv = [str(Path(sys.executable).with_name("geo-mirror")),
                    "--central", self.central.bootstrap, "--region", f"eu={self.source_bootstrap}",
                    "--include", self.topic, "--no-heartbeats", "--admin-port", str(self.port),
                    "--source-group", f"bench-{tag}", "--positions-group", f"bench-pos-{tag}",
                    "--transactional-id-prefix", f"bench-{tag}", "--log-level", "warning"]
            if self.kind == "geo-mirror-alo":
                argv.append("--at-least-once")
            argv += self.extra_args
        self.proc = spawn(argv, self.workdir / f"{self.kind}-{tag}.log")

    def _mm2_command(self, tag: str) -> list[str]:
        rf = 1
        props = self.workdir / f"mm2-{tag}.properties"
        lines = [
            "clusters = eu, central",
            f"eu.bootstrap.servers = {self.source_bootstrap}",
            f"central.bootstrap.servers = {self.central.bootstrap}",
            "eu->central.enabled = true", f"eu->central.topics = {self.topic}",
            "central->eu.enabled = false", "tasks.max = 2",
            f"replication.factor = {rf}", "refresh.topics.interval.seconds = 5",
            *(f"{k}.replication.factor = {rf}" for k in (
                "checkpoints.topic", "heartbeats.topic", "offset-syncs.topic",
                "offset.storage", "status.storage", "config.storage")),
            "sync.topic.acls.enabled = false", "sync.group.offsets.enabled = false",
            "emit.checkpoints.enabled = false",
        ]
        if self.kind == "mm2-eos":
            lines += ["central.exactly.once.source.support = enabled",
                      "dedicated.mode.enable.internal.rest = true",
                      f"listeners = http://127.0.0.1:{self.port}",
                      "eu.consumer.isolation.level = read_committed"]
        props.write_text("\n".join(lines) + "\n")
        log4j = self.workdir / f"mm2-{tag}-log4j2.properties"
        log4j.write_text(LOG4J.format(log=self.workdir / f"mm2-{tag}.log"))
        return java_command("org.apache.kafka.connect.mirror.MirrorMaker", str(props), heap=MM2_HEAP,
                            log_config=log4j, jvm_opts=KAFKA_SCRIPT_JVM_OPTS)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)
            self.proc = None

    async def copied(self, consumer: AIOKafkaConsumer) -> int:
        """Records copied so far. Ours: the committed-records metric. MirrorMaker 2: the target's
        last stable offsets (exactly once: transaction markers take offsets too, so the
        throughput run waits for them to stop moving and times the last change)."""
        if self.kind.startswith("mm2"):
            return await end_offsets_sum(consumer, self.target)
        return int(await asyncio.to_thread(metric, self.port, "geo_mirror_records_total"))

    def metric_values(self) -> dict[str, float]:
        """geo-mirror's metrics now (MirrorMaker 2: none)."""
        if self.kind.startswith("mm2"):
            return {}
        return metric_values(httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text)


def metric_values(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def round_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """geo-mirror's own account of its rounds between two snapshots: mean collect and commit
    time, records per round, (per-partition) transactions committed."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}

    def total(prefix: str, label: str = "") -> float:
        return sum(v for k, v in delta.items() if k.startswith(prefix) and label in k)

    out: dict[str, float] = {}
    for phase in ("collect", "commit"):
        count = total("geo_mirror_round_seconds_count", f'phase="{phase}"')
        if count:
            out[f"{phase}_ms_mean"] = round(1000 * total("geo_mirror_round_seconds_sum", f'phase="{phase}"') / count, 1)
    rounds = total("geo_mirror_round_records_count")
    if rounds:
        out["rounds"] = rounds
        out["records_per_round"] = round(total("geo_mirror_round_records_sum") / rounds, 1)
    out["transactions"] = total("geo_mirror_transactions_total", 'outcome="committed"')
    commit_p99 = bucket_quantile(delta, "geo_mirror_round_seconds_bucket", 0.99, 'phase="commit"')
    if commit_p99 is not None:
        out["commit_p99_ms"] = round(commit_p99 * 1000, 1)
    # the mirror's own view: source timestamp -> committed centrally (before any central reader)
    own_p99 = bucket_quantile(delta, "geo_mirror_replication_latency_seconds_bucket", 0.99)
    if own_p99 is not None:
        out["replicated_p99_ms"] = round(own_p99 * 1000, 1)
    return out


def bucket_quantile(delta: dict[str, float], prefix: str, q: float, label: str = "") -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q`` (summed over label sets)."""
    buckets: dict[float, float] = {}
    for key, value in delta.items():
        if key.startswith(prefix) and label in key and 'le="' in key:
            le = key.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
    if not buckets or not buckets.get(float("inf")):
        return None
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return None


async def measure_throughput(mirror: Mirror, records: int, size: int, timeout: float) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=mirror.central.bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        mirror.start()
        first_at: float | None = None
        first_count = 0
        done = 0
        last_change = (0.0, 0)

        async def all_copied() -> bool:
            nonlocal first_at, first_count, done, last_change
            done = await mirror.copied(consumer)
            now = time.monotonic()
            if first_at is None and done > 0:
                first_at, first_count = now, done
            if done != last_change[1]:
                last_change = (now, done)
            return done >= records

        try:
            await wait_until_async(all_copied, timeout, interval=0.05, what=f"{records} records copied")
            if mirror.kind == "mm2-eos":
                # Transaction markers occupy offsets: the last record is in when they stop moving.
                async def settled() -> bool:
                    await all_copied()
                    return time.monotonic() - last_change[0] >= 2.0

                await wait_until_async(settled, 60, interval=0.05, what="target offsets settled")
        except TimeoutError:
            return {"error": f"timed out with {done}/{records}"}
        finished = last_change[0] if mirror.kind == "mm2-eos" else time.monotonic()
        elapsed = max(1e-3, finished - (first_at or finished))
        rate = (records - min(first_count, records)) / elapsed
        return {"records_per_s": round(rate), "mb_per_s": round(rate * size / 1e6, 2),
                "seconds": round(elapsed, 2)}
    finally:
        await consumer.stop()


async def measure_latency(mirror: Mirror, rate: int, seconds: int, workdir: Path,
                          direct: bool = False, warmup: float = 2.0) -> dict:
    """Write ``rate`` records/s for ``warmup`` + ``seconds`` into the (running) mirror's source
    topic and read the target; ``direct`` reads the source topic itself (the measuring setup's
    baseline). Percentiles of the records written after the warm-up, and the p99 of all."""
    total = int(rate * (seconds + warmup))
    target = mirror.topic if direct else mirror.target
    consumer = await reader_at_end((mirror.source if direct else mirror.central).bootstrap, target,
                                   PARTITIONS)
    received: list[tuple[int, float]] = []   # (source timestamp, latency ms) of every record
    producer = spawn(producer_perf(mirror.source.bootstrap, mirror.topic, total, 100, rate),
                     workdir / "latency-producer.log")
    try:
        deadline = time.monotonic() + seconds + 60
        while len(received) < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10000)
            now_ms = time.time() * 1000
            for recs in batches.values():
                received.extend((r.timestamp, now_ms - r.timestamp) for r in recs)
    finally:
        terminate(producer, 10)
        await consumer.stop()
    if not received:
        return {"error": "no records"}
    steady_from = min(ts for ts, _ in received) + warmup * 1000
    steady = sorted(latency for ts, latency in received if ts >= steady_from)
    every = sorted(latency for _, latency in received)
    if not steady:
        return {"error": "no records after the warm-up"}

    def pick(values: list[float], q: float) -> float:
        return round(nearest_rank(values, q), 1)

    return {"rate": rate, "received": len(received), "warmup_s": warmup, "measured": len(steady),
            "p50_ms": pick(steady, 0.50), "p99_ms": pick(steady, 0.99), "max_ms": round(steady[-1], 1),
            "p99_ms_with_warmup": pick(every, 0.99), "max_ms_with_warmup": round(every[-1], 1)}


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown --kinds {sorted(unknown)}; choose from {','.join(KINDS)}")
    shape = wan_shape(args.wan)
    if shape is not None and args.wan_mbit is not None:
        shape = dataclasses.replace(shape, bandwidth_mbit=args.wan_mbit)
    wan_port = free_port()
    # The mirrors run beside the central cluster (as both projects recommend) and read the
    # source across the link: the source advertises a second listener at the proxy's address.
    proxy = TcpProxyGroup.to_ports([wan_port], Link(shape)) if shape else None
    source_kwargs = {"wan_port": wan_port, "wan_advertised": proxy.address} if proxy else {}
    source = KafkaCluster(workdir / "eu", **source_kwargs)
    central = KafkaCluster(workdir / "central")
    for cluster in (source, central):
        cluster.start(wait=False)
    for cluster in (source, central):
        await asyncio.to_thread(cluster.wait_ready)
    if proxy:
        proxy.start()
    results: dict = {"machine_cpus": __import__("os").cpu_count(), "partitions": PARTITIONS,
                     "mm2_jvm": {"heap": "-Xms256M -Xmx2G", "opts": " ".join(KAFKA_SCRIPT_JVM_OPTS)},
                     "geo_mirror_args": args.geo_mirror_args,
                     "wan": None if shape is None else {"region": args.wan, **dataclasses.asdict(shape)}}
    try:
        sizes = {100: args.records_100, 1024: args.records_1k}
        await ensure_topic(source.bootstrap, "baseline", PARTITIONS)
        results["baseline_latency_at_10k_no_mirror"] = await measure_latency(
            Mirror("none", source, central, "baseline", workdir), args.rate, args.seconds,
            workdir, direct=True, warmup=args.warmup_seconds)
        print(f"baseline: {results['baseline_latency_at_10k_no_mirror']}", flush=True)
        for kind in kinds:
            for size, records in sizes.items():
                topic = f"b{size}-{kind}"
                await ensure_topic(source.bootstrap, topic, PARTITIONS)
                subprocess.run(producer_perf(source.bootstrap, topic, records, size), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for kind in kinds:
            for size, records in sizes.items():
                mirror = Mirror(kind, source, central, f"b{size}-{kind}", workdir)
                mirror.extra_args = args.geo_mirror_args.split()
                if proxy:
                    mirror.source_bootstrap = proxy.address
                try:
                    figures = await measure_throughput(mirror, records, size, args.timeout)
                    if size == 100 and kind != "geo-mirror-alo" and "error" not in figures:
                        figures["latency_at_10k"] = await measure_latency_and_cost(
                            mirror, args.rate, args.seconds, workdir, args.warmup_seconds)
                finally:
                    mirror.stop()
                results[f"{kind}_{size}B"] = figures
                print(f"{kind} {size}B: {json.dumps(figures)}", flush=True)
    finally:
        if proxy:
            proxy.stop()
        for cluster in (source, central):
            await asyncio.to_thread(cluster.stop)
    results.update(ratios(results, shape))
    return results


def wan_shape(name: str) -> LinkShape | None:
    """``off``: loopback; otherwise an edge region of the regions file, whose ``wan:`` link the
    mirrors read the source across."""
    if name == "off":
        return None
    regions = load_regions()
    try:
        region = regions[name]
    except KeyError:
        raise SystemExit(f"--wan {name}: not a region of the regions file (or off)") from None
    if region.wan is None:
        raise SystemExit(f"--wan {name}: the regions file gives that region no wan: link")
    return region.wan


async def measure_latency_and_cost(mirror: Mirror, rate: int, seconds: int, workdir: Path,
                                   warmup: float) -> dict:
    """``measure_latency`` with what it cost: cores of the mirror and of the central broker (its
    share: transaction state, markers, offset commits), and geo-mirror's own round figures."""
    before = await asyncio.to_thread(mirror.metric_values)
    mirror_pids = tree_pids(mirror.proc.pid) if mirror.proc else []
    central_pids = mirror.central.pids
    cpu_before = (cpu_seconds(central_pids), cpu_seconds(mirror_pids), time.monotonic())
    figures = await measure_latency(mirror, rate, seconds, workdir, warmup=warmup)
    wall = time.monotonic() - cpu_before[2]
    figures["cores"] = {"central_broker": round((cpu_seconds(central_pids) - cpu_before[0]) / wall, 2),
                        "mirror": round((cpu_seconds(mirror_pids) - cpu_before[1]) / wall, 2)}
    if before:
        figures["rounds"] = round_summary(before, await asyncio.to_thread(mirror.metric_values))
    return figures


def ratios(results: dict, shape: LinkShape | None = None) -> dict:
    """geo-mirror exactly once against each MirrorMaker 2 mode, and the goals: on loopback 1.5x
    MirrorMaker 2's exactly-once throughput, p99 at 10k/s <= 400 ms and <= MirrorMaker 2's exactly
    once; across a WAN link 2x its throughput and p99 <= the round trip + 400 ms."""
    out: dict = {}
    for mm2 in ("mm2-eos", "mm2-alo"):
        for size, label in ((100, "100B"), (1024, "1KiB")):
            ours = results.get(f"geo-mirror-eos_{size}B", {}).get("records_per_s")
            theirs = results.get(f"{mm2}_{size}B", {}).get("records_per_s")
            if ours and theirs:
                out[f"eos_vs_{mm2}_throughput_{label}"] = round(ours / theirs, 2)
    p99 = results.get("geo-mirror-eos_100B", {}).get("latency_at_10k", {}).get("p99_ms")
    mm2_p99 = results.get("mm2-eos_100B", {}).get("latency_at_10k", {}).get("p99_ms")
    goals = {}
    factor, budget = (2.0, shape.rtt_ms + 400) if shape else (1.5, 400)
    tag = "wan" if shape else "loopback"
    if "eos_vs_mm2-eos_throughput_100B" in out and "eos_vs_mm2-eos_throughput_1KiB" in out:
        goals[f"{tag}_throughput_{factor}x_mm2_eos"] = min(out["eos_vs_mm2-eos_throughput_100B"],
                                                           out["eos_vs_mm2-eos_throughput_1KiB"]) >= factor
    if p99 is not None:
        goals[f"{tag}_p99_at_10k_le_{budget:.0f}ms"] = p99 <= budget
        if mm2_p99 is not None and not shape:
            goals["loopback_p99_at_10k_le_mm2_eos"] = p99 <= mm2_p99
    out["goals"] = goals
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-100", type=int, default=300_000)
    parser.add_argument("--records-1k", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=10_000, help="latency phase records/s")
    parser.add_argument("--seconds", type=int, default=30, help="latency phase duration after the warm-up (longer: a p99 less at the mercy of one pause)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0,
                        help="latency phase records written in the first seconds are left out of the "
                             "percentiles (the load generator's start-up burst); p99_ms_with_warmup counts them")
    parser.add_argument("--timeout", type=float, default=180.0, help="per throughput run")
    parser.add_argument("--geo-mirror-args", default="",
                        help="more geo-mirror flags, e.g. '--transaction-interval-ms 100'")
    parser.add_argument("--wan", default="off",
                        help="off (loopback), or an edge region of regions.yaml (e.g. us: 150 ms, "
                             "100 Mbit/s): the mirrors read the source across that region's link")
    parser.add_argument("--wan-mbit", type=float, default=None,
                        help="with --wan: another bandwidth cap for the link (Mbit/s each way; 0: none), "
                             "e.g. 1000 to see which mirror the link does not bound")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"mirrors to measure, comma-separated (of {','.join(KINDS)})")
    results = asyncio.run(run(parser.parse_args()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
