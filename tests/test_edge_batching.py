"""The edge's own batching (edge/batching.py) against real Kafka: concurrent requests share
batches, and every acknowledged (partition, offset) is exactly where Kafka holds that event."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import orjson
from aiokafka.partitioner import murmur2
from hypothesis import given, strategies as st

from edge.batching import kafka_partition
from edge.testing import consume, edge_config, running_app
from test_mirror_helpers import create_topic


async def test_concurrent_requests_get_the_true_partition_and_offset_of_their_event(kafka, unique_topic):
    cfg = edge_config(kafka.bootstrap, unique_topic, topic_partitions=3)
    async with running_app(cfg) as (app, client):
        singles = [client.post("/post", json={"event": "s", "event_id": f"s-{i}", "user_id": f"u{i % 7}"})
                   for i in range(150)]
        batches = [client.post("/v1/events", content=b"\n".join(
            b'{"event":"b","event_id":"b-%d-%d","user_id":"u%d"}' % (j, k, k % 5) for k in range(40)),
            headers={"content-type": "application/x-ndjson"}) for j in range(5)]
        answers = await asyncio.gather(*singles, *batches)
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
        assert app.state.sink.pending == 0
    acked: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(answers[:150]):
        acked[f"s-{i}"] = (r.json()["partition"], r.json()["offset"])
    for r in answers[150:]:
        for res in r.json()["results"]:
            acked[res["event_id"]] = (res["partition"], res["offset"])
    assert len(acked) == 350
    records = await consume(kafka.bootstrap, unique_topic, 350)
    stored = {dict(rec.headers)["event-id"].decode(): (rec.partition, rec.offset) for rec in records}
    assert stored == acked
    # one user's events stay in one partition (key = user_id)
    by_user: dict[bytes, set[int]] = {}
    for rec in records:
        by_user.setdefault(rec.key, set()).add(rec.partition)
    assert all(len(parts) == 1 for parts in by_user.values())


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_of_a_key_matches_the_reference_murmur2(key: bytes, partitions: int) -> None:
    assert kafka_partition(key, partitions) == (murmur2(key) & 0x7FFFFFFF) % partitions


async def test_partition_of_a_key_matches_librdkafkas_java_compatible_partitioner(kafka, unique_topic):
    """kcat (librdkafka, ``partitioner=murmur2_random``: the Java client's rule) places the keys;
    the edge's choice must agree for every one of them."""
    await create_topic(kafka.bootstrap, unique_topic, partitions=6)
    keys = [f"user-{i}".encode() for i in range(200)] + [str(uuid.uuid4()).encode() for _ in range(100)]
    lines = b"".join(b"%s\t%d\n" % (key, i) for i, key in enumerate(keys))
    subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", unique_topic, "-K", "\t",
                    "-X", "partitioner=murmur2_random"], input=lines, check=True, timeout=60)
    records = await consume(kafka.bootstrap, unique_topic, len(keys))
    placed = {rec.key: rec.partition for rec in records}
    assert len(placed) == len(keys)
    assert {key: kafka_partition(key, 6) for key in keys} == placed


def test_a_batch_outcome_answers_from_what_kafka_said() -> None:
    """``/v1/events``'s answer from its per-event results: 200 when stored and nothing failed in
    Kafka, 503 (``kafka_timeout``) when Kafka failed any, 400 (``all_rejected``) when none was
    valid; each result at its element's index."""
    from edge import errors
    from edge.batching import Ack
    from edge.errors import EdgeError
    from edge.handlers import BatchOutcome

    def outcome(acks: list[Ack | EdgeError]) -> tuple[int, dict]:
        out = BatchOutcome(3)
        out.rejected(1, EdgeError(errors.MISSING_FIELD, "`event` is required"))
        out.produced(0, b"a")
        out.produced(2, b"b")
        out.stored(acks)
        status, body, ctype = out.answer()
        assert ctype == b"application/json"
        return status, orjson.loads(body)

    status, doc = outcome([Ack(4, 10), Ack(1, 7)])
    assert status == 200 and (doc["accepted"], doc["rejected"]) == (2, 1) and "error" not in doc
    assert [r["status"] for r in doc["results"]] == ["accepted", "rejected", "accepted"]
    assert doc["results"][2] == {"index": 2, "status": "accepted", "event_id": "b", "partition": 1, "offset": 7}
    status, doc = outcome([Ack(4, 10), EdgeError(errors.KAFKA_TIMEOUT, "no ack")])
    assert status == 503 and doc["error"]["reason"] == "kafka_timeout" and doc["accepted"] == 1
    assert doc["results"][2]["status"] == "failed" and doc["results"][2]["reason"] == "kafka_timeout"
    rejected_only = BatchOutcome(1)
    rejected_only.rejected(0, EdgeError(errors.INVALID_JSON, "x"))
    status, body, _ = rejected_only.answer()
    assert status == 400 and orjson.loads(body)["error"]["reason"] == "all_rejected"
