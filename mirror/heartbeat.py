"""Heartbeats: one record a second into a region's ``heartbeats`` topic, mirrored like any topic,
so that the central side measures replication latency and notices a silent region.

Needs write access to that one topic on the source cluster (or run an emitter in the region
and turn this off with ``--no-heartbeats``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mirror.backoff import Backoff
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)
_TOPIC_ALREADY_EXISTS = 36


async def ensure_heartbeat_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    """Create the one-partition heartbeat topic when missing."""
    if topic in await admin.list_topics():
        return
    # aiokafka's CreateTopics cannot ask for the broker's default replication factor (v4+)
    brokers = len((await admin.describe_cluster())["brokers"])
    result = (await admin.create_topics([NewTopic(topic, 1, min(3, max(1, brokers)))])).to_object()
    code = result["topic_errors"][0]["error_code"]
    if code not in (0, _TOPIC_ALREADY_EXISTS):
        raise RuntimeError(f"create {topic}: error {code}")


async def emit_heartbeats(region: str, bootstrap: str, topic: str, interval_s: float,
                          should_emit: Callable[[], bool], timeout_s: float = 10.0,
                          security: KafkaSecurity = PLAINTEXT) -> None:
    """Send ``{"region": ..., "ts": ms}`` keyed by region every ``interval_s`` while
    ``should_emit()`` (only the worker that copies the heartbeat partition emits). Runs until
    cancelled; retries with backoff when the region does not answer."""
    backoff = Backoff(1.0, 30.0)
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    client_id=f"geo-mirror-heartbeat-{region}",
                                    request_timeout_ms=int(timeout_s * 1000),
                                    **security.client_kwargs())
        try:
            await asyncio.wait_for(producer.start(), timeout_s)
            while True:
                if should_emit():
                    value = orjson.dumps({"region": region, "ts": int(time.time() * 1000)})
                    await asyncio.wait_for(producer.send_and_wait(topic, value, key=region.encode(),
                                                                  partition=0), timeout_s)
                    backoff.reset()
                await asyncio.sleep(interval_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a region outage must not end the emitter
            log.warning("heartbeat failed", extra={"region": region, "error": repr(exc)})
            await asyncio.sleep(backoff.next())
        finally:
            try:
                await asyncio.wait_for(producer.stop(), timeout_s)
            except Exception:  # noqa: BLE001
                pass
