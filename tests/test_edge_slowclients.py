"""Slow clients against a real ``geo-edge`` (two workers, real Kafka): 3,000 connections that send
``POST /post`` headers without their end and stall are answered 408 and closed after the header
timeout; stalled bodies 408 after the body timeout; connections that send nothing are closed
without an answer; idle keep-alive connections are closed; a connection beyond the per-worker
limit gets one 503 with Retry-After. Normal clients are served throughout and the workers' open
file descriptors fall back to where they were."""

from __future__ import annotations

import select
import socket
import time
from typing import Iterator

import httpx
import orjson
import pytest

from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until
from slowclient_kit import STALLED_BODY, STALLED_HEAD, NormalClients, stall, stall_storm, tree_fds, wait_closed

TIMEOUT = 2.0
STALLED = 3000   # the figure; each holds one descriptor here and one in the edge


def start_edge(kafka, tmp_path, topic: str, **limits) -> Iterator[tuple[EdgeConfig, object]]:
    cfg = EdgeConfig(host="127.0.0.1", port=free_port(), metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=kafka.bootstrap, topic=topic, kafka_check_interval=0.5, **limits)
    proc = spawn(edge_argv(cfg), tmp_path / "edge.log", env=edge_env())
    try:
        wait_status(f"http://127.0.0.1:{cfg.port}/status", 200, 60)
        yield cfg, proc
    finally:
        assert terminate(proc, 30) == 0


@pytest.fixture(scope="module")
def edge(kafka, tmp_path_factory) -> Iterator[tuple[EdgeConfig, object]]:
    yield from start_edge(kafka, tmp_path_factory.mktemp("slow-edge"), "slow-events", workers=2,
                          header_timeout=TIMEOUT, body_timeout=TIMEOUT, keepalive_timeout=3.0)


