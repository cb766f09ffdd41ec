"""`make demo` end to end: the real topology over its WAN links, simulated clients, a regional
failover, a verdict."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from service_kit.regions import load_regions


@pytest.mark.slow
def test_demo_passes_and_prints_a_json_summary(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "geostack.demo", "--workdir", str(tmp_path / "demo"),
                           "--events-per-country", "300"], capture_output=True, text=True, timeout=600)
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert summary["ok"] is True and summary["failures"] == []
    # by default over the regions file's WAN links (a round trip and a cap per edge region)
    assert summary["wan"] == {r.name: r.wan.as_dict() for r in load_regions().edge_regions if r.wan}
    steady, failover = summary["steady"], summary["failover"]
    assert steady["central"]["missing"] == 0 and steady["central"]["duplicates"] == 0
    assert steady["clients"]["acknowledged"] == 6 * 300
    assert set(failover["clients"]["acknowledged_by_pool"]) == {"eu"}
    assert failover["central"]["missing"] == 0
