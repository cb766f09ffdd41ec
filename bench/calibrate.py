"""How fast this host runs Python right now: a fixed single-threaded workload, timed.

This machine's speed was seen to vary by ~1.5x over an hour with nothing else running (the same
insert of 3,700 rows into chdb: 35 ms at 01:00, 52 ms at 02:10; the loader's decoding of one
event: 6.2 us, then 9.1 us), enough to turn a stack benchmark's latency figures over. Benchmarks
print this figure beside theirs, taken before and after, so that two runs can be compared.

    python -m bench.calibrate     # prints {"host_us_per_record": ...}

The workload: the loader's own decoding (:func:`central.records.event_row`: header decoding, an
orjson parse and dump, a row tuple) of 20,000 synthetic mirrored records, best of 5 passes.
"""

from __future__ import annotations

import sys
import time

import orjson

from central.records import KafkaRecord, event_row

_RECORDS = 20_000
_PASSES = 5


def _records() -> list[KafkaRecord]:
    now = 1_800_000_000_000
    stamp = str(now).encode()
    out = []
    for i in range(_RECORDS):
        headers = [("event-id", f"00000000-0000-4000-8000-{i:012d}".encode()), ("region", b"eu"),
                   ("edge", b"edge-eu-1"), ("received-at", stamp), ("country", b"DE"), ("client-ip", b"192.0.2.1"),
                   ("sent-at", stamp), ("mirror-source-topic", b"events"), ("mirror-source-partition", b"3"),
                   ("mirror-source-offset", str(i).encode()), ("mirrored-at", stamp)]
        value = orjson.dumps({"event": "view", "os": "linux", "browser": "chrome", "user_id": f"u{i % 1000}",
                              "timestamp": now, "page": "/pricing"})
        out.append(KafkaRecord("eu.events", 0, i, now, value, headers))
    return out


def host_us_per_record() -> float:
    """Microseconds per record of the fixed workload (best of several passes: the host's speed,
    not its momentary load)."""
    records = _records()
    best = float("inf")
    for _ in range(_PASSES):
        started = time.perf_counter()
        for record in records:
            event_row(record, 1_800_000_000_500, 1 << 20)
        best = min(best, time.perf_counter() - started)
    return round(best / _RECORDS * 1e6, 2)


def main() -> int:
    print(orjson.dumps({"host_us_per_record": host_us_per_record()}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