def closed_metric(cfg: EdgeConfig, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{cfg.metrics_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'geo_http_connections_closed_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
def test_3000_stalled_headers_are_answered_408_and_closed(edge) -> None:
    cfg, proc = edge
    url = f"http://127.0.0.1:{cfg.port}/post"
    baseline = tree_fds(proc.pid)
    before = closed_metric(cfg, "header_timeout")
    with NormalClients(url) as normal:  # normal clients keep going during and after the storm
        storm = stall_storm(proc.pid, cfg.port, STALLED, baseline, normal, TIMEOUT, what="the edge")
    opened, peak, closed = storm.opened, storm.peak_fds, storm.closed
    print(f"stalled {STALLED} opened in {opened:.1f}s; fds {baseline} -> {peak}; closed after "
          f"{min(closed.after):.1f}-{max(closed.after):.1f}s; normal {dict(normal.statuses)} "
          f"slowest {normal.slowest:.2f}s")
    assert closed.open_left == 0
    assert closed.first_lines == {b"HTTP/1.1 408 Request Timeout": STALLED}, closed.first_lines
    assert {orjson.loads(b)["error"]["reason"] for b in closed.bodies} == {"header_timeout"}
    assert min(closed.after) >= TIMEOUT * 0.9           # not before the timeout
    assert max(closed.after) <= opened + TIMEOUT + 15   # ... and soon after it
    assert set(normal.statuses) == {200} and normal.statuses[200] > 20, normal.statuses
    assert normal.slowest < 5.0
    wait_until(lambda: tree_fds(proc.pid) <= baseline + 20, 30, what="the edge's descriptors back to the baseline")
    assert closed_metric(cfg, "header_timeout") - before >= STALLED


def test_stalled_bodies_get_408_body_timeout_and_nothing_is_stored(edge) -> None:
    cfg, proc = edge
    started = time.monotonic()
    socks = stall(cfg.port, 200, STALLED_BODY)
    closed = wait_closed(socks, started, timeout=TIMEOUT + 30)
    assert closed.open_left == 0 and closed.first_lines == {b"HTTP/1.1 408 Request Timeout": 200}
    assert {orjson.loads(b)["error"]["reason"] for b in closed.bodies} == {"body_timeout"}
    assert min(closed.after) >= TIMEOUT * 0.9
    assert httpx.post(f"http://127.0.0.1:{cfg.port}/post", content=b'{"event":"after"}').status_code == 200


def test_silent_connections_closed_without_an_answer(edge) -> None:
    cfg, _ = edge
    started = time.monotonic()
    closed = wait_closed(stall(cfg.port, 100, b""), started, timeout=TIMEOUT + 30)
    assert closed.open_left == 0 and closed.first_lines == {b"": 100} and not closed.bodies
    assert min(closed.after) >= TIMEOUT * 0.9


def test_idle_keepalive_connection_closed_after_the_keepalive_timeout(edge) -> None:
    cfg, _ = edge
    with socket.create_connection(("127.0.0.1", cfg.port), timeout=30) as sock:
        body = b'{"event":"ka"}'
        sock.sendall(b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        idle_since = time.monotonic()
        assert sock.recv(65536) == b""   # blocks until the server closes the idle connection
        idle = time.monotonic() - idle_since
    assert 2.5 <= idle <= 10, idle


def open_connections(cfg: EdgeConfig) -> float:
    text = httpx.get(f"http://127.0.0.1:{cfg.metrics_port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("geo_http_open_connections"))


def test_the_open_connections_gauge_follows_opens_and_closes(edge) -> None:
    cfg, _ = edge
    wait_until(lambda: open_connections(cfg) == 0, 15, what="no connection open before")
    body = b'{"event":"gauge"}'
    socks = [socket.create_connection(("127.0.0.1", cfg.port), timeout=10) for _ in range(40)]
    try:
        for sock in socks:  # one request each, answered: then they stay open, idle, on both workers
            sock.sendall(b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert all(sock.recv(65536).startswith(b"HTTP/1.1 200") for sock in socks)
        wait_until(lambda: open_connections(cfg) == 40, 2, interval=0.05, what="40 open connections counted")
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: open_connections(cfg) == 0, 2, interval=0.05, what="the closes counted")


def test_a_connection_beyond_the_worker_limit_gets_503_retry_after(kafka, tmp_path) -> None:
    for cfg, _ in start_edge(kafka, tmp_path, "limit-events", max_connections=20, header_timeout=3.0):
        url = f"http://127.0.0.1:{cfg.port}/post"
        held = stall(cfg.port, 20, b"")   # one worker: these fill it
        try:
            over = httpx.post(url, content=b'{"event":"over"}', timeout=10)
            assert over.status_code == 503, over.text
            assert over.json()["error"]["reason"] == "too_many_connections"
            assert over.headers["retry-after"] == "2" and over.headers["connection"] == "close"
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: httpx.post(url, content=b'{"event":"under"}', timeout=10).status_code == 200, 20,
                   what="the edge serving again below its limit")
        assert closed_metric(cfg, "too_many_connections") >= 1


def test_limits_are_validated() -> None:
    for bad in ({"header_timeout": 0}, {"body_timeout": -1}, {"keepalive_timeout": 0}, {"max_connections": 0}):
        with pytest.raises(ValueError):
            EdgeConfig(**bad)


def test_a_header_dripped_a_byte_at_a_time_is_cut_off_at_the_total(edge) -> None:
    """The header timeout is a total from the first byte, not a per-read timer (slowloris)."""
    cfg, _ = edge
    with socket.create_connection(("127.0.0.1", cfg.port), timeout=30) as sock:
        started = time.monotonic()
        answer = b""
        for byte in STALLED_HEAD * 10:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            # waiting up to 0.2 s for an answer is also the drip's pace (the test's definition)
            if select.select([sock], [], [], 0.2)[0]:
                answer = sock.recv(65536)
                break
        cut = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer, answer
    assert TIMEOUT * 0.9 <= cut <= TIMEOUT + 3, cut


def test_a_connection_busy_past_the_keepalive_timeout_stays_open_then_closes_when_idle(edge) -> None:
    """The keep-alive timer runs from the last answer, whenever the connection was opened: requests
    that keep coming across the timeout (3 s here) keep it open."""
    cfg, _ = edge
    body = b'{"event":"busy"}'
    request = b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with socket.create_connection(("127.0.0.1", cfg.port), timeout=30) as sock:
        opened = time.monotonic()
        while time.monotonic() - opened < 5.0:  # one request a second for 5 s
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(1.0)  # not a wait: the client's pacing
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        idle_since = time.monotonic()
        assert sock.recv(65536) == b""   # blocks until the server closes the idle connection
        idle = time.monotonic() - idle_since
    assert 2.5 <= idle <= 10, idle
