"""``geo-kafka``: fetch Kafka's jars, or run N single-node clusters in the foreground.

    geo-kafka fetch
    geo-kafka up --count 3 --workdir /tmp/k     # prints one JSON line of bootstrap addresses
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import orjson

from harness.jmx_exporter import agent_jar
from harness.kafka import kafka_libs, start_clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geo-kafka", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch Kafka's jars from Maven Central into the cache")
    up = sub.add_parser("up", help="start clusters and keep them until SIGINT/SIGTERM")
    up.add_argument("--count", type=int, default=1)
    up.add_argument("--names", nargs="*", help="cluster names (default kafka0..N-1)")
    up.add_argument("--workdir", type=Path, help="data and logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.cmd == "fetch":
        print(kafka_libs())
        print(agent_jar())
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geo-kafka-"))
    clusters = start_clusters(len(args.names) if args.names else args.count, workdir, names=args.names)
    print(orjson.dumps({c.workdir.name: c.bootstrap for c in clusters}).decode(), flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    for cluster in clusters:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
