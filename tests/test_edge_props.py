"""Arbitrary input never yields a 5xx: hypothesis in-process (lifespan running, real Kafka) and a
schemathesis run against a live ``geo-edge`` process."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from typing import Any, Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import EdgeConfig
from edge.auth import KEYS_ENV
from edge.testing import edge_argv, edge_config, edge_env, fuzz_live_edge, running_app, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
events = st.fixed_dictionaries({"event": st.text(max_size=10)}, optional={
    "os": json_values, "browser": json_values, "user_id": json_values, "event_id": json_values,
    "sent_at": json_values})
content_types = st.sampled_from([None, "application/json", "application/x-ndjson", "text/plain",
                                 "application/xml", "application/json; charset=utf-8", ""])


@pytest.fixture(scope="module")
def edge_client(kafka) -> Iterator[tuple[asyncio.Runner, httpx.AsyncClient]]:
    cfg = edge_config(kafka.bootstrap, "props-events", max_body_bytes=20_000, max_event_bytes=2_000,
                      max_batch_events=20)
    with asyncio.Runner() as runner:
        manager = running_app(cfg)
        _, client = runner.run(manager.__aenter__())
        try:
            yield runner, client
        finally:
            runner.run(manager.__aexit__(None, None, None))


def _post(edge_client: Any, route: str, body: bytes, ctype: str | None, gz: bool) -> httpx.Response:
    runner, client = edge_client
    headers = {}
    if ctype is not None:
        headers["content-type"] = ctype
    if gz:
        headers["content-encoding"] = "gzip"
        body = gzip.compress(body)
    return runner.run(client.post(route, content=body, headers=headers))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(["/post", "/v1/events"]), body=st.binary(max_size=300),
       ctype=content_types, gz=st.booleans())
def test_arbitrary_bytes_never_5xx(edge_client, route, body, ctype, gz):
    r = _post(edge_client, route, body, ctype, gz)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["reason"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(["/post", "/v1/events"]),
       doc=json_values | events | st.lists(events | json_values, max_size=5), ndjson=st.booleans())
def test_arbitrary_json_never_5xx(edge_client, route, doc, ndjson):
    if ndjson and isinstance(doc, list):
        body, ctype = b"\n".join(orjson.dumps(x) for x in doc), "application/x-ndjson"
    else:
        body, ctype = orjson.dumps(doc), "application/json"
    r = _post(edge_client, route, body, ctype, False)
    assert r.status_code < 500, r.text
    if r.status_code == 200 and route == "/post":
        assert r.json()["status"] == "ok"


LIVE_KEY = "fuzz-key-0123456789abcdef"


@pytest.fixture(scope="module")
def live_edge(kafka, tmp_path_factory) -> Iterator[str]:
    """A real geo-edge with a write key and a per-IP rate limit, so 401 and 429 answers happen too."""
    port = free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=kafka.bootstrap, topic="schemathesis-events", kafka_check_interval=0.5,
                     max_body_bytes=50_000, rate_limit_ip=8.0, rate_limit_ip_burst=40)
    proc = spawn(edge_argv(cfg), tmp_path_factory.mktemp("edge") / "edge.log",
                 env=edge_env({KEYS_ENV: f"fuzz:{LIVE_KEY}"}))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_status(base + "/status", 200, 60)
        yield base
    finally:
        terminate(proc, 20)


def test_schemathesis_live_edge_conforms_and_never_5xx(live_edge):
    summary = fuzz_live_edge(live_edge, max_examples=30, write_key=LIVE_KEY)
    seen = sorted({code for op in summary["operations"].values() for code in op["statuses"]})
    print(f"schemathesis: {summary['examples']} examples, statuses seen {seen}, "
          f"failures {len(summary['failures'])}: {summary['operations']}")
    assert not summary["failures"], summary["failures"]
    assert {"POST /post", "POST /v1/events", "GET /v1/pixel.gif", "GET /status"} <= set(summary["operations"])
    assert "401" in seen and "200" in seen
