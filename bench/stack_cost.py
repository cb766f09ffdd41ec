"""What the local stack costs at rest with N brokers per Kafka cluster: start time, RSS, idle CPU.

    python -m bench.stack_cost --brokers 3      # one JSON line

The stack starts with free ports, settles for ``--settle`` seconds, then CPU is measured over
``--seconds`` from /proc (every Kafka node, Consul agent and service process tree).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.procfs import cpu_seconds, rss_mb, tree_pids
from geostack.stack import LocalStack
from service_kit.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stack_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", type=int, default=1)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    configure_logging("warning", service="bench-stack-cost")
    started = time.time()
    with LocalStack(Path(tempfile.mkdtemp(prefix="geo-stack-cost-")), brokers=args.brokers) as stack:
        up = time.time() - started
        time.sleep(args.settle)  # the measurement's definition: after the start-up work
        kafka = [pid for cluster in stack.kafka.values() for pid in cluster.pids]
        consul = [pid for agent in stack.consul.values() if (pid := agent.pid)]
        services = [p.pid for p in (stack.mirror, stack.central, stack.router, *(e.process for e in stack.edges))
                    if p is not None and p.pid]
        every = kafka + consul + [q for pid in services for q in tree_pids(pid)]
        cpu_kafka, cpu_all = cpu_seconds(kafka), cpu_seconds(every)
        time.sleep(args.seconds)  # the measured idle window
        result = {"brokers_per_cluster": args.brokers, "jvms": len(kafka), "start_s": round(up, 1),
                  "rss_mb_total": round(rss_mb(every)), "rss_mb_kafka": round(rss_mb(kafka)),
                  "idle_cores_total": round((cpu_seconds(every) - cpu_all) / args.seconds, 2),
                  "idle_cores_kafka": round((cpu_seconds(kafka) - cpu_kafka) / args.seconds, 2)}
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
