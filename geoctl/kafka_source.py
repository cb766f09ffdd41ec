"""What a Kafka cluster says about itself through its admin API: live brokers, under-replicated
partitions (in-sync replicas fewer than replicas), offline partitions (no leader)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from service_kit.kafka_security import PLAINTEXT, KafkaSecurity


@dataclass
class KafkaHealth:
    """One cluster's figures, or why they could not be read (``error``)."""

    bootstrap: str
    brokers: int = 0
    controller: int | None = None
    topics: int = 0
    partitions: int = 0
    under_replicated: int = 0
    offline: int = 0
    error: str = ""

    @property
    def reachable(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap, "reachable": self.reachable, "brokers": self.brokers,
                "controller": self.controller, "topics": self.topics, "partitions": self.partitions,
                "under_replicated_partitions": self.under_replicated,
                "offline_partitions": self.offline, "error": self.error or None}


def partition_figures(described: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(partitions, under-replicated, offline) of ``describe_topics``' answer."""
    partitions = under = offline = 0
    for topic in described:
        for p in topic.get("partitions") or []:
            partitions += 1
            if p.get("leader", -1) < 0:
                offline += 1
            if len(p.get("isr") or []) < len(p.get("replicas") or []):
                under += 1
    return partitions, under, offline


def describe_error(exc: BaseException) -> str:
    """One short line: ``KafkaConnectionError: Unable to bootstrap from 127.0.0.1:29092``."""
    name = type(exc).__name__
    text = str(exc)
    while text.startswith(f"{name}: "):  # aiokafka repeats its class name in the message
        text = text[len(name) + 2:]
    text = re.sub(r"\[\('([^']*)', (\d+), <AddressFamily\.\w+: \d+>\)\]", r"\1:\2", text)
    if isinstance(exc, asyncio.TimeoutError) and not text:
        text = "no answer in time"
    return f"{name}: {text}"[:200] if text else name


async def kafka_health(bootstrap: str, security: KafkaSecurity = PLAINTEXT, timeout: float = 6.0) -> KafkaHealth:
    """Ask the cluster at ``bootstrap``; never raises (an unreachable cluster is ``error``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    health = KafkaHealth(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                                client_id="geoctl", **security.client_kwargs())
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        health.brokers = len(cluster.get("brokers") or [])
        health.controller = cluster.get("controller_id")
        topics = await asyncio.wait_for(admin.list_topics(), timeout)
        described = await asyncio.wait_for(admin.describe_topics(topics), timeout) if topics else []
        health.topics = len(topics)
        health.partitions, health.under_replicated, health.offline = partition_figures(described)
    except Exception as exc:  # reported, never raised: an unreachable cluster is a finding
        health.error = describe_error(exc)
    finally:
        try:
            await asyncio.wait_for(admin.close(), 2.0)
        except Exception:
            pass
    return health


async def many(bootstraps: dict[str, str], security: KafkaSecurity = PLAINTEXT,
               timeout: float = 6.0) -> dict[str, KafkaHealth]:
    """``kafka_health`` of several clusters at once (name -> bootstrap)."""
    names = list(bootstraps)
    results = await asyncio.gather(*(kafka_health(bootstraps[n], security, timeout) for n in names))
    return dict(zip(names, results))


__all__ = ["KafkaHealth", "kafka_health", "many", "partition_figures"]
