"""Topic sync (MirrorMaker 2's ``MirrorSourceConnector`` job): which source topics one region
mirrors, their central targets created, grown and configured, and the subscription that follows.

Only the discovery loop calls :meth:`TopicSync.sync`; the subscription is this class's alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient

from mirror.central import Central
from mirror.config import MirrorConfig
from mirror.metrics import MirrorMetrics
from mirror.topics import describe_topics

log = logging.getLogger(__name__)


class TopicSync:
    """Discovers a region's selected topics, ensures their targets, (re)subscribes the consumer."""

    def __init__(self, region: str, config: MirrorConfig, central: Central, metrics: MirrorMetrics,
                 known_regions: Callable[[], Iterable[str]]) -> None:
        self.region = region
        self.cfg = config
        self.central = central
        self.metrics = metrics
        self._known_regions = known_regions
        self.subscribed: frozenset[str] = frozenset()

    async def sync(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer,
                   listener: ConsumerRebalanceListener) -> None:
        """One discovery round. Raises when the source does not answer; a central failure keeps
        what is subscribed (its topics stay copied; new ones wait for the next round)."""
        async with asyncio.timeout(self.cfg.operation_timeout_s):
            names = await admin.list_topics()
            known = list(self._known_regions())
            selected = [t for t in names if self.cfg.topic_filter.selects(t, known)]
            info = await describe_topics(admin, selected)
        ensured: set[str] = set()
        for topic, topic_info in info.items():
            target = self.cfg.policy.target_topic(self.region, topic)
            try:
                await self.central.topics.ensure(target, topic_info.partitions, topic_info.configs)
                ensured.add(topic)
                self.metrics.set_central_up(True)
            except Exception as exc:  # noqa: BLE001 - central trouble: keep what is subscribed
                self.metrics.errors.labels(self.region, "central_topic").inc()
                self.metrics.set_central_up(False)
                log.warning("cannot ensure target topic", extra={
                    "region": self.region, "topic": target, "error": repr(exc)})
        wanted = frozenset((self.subscribed & set(info)) | ensured)
        if wanted != self.subscribed:
            log.info("subscribing", extra={"region": self.region, "topics": sorted(wanted)})
            if wanted:
                consumer.subscribe(topics=sorted(wanted), listener=listener)
            else:
                consumer.unsubscribe()
            self.subscribed = wanted
        self.metrics.topics.labels(self.region).set(len(self.subscribed))

    def reset(self) -> None:
        """The consumer is gone: nothing is subscribed."""
        self.subscribed = frozenset()
