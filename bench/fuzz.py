"""Fuzz a live edge with schemathesis (the CLI-equivalent, programmatically) and print what it tried
and found.

    python -m bench.fuzz [--examples 100] [--url http://127.0.0.1:8080] [--write-key KEY]

Without ``--url`` it starts its own Kafka cluster and a ``geo-edge`` (with a write key and a per-IP
rate limit, so 401 and 429 answers are exercised as well). Every operation of ``/openapi.json``
gets ``--examples`` generated cases; checks: no 5xx, and status code, content type, headers and
body conform to the description. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

import orjson

from edge.auth import KEYS_ENV
from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, fuzz_live_edge, wait_status
from harness.kafka import KafkaCluster
from harness.ports import free_port
from harness.process import spawn, terminate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100, help="generated cases per operation")
    ap.add_argument("--url", default="", help="a running edge (default: start Kafka and an edge)")
    ap.add_argument("--write-key", default="", help="write key for --url (X-Write-Key)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    edge = cluster = None
    key = args.write_key or None
    started = time.monotonic()
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            work = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
            cluster = KafkaCluster(work / "kafka").start()
            key = "fuzz-" + secrets.token_hex(16)
            port = free_port()
            cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                             kafka=cluster.bootstrap, topic="fuzz-events", kafka_check_interval=0.5,
                             rate_limit_ip=20.0, rate_limit_ip_burst=50, log_level="warning")
            edge = spawn(edge_argv(cfg), work / "edge.log", env=edge_env({KEYS_ENV: f"fuzz:{key}"}))
            base = f"http://127.0.0.1:{port}"
            wait_status(base + "/status", 200, 90)
        failed = ""
        try:
            summary = fuzz_live_edge(base, args.examples, write_key=key, seed=args.seed)
        except Exception as exc:  # the first failing operation stops hypothesis: report it
            failed = f"{type(exc).__name__}: {str(exc)[:400]}"
            summary = {"operations": {}, "failures": [], "examples": 0}
        for name, op in summary["operations"].items():
            print(f"{name}: {op['examples']} examples, statuses {op['statuses']}", flush=True)
        statuses: dict[str, int] = {}
        for op in summary["operations"].values():
            for code, n in op["statuses"].items():
                statuses[code] = statuses.get(code, 0) + n
        result = {"examples": summary["examples"], "statuses": dict(sorted(statuses.items())),
                  "operations": summary["operations"], "failures": summary["failures"],
                  "error": failed, "seconds": round(time.monotonic() - started, 1)}
    finally:
        if edge is not None:
            terminate(edge, 20)
        if cluster is not None:
            cluster.stop()
    print(orjson.dumps(result).decode())
    return 1 if result["failures"] or result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
