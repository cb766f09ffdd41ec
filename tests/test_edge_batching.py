"""The edge's own batching (edge/batching.py) against real Kafka: concurrent requests share
batches, and every acknowledged (partition, offset) is exactly where Kafka holds that event."""

from __future__ import annotations

import asyncio

from edge.testing import consume, edge_config, running_app


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
