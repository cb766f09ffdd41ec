"""The edge in-process (httpx ASGI transport, lifespan running) against the shared real Kafka."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import orjson
import pytest
import uuid_utils

from edge.app import create_app
from edge.testing import consume, running_app, edge_config
from service_kit.wait import wait_until_async

NDJSON = {"content-type": "application/x-ndjson"}


def _headers(record) -> dict[str, bytes]:
    return dict(record.headers)


async def test_post_event_is_stored_with_contract_headers(kafka, unique_topic):
    body = b'{"event":"click", "user_id":"u-42", "sent_at": 1700000000123}'
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        r = await client.post("/post", content=body, headers={
            "content-type": "application/json", "CF-Connecting-IP": "203.0.113.9", "CF-IPCountry": "DE"})
    assert r.status_code == 200
    answer = r.json()
    assert answer["status"] == "ok" and set(answer) == {"status", "partition", "offset"}
    (record,) = await consume(kafka.bootstrap, unique_topic, 1)
    assert record.value == body  # the client's bytes, unchanged
    assert record.key == b"u-42"
    assert (record.partition, record.offset) == (answer["partition"], answer["offset"])
    h = _headers(record)
    assert uuid_utils.UUID(h["event-id"].decode()).version == 7
    assert h["region"] == b"test" and h["edge"] == b"edge-t1"
    assert h["client-ip"] == b"203.0.113.9"  # the ASGI peer 127.0.0.1 is a trusted proxy by default
    assert h["country"] == b"DE"
    assert h["sent-at"] == b"1700000000123"
    assert abs(int(h["received-at"]) - record.timestamp) < 60_000


async def test_post_takes_a_form_encoded_body_like_the_original(kafka, unique_topic):
    """`curl -d '{...}' /post` sends application/x-www-form-urlencoded; the original took it."""
    body = b'{"event":"view","os":"linux","browser":"chrome"}'
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        r = await client.post("/post", content=body,
                              headers={"content-type": "application/x-www-form-urlencoded"})
        batch = await client.post("/v1/events", content=body,
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert batch.status_code == 415
    (record,) = await consume(kafka.bootstrap, unique_topic, 1)
    assert record.value == body


async def test_untrusted_peer_headers_are_ignored_and_idempotency_key_is_the_event_id(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, trusted_proxies=("10.0.0.0/8",))
    async with running_app(cfg) as (_, client):
        r = await client.post("/post", content=b'{"event":"view","anonymous_id":"a-1"}', headers={
            "X-Forwarded-For": "198.51.100.1", "CF-IPCountry": "FR", "Idempotency-Key": "key-123",
            "X-Sent-At": "1700000000000"})
        assert r.status_code == 200
    (record,) = await consume(kafka.bootstrap, unique_topic, 1)
    h = _headers(record)
    assert h["client-ip"] == b"127.0.0.1"
    assert "country" not in h
    assert h["event-id"] == b"key-123"
    assert h["sent-at"] == b"1700000000000"
    assert record.key == b"a-1"


async def test_batch_partial_acceptance_ndjson_and_array(kafka, unique_topic):
    lines = [b'{"event":"a","event_id":"id-a"}', b'{"event":""}', b'not json', b'[1]',
             b'{"event":"b","os":7}', b'{"event":"c"}']
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        r = await client.post("/v1/events", content=b"\n".join(lines) + b"\n\n", headers=NDJSON)
        assert r.status_code == 200
        doc = r.json()
        assert (doc["accepted"], doc["rejected"]) == (2, 4)
        statuses = [(x["index"], x["status"], x.get("reason")) for x in doc["results"]]
        assert statuses == [(0, "accepted", None), (1, "rejected", "invalid_field"),
                            (2, "rejected", "invalid_json"), (3, "rejected", "not_an_object"),
                            (4, "rejected", "invalid_field"), (5, "accepted", None)]
        assert doc["results"][0]["event_id"] == "id-a"

        r = await client.post("/v1/events", json=[{"event": "x", "user_id": "u"}, {"nope": 1}])
        assert r.status_code == 200
        assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected"]

        r = await client.post("/v1/events", json=[{"nope": 1}, 5])
        assert r.status_code == 400
        assert r.json()["error"]["reason"] == "all_rejected"
        assert [x["reason"] for x in r.json()["results"]] == ["missing_field", "not_an_object"]
    records = await consume(kafka.bootstrap, unique_topic, 3)
    values = sorted(rec.value for rec in records)
    assert values == sorted([lines[0], lines[5], orjson.dumps({"event": "x", "user_id": "u"})])


BAD_INPUTS = [  # body, headers, status, reason (None: any of the field reasons)
    (b'{"event": "x"', {}, 400, "invalid_json"),
    (b'{"event": "\xff\xfe"}', {}, 400, "invalid_utf8"),
    (b'"just a string"', {}, 400, None),
    (b'{"os": "linux"}', {}, 400, None),
    (b'{"event": 12}', {}, 400, None),
    (b'{"event": "x", "browser": ["b"]}', {}, 400, None),
    (b'   ', {}, 400, "empty_body"),
    (b'{"event": "x"}', {"content-type": "application/xml"}, 415, "unsupported_media_type"),
    (b'{"event": "x"}', {"content-encoding": "br"}, 415, "unsupported_encoding"),
    (b'{"event": "x"}', {"content-encoding": "gzip"}, 400, "invalid_gzip"),
]
FIELD_REASONS = {"not_an_object", "missing_field", "invalid_field"}


async def test_bad_input_is_a_4xx_with_a_reason(kafka, unique_topic):
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        for route in ("/post", "/v1/events"):
            for body, headers, status, reason in BAD_INPUTS:
                r = await client.post(route, content=body, headers=headers)
                assert r.status_code == status, (route, body, r.text)
                error = r.json()["error"]["reason"]
                if error == "all_rejected":  # a batch whose only element is invalid
                    error = r.json()["results"][0]["reason"]
                assert error == reason if reason else error in FIELD_REASONS, (route, body, r.text)
                assert "detail" in r.json()["error"]


async def test_size_limits_are_413(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, max_body_bytes=10_000, max_event_bytes=1000,
                      max_batch_events=5)
    async with running_app(cfg) as (_, client):
        big = orjson.dumps({"event": "x", "pad": "a" * 20_000})
        r = await client.post("/post", content=big)
        assert (r.status_code, r.json()["error"]["reason"]) == (413, "body_too_large")
        r = await client.post("/post", content=orjson.dumps({"event": "x", "pad": "a" * 2000}))
        assert (r.status_code, r.json()["error"]["reason"]) == (413, "event_too_large")
        r = await client.post("/v1/events", content=b'{"event":"x"}\n' * 6, headers=NDJSON)
        assert (r.status_code, r.json()["error"]["reason"]) == (413, "too_many_events")
        r = await client.post("/v1/events", json=[{"event": "x", "pad": "a" * 2000}, {"event": "y"}])
        assert r.status_code == 200
        assert [x.get("reason") for x in r.json()["results"]] == ["event_too_large", None]


async def test_gzip_bodies_and_a_gzip_bomb(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, max_body_bytes=100_000)
    async with running_app(cfg) as (_, client):
        r = await client.post("/post", content=gzip.compress(b'{"event":"zipped"}'),
                              headers={"content-encoding": "gzip"})
        assert r.status_code == 200
        batch = b"".join(b'{"event":"z%d"}\n' % i for i in range(50))
        # two concatenated gzip members are one valid gzip stream
        r = await client.post("/v1/events", content=gzip.compress(batch[:200]) + gzip.compress(batch[200:]),
                              headers={"content-encoding": "gzip", **NDJSON})
        assert r.status_code == 200 and r.json()["accepted"] == 50
        bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}", compresslevel=9)  # 50 MB -> ~50 KB
        r = await client.post("/post", content=bomb, headers={"content-encoding": "gzip"})
        assert (r.status_code, r.json()["error"]["reason"]) == (413, "body_too_large")
        small_bomb = gzip.compress(b" " * 5_000_000)  # 5 MB -> 5 KB: small compressed, huge inflated
        r = await client.post("/v1/events", content=small_bomb, headers={"content-encoding": "gzip"})
        assert (r.status_code, r.json()["error"]["reason"]) == (413, "body_too_large")
    records = await consume(kafka.bootstrap, unique_topic, 51)
    assert b'{"event":"zipped"}' in {rec.value for rec in records}


async def test_pixel_beacon(kafka, unique_topic):
    event = {"event": "pixel", "user_id": "p1"}
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        b64 = base64.urlsafe_b64encode(orjson.dumps(event)).decode().rstrip("=")
        r = await client.get("/v1/pixel.gif", params={"e": b64})
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
        assert r.content.startswith(b"GIF89a")
        r = await client.get("/v1/pixel.gif", params={"e": json.dumps({"event": "pixel2"})})
        assert r.status_code == 200
        r = await client.get("/v1/pixel.gif")
        assert (r.status_code, r.json()["error"]["reason"]) == (400, "invalid_query")
        r = await client.get("/v1/pixel.gif", params={"e": "%%%"})
        assert r.status_code == 400
    records = await consume(kafka.bootstrap, unique_topic, 2)
    assert {rec.value for rec in records} == {orjson.dumps(event), b'{"event": "pixel2"}'}


async def test_permissive_and_schema_modes(kafka, unique_topic, tmp_path: Path):
    async with running_app(edge_config(kafka.bootstrap, unique_topic, validation="permissive")) as (_, client):
        assert (await client.post("/post", content=b'{"anything": [1]}')).status_code == 200
        assert (await client.post("/post", content=b'[1]')).status_code == 400
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["kind"],
                                  "properties": {"kind": {"enum": ["a", "b"]}}}))
    cfg = edge_config(kafka.bootstrap, unique_topic, validation="schema", schema_file=str(schema))
    async with running_app(cfg) as (_, client):
        assert (await client.post("/post", content=b'{"kind": "a"}')).status_code == 200
        r = await client.post("/post", content=b'{"kind": "c"}')
        assert (r.status_code, r.json()["error"]["reason"]) == (400, "schema_violation")


async def test_dead_letter_topic_gets_rejected_elements(kafka, unique_topic):
    dlq = unique_topic + ".dlq"
    async with running_app(edge_config(kafka.bootstrap, unique_topic, dead_letter_topic=dlq)) as (_, client):
        r = await client.post("/v1/events", content=b'{"event":"ok"}\n{"bad":1}\n', headers=NDJSON)
        assert r.status_code == 200
    (record,) = await consume(kafka.bootstrap, dlq, 1)
    assert record.value == b'{"bad":1}'
    assert dict(record.headers)["reason"] == b"missing_field"


async def test_cors_preflight_and_simple_request(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, cors_origins=("https://shop.example",))
    async with running_app(cfg) as (_, client):
        r = await client.options("/v1/events", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        r = await client.post("/post", content=b'{"event":"x"}', headers={"Origin": "https://shop.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        r = await client.options("/v1/events", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 400


async def test_status_and_openapi_cover_every_route(kafka, unique_topic):
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (app, client):
        r = await client.get("/status")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        spec = (await client.get("/openapi.json")).json()
        documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
        served = {(route.path, method) for route in app.routes for method in route.methods
                  if method != "HEAD"}
        assert documented == served
        app.state.lifecycle.draining = True
        r = await client.get("/status")
        assert r.status_code == 503 and r.json()["reasons"] == ["draining"]


async def test_status_is_503_while_kafka_is_absent_at_start(unique_topic):
    from harness.ports import free_port
    app = create_app(edge_config(f"127.0.0.1:{free_port()}", unique_topic))
    import httpx
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as client:
            r = await client.get("/status")
            assert r.status_code == 503 and "kafka_unavailable" in r.json()["reasons"]
            r = await client.post("/post", content=b'{"event":"x"}')
            assert r.status_code == 503 and r.json()["error"]["reason"] == "kafka_unavailable"
            assert r.headers["retry-after"] == "2"


async def test_a_broken_idempotent_producer_is_replaced(kafka, unique_topic):
    """After a broker restart aiokafka's idempotent producer can be left with
    OutOfOrderSequenceNumber for good; the edge must replace it and serve again by itself."""
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (app, client):
        sink = app.state.sink
        first = sink.producer
        assert (await client.post("/post", json={"event": "before"})).status_code == 200
        sink.suspect("OutOfOrderSequenceNumber: [Error 45] OutOfOrderSequenceNumber")
        assert (await client.post("/post", json={"event": "during"})).status_code == 503
        await wait_until_async(lambda: sink.up and sink.producer is not None and sink.producer is not first,
                               30, interval=0.05, what="a new producer up in place of the broken one")
        assert (await client.post("/post", json={"event": "after"})).status_code == 200
    records = await consume(kafka.bootstrap, unique_topic, 2)
    assert sorted(r.value for r in records) == [b'{"event":"after"}', b'{"event":"before"}']
