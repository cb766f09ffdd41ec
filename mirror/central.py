"""The central side shared by every region's flow: admin client, target topics, committed
positions and a factory for (transactional) producers."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from mirror.config import MirrorConfig
from mirror.budget import TransactionBudget
from mirror.metrics import MirrorMetrics
from mirror.positions import Positions
from mirror.topics import CentralTopics
from service_kit.aiokafka_internals import wait_for_producer_id
from service_kit.bounded import settle

log = logging.getLogger(__name__)


class Central:
    """Connections to the central cluster."""

    def __init__(self, config: MirrorConfig, metrics: MirrorMetrics) -> None:
        self.config = config
        self.metrics = metrics
        timeout_ms = int(config.operation_timeout_s * 1000)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=config.central_bootstrap,
                                         client_id=f"{config.client_id}-admin",
                                         request_timeout_ms=timeout_ms,
                                         **config.central_security.client_kwargs())
        self.topics = CentralTopics(self.admin, config.replication_factor, config.operation_timeout_s)
        #: shared by every region's rounds (exactly once; at least once commits no transactions)
        self.budget = TransactionBudget(config.max_transactions_per_s if config.exactly_once else 0)
        self.positions = Positions(config.central_bootstrap, config.positions_group,
                                   config.operation_timeout_s, client_id=f"{config.client_id}-positions",
                                   security=config.central_security)
        self._started = False

    async def start(self) -> None:
        """Connect (raises when the central cluster does not answer within the timeout)."""
        await asyncio.wait_for(self.admin.start(), self.config.operation_timeout_s)
        await self.positions.start()
        self._started = True
        self.metrics.set_central_up(True)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for closing in (self.positions.stop(), self.admin.close()):
            try:
                await asyncio.wait_for(closing, self.config.operation_timeout_s)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                log.warning("central close failed", extra={"error": repr(exc)})

    async def start_producer(self, transactional_id: str | None) -> AIOKafkaProducer:
        """A started producer; a transactional one has its id initialised, which fences (and
        aborts the open transaction of) any earlier producer with the same id."""
        cfg = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.central_bootstrap,
            client_id=f"{cfg.client_id}-{transactional_id or 'alo'}",
            acks="all", enable_idempotence=True,
            transactional_id=transactional_id,
            transaction_timeout_ms=cfg.transaction_timeout_ms,
            compression_type=cfg.compression,
            max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024,
            linger_ms=0, retry_backoff_ms=10,  # batches are built whole (send_batch): no wait
            request_timeout_ms=int(cfg.operation_timeout_s * 1000),
            **cfg.central_security.client_kwargs(),
        )
        try:
            async with asyncio.timeout(cfg.operation_timeout_s):
                await producer.start()
                if transactional_id is not None:
                    # aiokafka initialises the producer id lazily; wait for InitProducerId now so
                    # that fencing has happened before positions are read.
                    await wait_for_producer_id(producer)
        except BaseException:
            await _stop_quietly(producer, cfg.operation_timeout_s)
            raise
        return producer


async def _stop_quietly(producer: AIOKafkaProducer, timeout: float) -> None:
    await settle(producer.stop(), timeout, "stop central producer")


stop_producer = _stop_quietly
