"""Edge security against real Kafka: write keys (401), rate limits (429), header limits (431),
JSON depth / string length (400), spoofed forwarded headers, the separate metrics port, and keys
never appearing in configuration dumps or logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from edge.auth import KEYS_ENV, WriteKeyError, load_write_keys
from edge.config import EdgeConfig, build_parser, parse_config
from edge.ratelimit import TokenBuckets
from edge.testing import consume, edge_argv, edge_config, edge_env, running_app, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate

KEY_WEB = "web-key-0123456789abcdef"
KEY_IOS = "ios-key-fedcba9876543210"
EVENT = b'{"event":"click"}'


def _keys_file(tmp_path: Path) -> str:
    path = tmp_path / "keys"
    path.write_text(f"# source:key\nweb:{KEY_WEB}\n\nios:{KEY_IOS}\n")
    return str(path)


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_write_keys_401_without_a_valid_key_and_source_header(kafka, unique_topic, tmp_path):
    cfg = edge_config(kafka.bootstrap, unique_topic, write_keys_file=_keys_file(tmp_path))
    before = _counter("geo_edge_events_rejected_total", reason="unauthorized")
    async with running_app(cfg) as (_, client):
        for headers in ({}, {"X-Write-Key": "wrong-key-0123456789"}, {"Authorization": f"Basic {KEY_WEB}"},
                        {"Authorization": "Bearer " + KEY_WEB[:-1]}, {"Authorization": "Bearer "}):
            r = await client.post("/post", content=EVENT, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["reason"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await client.post("/v1/events", content=EVENT)).status_code == 401
        assert (await client.get("/v1/pixel.gif", params={"e": '{"event":"p"}', "key": "nope"})).status_code == 401
        assert (await client.get("/status")).status_code == 200  # health stays open

        r1 = await client.post("/post", content=EVENT, headers={"Authorization": f"bearer {KEY_WEB}"})
        r2 = await client.post("/v1/events", content=EVENT, headers={"X-Write-Key": KEY_IOS})
        r3 = await client.get("/v1/pixel.gif", params={"e": '{"event":"p"}', "key": KEY_WEB})
        assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 200), (r1.text, r2.text, r3.text)
    assert _counter("geo_edge_events_rejected_total", reason="unauthorized") - before == 7
    records = await consume(kafka.bootstrap, unique_topic, 3)
    assert sorted(dict(r.headers)["source"] for r in records) == [b"ios", b"web", b"web"]


def test_write_keys_parsing_errors_never_show_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv(KEYS_ENV, f"env:{KEY_WEB}, other:{KEY_IOS}")
    keys = load_write_keys()
    assert len(keys) == 2 and keys.source_of(KEY_IOS.encode()) == b"other"
    assert KEY_WEB not in repr(keys)
    for bad in (f"nocolon{KEY_WEB}", f"bad source:{KEY_WEB}", "web:short", f"a:{KEY_WEB},b:{KEY_WEB}"):
        monkeypatch.setenv(KEYS_ENV, bad)
        with pytest.raises(WriteKeyError) as info:
            load_write_keys()
        assert KEY_WEB not in str(info.value) and "short" not in str(info.value)
    env_key = "env-key-" + "z" * 16
    monkeypatch.setenv(KEYS_ENV, f"env:{env_key}")
    cfg = parse_config(["--write-keys-file", _keys_file(tmp_path)])
    for dump in (repr(cfg), cfg.to_env(), build_parser().format_help()):
        assert KEY_WEB not in dump and env_key not in dump
    monkeypatch.setenv(KEYS_ENV, "web:short")
    with pytest.raises(SystemExit):
        parse_config([])


async def test_rate_limit_per_ip_and_per_key_429_with_retry_after(kafka, unique_topic, tmp_path):
    cfg = edge_config(kafka.bootstrap, unique_topic, rate_limit_ip=0.5, rate_limit_ip_burst=3,
                      rate_limit_key=0.5, rate_limit_key_burst=4, write_keys_file=_keys_file(tmp_path))
    ip_before = _counter("geo_edge_rate_limited_total", scope="ip")
    key_before = _counter("geo_edge_rate_limited_total", scope="key")
    async with running_app(cfg) as (_, client):
        web = {"X-Write-Key": KEY_WEB}
        statuses = [(await client.post("/post", content=EVENT, headers={**web, "X-Forwarded-For": "198.51.100.7"}))
                    for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        limited = statuses[-1]
        assert limited.json()["error"]["reason"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        # another client address (as the edge determines it: forwarded by the trusted peer) has its own bucket
        r = await client.post("/post", content=EVENT, headers={**web, "X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 200
        # ... but the write key "web" has used its burst of 4
        r = await client.post("/post", content=EVENT, headers={**web, "X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 429 and r.headers["retry-after"]
        r = await client.post("/post", content=EVENT, headers={"X-Write-Key": KEY_IOS,
                                                               "X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 200
    assert _counter("geo_edge_rate_limited_total", scope="ip") - ip_before == 1
    assert _counter("geo_edge_rate_limited_total", scope="key") - key_before == 1


async def test_a_flood_of_distinct_ips_keeps_the_bucket_table_bounded(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, rate_limit_ip=1.0, rate_limit_ip_burst=5,
                      rate_limit_table_size=200)
    async with running_app(cfg) as (app, client):
        buckets = app.state.context.ip_buckets
        for i in range(1500):  # empty bodies: rate-limited first, then a cheap 400
            r = await client.post("/post", content=b"", headers={"X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"})
            assert r.status_code == 400
            assert len(buckets) <= 200
        assert len(buckets) == 200


def test_token_buckets_expire_idle_clients_and_cap_the_table():
    now = [0.0]
    buckets = TokenBuckets(rate=10.0, burst=2, max_size=1000, clock=lambda: now[0])
    for i in range(100_000):
        assert buckets.take(b"%d" % i) == 0.0
        assert len(buckets) <= 1000
    assert buckets.take(b"99999") == 0.0 and buckets.take(b"99999") > 0  # burst 2 used up
    now[0] += 1.0  # every bucket is full again: idle ones go as new clients arrive
    for i in range(10):
        buckets.take(b"new-%d" % i)
    assert len(buckets) <= 1000 - 8 * 10 + 10
    assert buckets.take(b"99999") == 0.0  # refilled


async def test_header_limits_431(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, max_headers=20, max_header_bytes=2048)
    async with running_app(cfg) as (_, client):
        many = {f"x-h{i}": "1" for i in range(25)}
        r = await client.post("/post", content=EVENT, headers=many)
        assert r.status_code == 431 and r.json()["error"]["reason"] == "headers_too_large"
        r = await client.get("/status", headers={"x-big": "a" * 3000})
        assert r.status_code == 431
        assert (await client.post("/post", content=EVENT, headers={"x-ok": "a" * 1000})).status_code == 200


async def test_json_depth_and_string_length_limits(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, max_json_depth=8, max_string_length=100)

    def nested(depth: int) -> dict:
        doc: dict = {"event": "deep"}
        inner = doc
        for _ in range(depth - 1):
            inner["x"] = {}
            inner = inner["x"]
        return doc

    async with running_app(cfg) as (_, client):
        assert (await client.post("/post", json=nested(8))).status_code == 200
        r = await client.post("/post", json=nested(9))
        assert r.status_code == 400 and r.json()["error"]["reason"] == "too_deep"
        r = await client.post("/post", json={"event": "a", "list": [[[[[[[[1]]]]]]]]})
        assert r.json()["error"]["reason"] == "too_deep"
        r = await client.post("/post", json={"event": "a", "s": "é" * 101})
        assert r.status_code == 400 and r.json()["error"]["reason"] == "string_too_long"
        r = await client.post("/post", json={"event": "a", "k" * 101: 1})
        assert r.json()["error"]["reason"] == "string_too_long"
        assert (await client.post("/post", json={"event": "a", "s": "é" * 100})).status_code == 200
        # brackets inside strings do not make an event deep
        assert (await client.post("/post", json={"event": "[[[[[[[[[[[[{{{{{{{{"})).status_code == 200
        r = await client.post("/v1/events", json=[nested(9), {"event": "ok"}, {"event": "x" * 101}])
        assert [x.get("reason") for x in r.json()["results"]] == ["too_deep", None, "string_too_long"]
        lines = b"\n".join(json.dumps(d).encode() for d in (nested(9), {"event": "ok"}))
        r = await client.post("/v1/events", content=lines, headers={"content-type": "application/x-ndjson"})
        assert [x.get("reason") for x in r.json()["results"]] == ["too_deep", None]


@pytest.fixture(scope="module")
def live_secure_edge(kafka, tmp_path_factory):
    """A real geo-edge: untrusted loopback (proxies 10/8), keys from the environment, debug logs."""
    work = tmp_path_factory.mktemp("secure-edge")
    port, mport = free_port(), free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=mport,
                     kafka=kafka.bootstrap, topic="secure-edge-events", kafka_check_interval=0.5,
                     trusted_proxies=("10.0.0.0/8",), log_level="debug", max_header_bytes=8192)
    log = work / "edge.log"
    proc = spawn(edge_argv(cfg), log, env=edge_env({KEYS_ENV: f"web:{KEY_WEB},ios:{KEY_IOS}"}))
    try:
        wait_status(f"http://127.0.0.1:{port}/status", 200, 60)
        yield cfg, log
    finally:
        assert terminate(proc, 20) == 0
        text = log.read_text()
        assert KEY_WEB not in text and KEY_IOS not in text, "a write key was logged"


def test_live_spoofed_forwarded_headers_from_an_untrusted_peer_are_ignored(live_secure_edge, kafka):
    cfg, _ = live_secure_edge
    base = f"http://127.0.0.1:{cfg.port}"
    r = httpx.post(base + "/post", content=b'{"event":"spoof"}', headers={
        "Authorization": f"Bearer {KEY_WEB}", "X-Forwarded-For": "203.0.113.1, 10.1.2.3",
        "CF-Connecting-IP": "203.0.113.2", "CF-IPCountry": "US"})
    assert r.status_code == 200, r.text
    assert httpx.post(base + "/post", content=EVENT, headers={"X-Write-Key": KEY_WEB[::-1]}).status_code == 401
    (record,) = asyncio.run(consume(kafka.bootstrap, cfg.topic, 1))
    headers = dict(record.headers)
    assert headers["client-ip"] == b"127.0.0.1"
    assert "country" not in headers
    assert headers["source"] == b"web"


def test_live_metrics_only_on_the_metrics_port(live_secure_edge):
    cfg, _ = live_secure_edge
    public = httpx.get(f"http://127.0.0.1:{cfg.port}/metrics")
    assert public.status_code == 404
    private = httpx.get(f"http://127.0.0.1:{cfg.metrics_port}/metrics")
    assert private.status_code == 200 and "geo_edge_http_requests_total" in private.text


def test_live_oversized_headers_431_through_httptools(live_secure_edge):
    cfg, _ = live_secure_edge
    r = httpx.post(f"http://127.0.0.1:{cfg.port}/post", content=EVENT,
                   headers={"X-Write-Key": KEY_WEB, "x-pad": "p" * 9000})
    assert r.status_code == 431 and r.json()["error"]["reason"] == "headers_too_large"
    r = httpx.post(f"http://127.0.0.1:{cfg.port}/post", content=EVENT,
                   headers={"X-Write-Key": KEY_WEB, **{f"x-{i}": "1" for i in range(120)}})
    assert r.status_code == 431
