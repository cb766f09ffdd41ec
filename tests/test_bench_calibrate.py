"""``bench.calibrate``: the host-speed figure the stack benchmark prints beside its latencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_calibrate_prints_the_time_of_the_loaders_decoding_per_record() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.calibrate"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    figure = orjson.loads(done.stdout.strip().splitlines()[-1])["host_us_per_record"]
    # one record's decoding is microseconds: 0 would mean the workload did nothing, a millisecond
    # that it decoded something else (a Rejected record raises, and fails the run above)
    assert 0.5 < figure < 1000
