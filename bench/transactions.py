"""Where a transactional commit's time goes, with aiokafka against one Kafka broker.

    python -m bench.transactions [--transactions 1000] [--rate 48] [--records 200]

One transactional producer commits ``--transactions`` transactions at ``--rate`` per second, each
of ``--records`` 100-byte records to one partition (in turn over six) plus a consumer-group offset
(``send_offsets_to_transaction``), as geo-mirror's rounds do; a ``read_committed`` consumer sees
each transaction's first record. Two ways, one broker, geo-mirror's producer settings:

- ``offsets-during-acks``: the positions sent while the produce is in flight (geo-mirror until
  session 14);
- ``offsets-after-acks``: the positions after the acks (geo-mirror now, ``mirror/committer.py``).

Per way: the transaction's p50/p90/p99 (begin to committed), the time until the consumer saw it,
and how many produce requests the broker refused and aiokafka retried (its warnings). Last line:
one JSON object (docs/mirror.md, "Where a commit's time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition

from bench.stats import nearest_rank
from bench.topic_offsets import ensure_topic, reader_at_end
from harness.kafka import KafkaCluster
from service_kit.wait import wait_until_async

PARTITIONS = 6
WAYS = {"offsets-during-acks": True, "offsets-after-acks": False}


class RetryCounter(logging.Handler):
    """Counts aiokafka's warnings of a refused produce that it retries."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.count += 1


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def pick(q: float) -> float:
        return round(nearest_rank(ordered, q) * 1000, 1)

    return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


async def measure(bootstrap: str, topic: str, way: str, transactions: int, rate: float,
                  records: int) -> dict:
    during_acks = WAYS[way]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"bench-{way}",
                                enable_idempotence=True, compression_type="lz4", linger_ms=0,
                                retry_backoff_ms=10)   # geo-mirror's producer settings
    await producer.start()
    await producer.partitions_for(topic)
    consumer = await reader_at_end(bootstrap, topic, PARTITIONS)
    seen: dict[bytes, float] = {}

    async def read() -> None:
        while True:
            got = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for batch in got.values():
                for record in batch:
                    if record.key is not None:
                        seen.setdefault(record.key, now)

    retries = RetryCounter()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(retries)
    reader = asyncio.create_task(read())
    began: dict[bytes, float] = {}
    took: list[float] = []
    value = b"x" * 100
    try:
        for i in range(transactions):
            start = time.perf_counter()
            key = f"{way}-{i}".encode()
            await producer.begin_transaction()
            batch = producer.create_batch()
            for j in range(records):
                batch.append(key=None if j else key, value=value, timestamp=None)
            tp = TopicPartition(topic, i % PARTITIONS)
            acked = await producer.send_batch(batch, topic, partition=tp.partition)
            offsets = producer.send_offsets_to_transaction({tp: i}, f"bench-{way}")
            if during_acks:
                await asyncio.gather(acked, offsets)
            else:
                await acked
                await offsets
            await producer.commit_transaction()
            began[key] = start
            took.append(time.perf_counter() - start)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - start)))
        try:
            await wait_until_async(lambda: len(seen) >= len(began), 10, interval=0.05,
                                   what="every transaction seen")
        except TimeoutError:
            pass   # the ones not seen are counted out (``seen``)
    finally:
        reader.cancel()
        aiokafka_log.removeHandler(retries)
        await producer.stop()
        await consumer.stop()
    visible = [seen[key] - began[key] for key in began if key in seen]
    return {"transactions": transactions, "transaction": percentiles(took),
            "visible": percentiles(visible), "seen": len(visible),
            "produce_retries": retries.count}


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-transactions-"))
    cluster = KafkaCluster(workdir / "central")
    cluster.start(wait=False)
    await asyncio.to_thread(cluster.wait_ready)
    results: dict = {"rate": args.rate, "records_per_transaction": args.records}
    try:
        await ensure_topic(cluster.bootstrap, "transactions", PARTITIONS)
        for way in WAYS:
            results[way] = await measure(cluster.bootstrap, "transactions", way, args.transactions,
                                         args.rate, args.records)
            figures = results[way]
            print(f"{way:26} transaction p50/p90/p99 {figures['transaction']['p50_ms']} / "
                  f"{figures['transaction']['p90_ms']} / {figures['transaction']['p99_ms']} ms  "
                  f"visible p99 {figures['visible']['p99_ms']} ms  produce retries "
                  f"{figures['produce_retries']}",
                  flush=True)
    finally:
        await asyncio.to_thread(cluster.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=48.0, help="transactions per second (at most)")
    parser.add_argument("--records", type=int, default=200, help="100-byte records per transaction")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
