"""The edge under faults: a stopped broker, SIGTERM while requests are in flight (real processes)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_config, edge_env, running_app, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until, wait_until_async

pytestmark = pytest.mark.slow


async def test_stopped_broker_gives_503_in_bounded_time_and_the_edge_recovers(kafka_factory, unique_topic):
    (cluster,) = await asyncio.to_thread(kafka_factory, 1)
    cfg = edge_config(cluster.bootstrap, unique_topic, produce_timeout=2.0)
    async with running_app(cfg) as (app, client):
        assert (await client.post("/post", content=b'{"event":"before"}')).status_code == 200
        await asyncio.to_thread(cluster.stop)
        started = time.monotonic()
        r = await client.post("/post", content=b'{"event":"during"}')
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"]["reason"] in ("kafka_timeout", "kafka_unavailable")
        assert time.monotonic() - started < cfg.produce_timeout + 1.0

        async def status_is(code: int) -> bool:
            return (await client.get("/status")).status_code == code

        await wait_until_async(lambda: status_is(503), 15, interval=0.1,
                               what="/status 503 (the probe notices)")
        r = await client.post("/v1/events", content=b'{"event":"a"}\n{"event":"b"}\n')
        assert r.status_code == 503
        await asyncio.to_thread(cluster.start)
        await wait_until_async(lambda: status_is(200), 60, interval=0.2,
                               what="/status 200 (recovers by itself)")
        r = await client.post("/post", content=b'{"event":"after"}')
        assert r.status_code == 200, r.text


def test_sigterm_drains_then_exits_zero(kafka, unique_topic, tmp_path):
    port, mport = free_port(), free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=mport,
                     kafka=kafka.bootstrap, topic=unique_topic, region="test", node_id="sig",
                     drain_delay=2.0, workers=2, kafka_check_interval=0.5)
    proc = spawn(edge_argv(cfg), tmp_path / "edge.log", env=edge_env())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_status(base + "/status", 200, 60)
        sigterm_sent = threading.Event()
        first = b"".join(b'{"event":"e%d"}\n' % i for i in range(100))

        def slow_body():  # the request is in flight (headers and half the body sent) across SIGTERM
            yield first
            sigterm_sent.wait(10)
            # not a wait: a slow client that deliberately stalls past the drain delay, so that the
            # rest of the body arrives after the listener has closed
            time.sleep(cfg.drain_delay + 0.5)
            yield b'{"event":"last"}\n'

        def post_batch(_: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                return client.post(base + "/v1/events", content=slow_body(),
                                   headers={"content-type": "application/x-ndjson"})

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post_batch, i) for i in range(6)]
            wait_until(lambda: _in_flight(mport) == 6, 10, interval=0.05,
                       what="all 6 requests in flight at the edge")
            proc.send_signal(signal.SIGTERM)  # to the supervisor, as an orchestrator would
            sigterm_sent.set()
            wait_status(base + "/status", 503, 5)  # still listening during the drain delay
            answers = [f.result() for f in futures]
        assert [a.status_code for a in answers] == [200] * 6
        assert all(a.json()["accepted"] == 101 for a in answers)
        assert proc.wait(30) == 0
    finally:
        terminate(proc, 10)
    log = (tmp_path / "edge.log").read_text()
    assert "draining" in log


def _in_flight(metrics_port: int) -> float:
    """The edge's ``geo_edge_http_requests_in_flight`` (summed over its workers; -1 unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("geo_edge_http_requests_in_flight"))
