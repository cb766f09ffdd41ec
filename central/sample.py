"""Realistic mirrored records (as the edge + mirror write them) for tests and benchmarks."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from service_kit.contract import (CLIENT_IP, COUNTRY, EDGE, EVENT_ID, MIRROR_SOURCE_OFFSET, MIRROR_SOURCE_PARTITION,
                                  MIRROR_SOURCE_REGION, MIRROR_SOURCE_TOPIC, MIRRORED_AT, RECEIVED_AT, REGION,
                                  SENT_AT)
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity

EVENTS = ("page_view", "click", "signup", "purchase", "search", "logout")
OSES = ("Android", "iOS", "Windows", "macOS", "Linux")
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung")
COUNTRIES = ("DE", "FR", "GB", "US", "BR", "JP", "RU", "IN")


@dataclass(frozen=True)
class Outgoing:
    """A record to produce: topic, key, value, headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def event_headers(event_id: str, region: str, received_at: int, *, sent_at: int | None = None,
                  country: str | None = "DE", edge: str = "edge-1", source_offset: int = 0,
                  mirrored_at: int | None = None) -> list[tuple[str, bytes]]:
    """The edge headers plus the mirror's provenance headers."""
    headers = {EVENT_ID: event_id, RECEIVED_AT: str(received_at), REGION: region, EDGE: edge,
               CLIENT_IP: "203.0.113.7"}
    if country:
        headers[COUNTRY] = country
    if sent_at is not None:
        headers[SENT_AT] = str(sent_at)
    headers.update({MIRROR_SOURCE_REGION: region, MIRROR_SOURCE_TOPIC: "events",
                    MIRROR_SOURCE_PARTITION: "0", MIRROR_SOURCE_OFFSET: str(source_offset),
                    MIRRORED_AT: str(mirrored_at if mirrored_at is not None else received_at + 5)})
    return [(k, v.encode()) for k, v in headers.items()]


def random_event(region: str, topic: str, rng: random.Random, now_ms: int | None = None,
                 index: int = 0) -> Outgoing:
    """A plausible event: a UUIDv7-like id, a user, an event name, os, browser, a few properties."""
    now_ms = now_ms or int(time.time() * 1000)
    event_id = str(uuid.uuid4())
    user = f"user-{rng.randrange(10_000)}"
    ts = now_ms - rng.randrange(60_000)
    doc = {"event": rng.choice(EVENTS), "os": rng.choice(OSES), "browser": rng.choice(BROWSERS),
           "user_id": user, "timestamp": ts, "url": f"https://shop.example/p/{rng.randrange(500)}",
           "amount": rng.randrange(10_000) / 100}
    headers = event_headers(event_id, region, now_ms, sent_at=ts + rng.randrange(1000),
                            country=rng.choice(COUNTRIES), source_offset=index)
    return Outgoing(topic, user.encode(), orjson.dumps(doc), headers)


async def produce(bootstrap: str, records: Iterable[Outgoing], *, transactional_id: str | None = None,
                  per_transaction: int = 500, abort: bool = False,
                  security: KafkaSecurity = PLAINTEXT) -> int:
    """Produce ``records`` in transactions of ``per_transaction`` (aborted when ``abort``)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                transactional_id=transactional_id or f"central-test-{uuid.uuid4().hex}",
                                linger_ms=5, max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024,
                                **security.client_kwargs())
    await producer.start()
    count = 0
    try:
        pending: list[Outgoing] = []

        async def send(chunk: Sequence[Outgoing]) -> None:
            await producer.begin_transaction()
            futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in chunk]
            for f in futures:
                await f
            if abort:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()

        for record in records:
            pending.append(record)
            count += 1
            if len(pending) >= per_transaction:
                await send(pending)
                pending = []
        if pending:
            await send(pending)
    finally:
        await producer.stop()
    return count
