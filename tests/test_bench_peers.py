"""The benchmark's peers and the instrument itself (``bench/peers.py``, ``bench/edge.py``).

The Go reference is built here when it is not cached yet (``bench/gobuild.py``: about a minute with
empty Go caches). Benthos is a much bigger build: these tests include it only when its binary is
already in the cache (``make bench-edge`` or ``python -m bench.gobuild bench/benthos`` puts it there),
and otherwise cover geo-edge and the Go reference alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is run from the checkout (python -m bench.edge), not installed
    sys.path.insert(0, str(ROOT))

from bench import peers  # noqa: E402
from bench.edge import EVENT, SCENARIOS  # noqa: E402
from bench.gobuild import cached_path  # noqa: E402
from bench.topic_offsets import create_topic, settled_count  # noqa: E402


def test_go_reference_contract(kafka, tmp_path) -> None:
    """200 only for a JSON object, and then the event is in Kafka; 400 otherwise; TLS 1.3 on offer."""
    topic = "goref-contract"
    create_topic(kafka.bootstrap, topic, 2)
    system = peers.go_reference(kafka.bootstrap, topic)
    server = system.start(tmp_path, None, EVENT)  # waits for a 200
    try:
        before = settled_count(kafka.bootstrap, topic, quiet=0.5)
        for bad in (b"[1, 2]", b"not json", b"", b'"a string"', b"null"):
            r = httpx.post(server.base + "/post", content=bad)
            assert r.status_code == 400, bad
            assert r.json() == {"error": "not_a_json_object"}
        assert httpx.post(server.base + "/post", content=EVENT).status_code == 200
        assert settled_count(kafka.bootstrap, topic, quiet=0.5) == before + 1
        assert "goref_requests_total" in httpx.get(server.base + "/metrics").text
    finally:
        assert server.stop() == 0
    tls = peers.make_tls(tmp_path / "tls")
    server = system.start(tmp_path, tls, EVENT)
    try:
        assert server.tls_version() == "TLSv1.3"
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_go_reference_answers_503_without_kafka(kafka_factory, tmp_path) -> None:
    """Kafka gone: the Go reference answers 503 with a reason instead of hanging or crashing."""
    (cluster,) = kafka_factory(1)
    create_topic(cluster.bootstrap, "goref-down", 1)
    server = peers.go_reference(cluster.bootstrap, "goref-down").start(tmp_path, None, EVENT)
    try:
        cluster.stop()
        r = httpx.post(server.base + "/post", content=EVENT, timeout=60)
        assert r.status_code == 503
        assert r.json() == {"error": "kafka_unavailable"}
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_bench_edge_measures_every_system(tmp_path) -> None:
    """A one-second run of every scenario: each system has a rate, CPU per request, no errors, and
    the Kafka count of its topic matches its 2xx answers; ratios and goals are filled in."""
    benthos_cached = cached_path(ROOT / "bench" / "benthos").is_file()
    wanted = ["go", "benthos"] if benthos_cached else ["go"]
    proc = subprocess.run([sys.executable, "-m", "bench.edge", "--duration", "1", "--warmup", "0",
                           "--warmup-posts", "5", "--connections", "16", "--close-connections", "8",
                           "--batch-connections", "4", "--peers", ",".join(wanted), "--skip-perf",
                           "--skip-profile", "--skip-ceiling"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["systems"]) == {"geo-edge", *wanted}
    for name, info in result["systems"].items():
        assert info.get("tls_version") == "TLSv1.3", name
        assert set(info["scenarios"]) == set(SCENARIOS), name
        for scenario, m in info["scenarios"].items():
            assert m["rps"] > 0 and m["cpu_us_per_request"] > 0, (name, scenario)
            assert m["non_2xx"] == 0, (name, scenario)
            assert m["kafka_matches"] and m["kafka_events"] >= m["requests"], (name, scenario, m)
    batch = result["systems"]["geo-edge"]["extras"]["batch"]
    assert batch["events_per_s"] > 0 and batch["kafka_matches"]
    for peer in wanted:
        assert set(result["ratios"][f"geo-edge/{peer}"]) == set(SCENARIOS)
    assert all(isinstance(v, bool) for v in result["goals"].values()), result["goals"]


def test_gobuild_cache_key_and_missing_go(tmp_path, monkeypatch) -> None:
    """The cached binary's name follows go.mod, go.sum and the .go files; no Go is a clear error."""
    from bench import gobuild

    for name, text in (("go.mod", "module x\n"), ("go.sum", ""), ("main.go", "package main\n")):
        (tmp_path / name).write_text(text)
    first = gobuild.cached_path(tmp_path, "x")
    assert first == gobuild.cached_path(tmp_path, "x")
    (tmp_path / "README.md").write_text("not a source")
    assert gobuild.cached_path(tmp_path, "x") == first
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert gobuild.cached_path(tmp_path, "x") != first
    monkeypatch.setattr(gobuild.shutil, "which", lambda _: None)
    monkeypatch.setattr(gobuild.os, "access", lambda *_: False)
    with pytest.raises(gobuild.GoMissing, match="no Go toolchain"):
        gobuild.build(tmp_path, "x")
