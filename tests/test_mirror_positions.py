"""Committed positions read across central broker restarts. Right after a restart the group
coordinator is still loading; its OffsetFetch answer then carries a group-level error and no
partitions, which aiokafka's ``AIOKafkaConsumer.committed`` returns as None ("never committed").
A mirror that believed it sought the partition to its beginning and copied it all again. With the
consumer's read in ``Positions.read`` this test failed 2 runs of 2 (353 of 707 and 283 of 679
reads said None); ``Positions.read`` must give the committed position every time."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer, TopicPartition

from mirror.positions import Positions
from service_kit.wait import wait_until_async


async def test_a_committed_position_is_never_read_as_none_across_restarts(kafka_factory) -> None:
    (central,) = await asyncio.to_thread(kafka_factory, 1, names=["central"])
    group, tp = f"positions-{uuid.uuid4().hex[:6]}", TopicPartition("eu.events", 0)
    producer = AIOKafkaProducer(bootstrap_servers=central.bootstrap, transactional_id=f"tx-{group}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(tp.topic, b"{}", partition=0)
            await producer.send_offsets_to_transaction({tp: 42}, group)
    finally:
        await producer.stop()

    reads: list[int | None] = []
    restarts_done = asyncio.Event()

    async def keep_reading() -> None:
        while not restarts_done.is_set():
            positions = Positions(central.bootstrap, group, timeout_s=5)
            try:
                await positions.start()
                while not restarts_done.is_set():
                    reads.append(await positions.read(tp))
            except Exception:  # noqa: BLE001 - the broker is down: no answer is no read
                await asyncio.sleep(0.05)  # a retry pause while the broker is away
            finally:
                try:
                    await positions.stop()
                except Exception:  # noqa: BLE001
                    pass

    reader = asyncio.create_task(keep_reading())
    for _ in range(3):
        await asyncio.to_thread(central.stop)
        count = len(reads)
        await asyncio.to_thread(central.start, False)   # no readiness wait: read while it loads
        await wait_until_async(lambda: len(reads) >= count + 50, 60, interval=0.01,
                               what="reads after the restart")
        await asyncio.to_thread(central.wait_ready)
    restarts_done.set()
    await reader
    assert reads and set(reads) == {42}, f"{reads.count(None)} of {len(reads)} reads said never committed"
