"""Target topics on the central cluster: created on demand with the source's partition count,
grown when the source grows, and the settings that matter kept in sync."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError

log = logging.getLogger(__name__)

#: Topic settings copied from source to target (only those set explicitly on the source topic).
MANAGED_CONFIGS = ("retention.ms", "retention.bytes", "cleanup.policy", "compression.type",
                   "max.message.bytes")
_DYNAMIC_TOPIC_CONFIG = 1
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicInfo:
    """A topic's partition count and its explicitly set managed settings."""

    partitions: int
    configs: dict[str, str]


async def describe_topics(admin: AIOKafkaAdminClient, topics: Iterable[str],
                          with_configs: bool = True) -> dict[str, TopicInfo]:
    """Partition counts (and managed settings) of existing ``topics``.

    Only call it with topics known to exist: a metadata request may auto-create a missing one.
    """
    names = sorted(set(topics))
    if not names:
        return {}
    partitions: dict[str, int] = {}
    for desc in await admin.describe_topics(names):
        if desc["error_code"] == 0 and desc["partitions"]:
            partitions[desc["topic"]] = len(desc["partitions"])
    configs: dict[str, dict[str, str]] = {name: {} for name in partitions}
    if with_configs and partitions:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name,
                                    configs={k: None for k in MANAGED_CONFIGS})
                     for name in partitions]
        for response in await admin.describe_configs(resources):
            for res in response.to_object()["resources"]:
                if res["error_code"] != 0 or res["resource_name"] not in configs:
                    continue
                configs[res["resource_name"]] = {
                    e["config_names"]: e["config_value"] for e in res["config_entries"]
                    if e["config_source"] == _DYNAMIC_TOPIC_CONFIG and e["config_value"] is not None
                }
    return {name: TopicInfo(count, configs[name]) for name, count in partitions.items()}


class CentralTopics:
    """Creates, grows and configures target topics; remembers what it has ensured."""

    def __init__(self, admin: AIOKafkaAdminClient, replication_factor: int = 1,
                 timeout_s: float = 15.0) -> None:
        self._admin = admin
        self._rf = replication_factor
        self._timeout = timeout_s
        self._partitions: dict[str, int] = {}
        self._configs: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()

    def partitions(self, topic: str) -> int:
        """Partitions known to exist on ``topic`` (0 when not ensured yet)."""
        return self._partitions.get(topic, 0)

    async def ensure(self, topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
        """Make ``topic`` exist with at least ``partitions`` partitions (and ``configs`` if given)."""
        async with self._lock, asyncio.timeout(self._timeout):
            if self._partitions.get(topic, 0) < partitions:
                await self._ensure_partitions(topic, partitions, configs or {})
            if configs is not None and self._configs.get(topic) != configs:
                await self._sync_configs(topic, configs)

    async def _ensure_partitions(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        current = await self._current_partitions(topic)
        if current == 0:
            result = (await self._admin.create_topics(
                [NewTopic(topic, partitions, self._rf, topic_configs=configs)])).to_object()
            err = result["topic_errors"][0]
            if err["error_code"] == 0:
                log.info("created target topic", extra={"topic": topic, "partitions": partitions})
                self._partitions[topic] = partitions
                self._configs[topic] = dict(configs)
                return
            if err["error_code"] != _TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"create topic {topic}: {err['error_message']} ({err['error_code']})")
            current = await self._current_partitions(topic)
        if current < partitions:
            try:  # aiokafka raises the topic's error code as an exception
                await self._admin.create_partitions({topic: NewPartitions(total_count=partitions)})
            except InvalidPartitionsError:
                # Another worker created or grew it meanwhile (our metadata read was behind).
                current = await self._current_partitions(topic)
                if current < partitions:
                    raise
            else:
                log.info("grew target topic", extra={"topic": topic, "partitions": partitions})
                current = max(partitions, await self._current_partitions(topic))
        self._partitions[topic] = current

    async def _current_partitions(self, topic: str) -> int:
        if topic not in await self._admin.list_topics():
            return 0
        info = await describe_topics(self._admin, [topic], with_configs=False)
        return info[topic].partitions if topic in info else 0

    async def _sync_configs(self, topic: str, configs: dict[str, str]) -> None:
        current = (await describe_topics(self._admin, [topic])).get(topic)
        if current is not None and current.configs != configs:
            # AlterConfigs replaces the topic's whole dynamic config: send every managed setting.
            responses = await self._admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs=dict(configs))])
            for response in responses:
                for res in response.to_object()["resources"]:
                    if res["error_code"] != 0:
                        raise RuntimeError(f"alter configs of {topic}: {res['error_message']}")
            log.info("synced target topic settings", extra={"topic": topic, "configs": configs})
        self._configs[topic] = dict(configs)
