"""Mirror benchmark: geo-mirror (exactly-once and at-least-once) against Apache Kafka's
MirrorMaker 2 (dedicated mode), same machine, same data, in one run.

Throughput: a source topic preloaded with N records (Kafka's ProducerPerformance), the mirror
started, the rate measured from the first copied record to the last (startup excluded).
Latency: while the mirror runs, ProducerPerformance writes 10,000 records/s for 10 s and a
``read_committed`` consumer of the central topic records now - source timestamp.

    python -m bench.mirror [--records-100 300000] [--records-1k 100000]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
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
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from harness.kafka import KafkaCluster, java_command, start_clusters
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until_async

PARTITIONS = 6
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


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


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
        self.workdir = workdir
        self.port = free_port()
        self.proc: Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"eu.{self.topic}"

    def start(self) -> None:
        tag = uuid.uuid4().hex[:6]
        if self.kind == "mm2":
            props = self.workdir / f"mm2-{tag}.properties"
            rf = 1
            props.write_text("\n".join([
                "clusters = eu, central",
                f"eu.bootstrap.servers = {self.source.bootstrap}",
                f"central.bootstrap.servers = {self.central.bootstrap}",
                "eu->central.enabled = true", f"eu->central.topics = {self.topic}",
                "central->eu.enabled = false", "tasks.max = 2",
                f"replication.factor = {rf}", "refresh.topics.interval.seconds = 5",
                *(f"{k}.replication.factor = {rf}" for k in (
                    "checkpoints.topic", "heartbeats.topic", "offset-syncs.topic",
                    "offset.storage", "status.storage", "config.storage")),
                "sync.topic.acls.enabled = false", "sync.group.offsets.enabled = false",
                "emit.checkpoints.enabled = false",
            ]) + "\n")
            log4j = self.workdir / f"mm2-{tag}-log4j2.properties"
            log4j.write_text(LOG4J.format(log=self.workdir / f"mm2-{tag}.log"))
            argv = java_command("org.apache.kafka.connect.mirror.MirrorMaker", str(props),
                                heap="512m", log_config=log4j)
        else:
            argv = [str(Path(sys.executable).with_name("geo-mirror")),
                    "--central", self.central.bootstrap, "--region", f"eu={self.source.bootstrap}",
                    "--include", self.topic, "--no-heartbeats", "--admin-port", str(self.port),
                    "--source-group", f"bench-{tag}", "--positions-group", f"bench-pos-{tag}",
                    "--transactional-id-prefix", f"bench-{tag}", "--log-level", "warning"]
            if self.kind == "geo-mirror-alo":
                argv.append("--at-least-once")
        self.proc = spawn(argv, self.workdir / f"{self.kind}-{tag}.log")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)
            self.proc = None

    async def copied(self, consumer: AIOKafkaConsumer) -> int:
        """Records copied so far (ours: committed-records metric; MM2: target end offsets)."""
        if self.kind == "mm2":
            return await end_offsets_sum(consumer, self.target)
        return int(await asyncio.to_thread(metric, self.port, "geo_mirror_records_total"))


async def measure_throughput(mirror: Mirror, records: int, size: int, timeout: float) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=mirror.central.bootstrap)
    await consumer.start()
    try:
        mirror.start()
        first_at: float | None = None
        first_count = 0
        done = 0

        async def all_copied() -> bool:
            nonlocal first_at, first_count, done
            done = await mirror.copied(consumer)
            now = time.monotonic()
            if first_at is None and done > 0:
                first_at, first_count = now, done
            return done >= records

        try:
            await wait_until_async(all_copied, timeout, interval=0.05, what=f"{records} records copied")
        except TimeoutError:
            return {"error": f"timed out with {done}/{records}"}
        elapsed = max(1e-3, time.monotonic() - (first_at or time.monotonic()))
        rate = (records - first_count) / elapsed
        return {"records_per_s": round(rate), "mb_per_s": round(rate * size / 1e6, 2),
                "seconds": round(elapsed, 2)}
    finally:
        await consumer.stop()


async def measure_latency(mirror: Mirror, rate: int, seconds: int, workdir: Path,
                          direct: bool = False) -> dict:
    """Write ``rate`` records/s for ``seconds`` into the (running) mirror's source topic and
    read the target; ``direct`` reads the source topic itself (the measuring setup's baseline)."""
    total = rate * seconds
    target = mirror.topic if direct else mirror.target
    consumer = AIOKafkaConsumer(bootstrap_servers=(mirror.source if direct else mirror.central).bootstrap,
                                isolation_level="read_committed", auto_offset_reset="latest",
                                enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(target, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    latencies: list[float] = []
    producer = spawn(producer_perf(mirror.source.bootstrap, mirror.topic, total, 100, rate),
                     workdir / "latency-producer.log")
    try:
        deadline = time.monotonic() + seconds + 60
        while len(latencies) < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10000)
            now_ms = time.time() * 1000
            for recs in batches.values():
                latencies.extend(now_ms - r.timestamp for r in recs)
    finally:
        terminate(producer, 10)
        await consumer.stop()
    if not latencies:
        return {"error": "no records"}
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)  # noqa: E731
    return {"rate": rate, "received": len(latencies), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "max_ms": round(latencies[-1], 1)}


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    source, central = await asyncio.to_thread(start_clusters, 2, workdir, ["eu", "central"])
    results: dict = {"machine_cpus": __import__("os").cpu_count(), "partitions": PARTITIONS}
    try:
        sizes = {100: args.records_100, 1024: args.records_1k}
        kinds = ["geo-mirror-eos", "geo-mirror-alo", "mm2"]
        await create_topic(source.bootstrap, "baseline")
        results["baseline_latency_at_10k_no_mirror"] = await measure_latency(
            Mirror("none", source, central, "baseline", workdir), args.rate, args.seconds,
            workdir, direct=True)
        print(f"baseline: {results['baseline_latency_at_10k_no_mirror']}", flush=True)
        for kind in kinds:
            for size, records in sizes.items():
                topic = f"b{size}-{kind}"
                await create_topic(source.bootstrap, topic)
                subprocess.run(producer_perf(source.bootstrap, topic, records, size), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for kind in kinds:
            for size, records in sizes.items():
                mirror = Mirror(kind, source, central, f"b{size}-{kind}", workdir)
                try:
                    figures = await measure_throughput(mirror, records, size, args.timeout)
                    if size == 100 and kind != "geo-mirror-alo" and "error" not in figures:
                        figures["latency_at_10k"] = await measure_latency(
                            mirror, args.rate, args.seconds, workdir)
                finally:
                    mirror.stop()
                results[f"{kind}_{size}B"] = figures
                print(f"{kind} {size}B: {json.dumps(figures)}", flush=True)
    finally:
        for cluster in (source, central):
            await asyncio.to_thread(cluster.stop)
    eos, mm2 = results.get("geo-mirror-eos_100B", {}), results.get("mm2_100B", {})
    if "records_per_s" in eos and "records_per_s" in mm2:
        results["eos_vs_mm2_throughput_100B"] = round(eos["records_per_s"] / mm2["records_per_s"], 2)
    eos1k, mm21k = results.get("geo-mirror-eos_1024B", {}), results.get("mm2_1024B", {})
    if "records_per_s" in eos1k and "records_per_s" in mm21k:
        results["eos_vs_mm2_throughput_1KiB"] = round(eos1k["records_per_s"] / mm21k["records_per_s"], 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-100", type=int, default=300_000)
    parser.add_argument("--records-1k", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=10_000, help="latency phase records/s")
    parser.add_argument("--seconds", type=int, default=10, help="latency phase duration")
    parser.add_argument("--timeout", type=float, default=180.0, help="per throughput run")
    results = asyncio.run(run(parser.parse_args()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
