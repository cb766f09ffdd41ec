"""The Kafka harness: clusters start, accept produces, restart with their data, and leave no JVM."""

from __future__ import annotations

import asyncio
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from harness.kafka import KAFKA_VERSION, KafkaCluster


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return got


def test_two_clusters_are_independent(kafka_factory, unique_topic) -> None:
    a, b = kafka_factory(2)
    assert a.bootstrap != b.bootstrap
    asyncio.run(_produce(a.bootstrap, unique_topic, [b"only-in-a"]))
    assert asyncio.run(_consume(a.bootstrap, unique_topic, 1)) == [b"only-in-a"]

    async def topics(bootstrap: str) -> set[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            return await consumer.topics()
        finally:
            await consumer.stop()

    assert unique_topic not in asyncio.run(topics(b.bootstrap))


def test_restart_keeps_data_and_ports(kafka_factory, unique_topic) -> None:
    (cluster,) = kafka_factory(1)
    port = cluster.port
    asyncio.run(_produce(cluster.bootstrap, unique_topic, [b"1", b"2"]))
    pid = cluster.pid
    cluster.kill()
    assert pid is not None and not _alive(pid)
    cluster.start()
    assert cluster.port == port
    asyncio.run(_produce(cluster.bootstrap, unique_topic, [b"3"]))
    assert sorted(asyncio.run(_consume(cluster.bootstrap, unique_topic, 3))) == [b"1", b"2", b"3"]


def test_stop_leaves_no_process(kafka_factory) -> None:
    (cluster,) = kafka_factory(1)
    pid = cluster.pid
    cluster.stop()
    assert pid is not None and not _alive(pid)
    assert not cluster.running
    assert "kafka" in (cluster.workdir / "server.properties").read_text()
    assert KAFKA_VERSION.startswith("4.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_is_a_context_manager(tmp_path, unique_topic) -> None:
    with KafkaCluster(tmp_path / "ctx") as cluster:
        asyncio.run(_produce(cluster.bootstrap, unique_topic, [b"x"]))
        pid = cluster.pid
    assert pid is not None and not _alive(pid)


def test_wan_listener_through_a_cuttable_proxy(kafka_factory, unique_topic) -> None:
    from harness.ports import free_port
    from harness.tcp_proxy import TcpProxy

    wan_port = free_port()
    proxy = TcpProxy("127.0.0.1", wan_port).start()
    try:
        (cluster,) = kafka_factory(1, wan_port=wan_port, wan_advertised=proxy.address)
        asyncio.run(_produce(proxy.address, unique_topic, [b"via-wan"]))
        assert proxy.connections > 0
        proxy.cut()

        async def blocked() -> bool:
            try:
                async with asyncio.timeout(5):
                    await _consume(proxy.address, unique_topic, 1)
            except TimeoutError:
                return True
            return False

        assert asyncio.run(blocked())
        proxy.restore()
        assert asyncio.run(_consume(proxy.address, unique_topic, 1)) == [b"via-wan"]
    finally:
        proxy.stop()


def test_pid_is_none_once_a_node_has_exited(kafka_factory) -> None:
    (cluster,) = kafka_factory(1)
    node = cluster.nodes[0]
    pid = node.pid
    assert pid is not None and cluster.pid == pid
    node.kill()
    assert node.pid is None and cluster.pid is None and node.returncode == -9
    assert not _alive(pid)


def test_three_brokers_replicate_and_ride_over_a_lost_leader(tmp_path, unique_topic) -> None:
    with KafkaCluster(tmp_path / "three", brokers=3) as cluster:
        assert len(cluster.bootstrap.split(",")) == 3 and len(set(cluster.pids)) == 3
        props = (cluster.nodes[0].workdir / "server.properties").read_text()
        for line in ("default.replication.factor=3", "min.insync.replicas=2",
                     "unclean.leader.election.enable=false", "transaction.state.log.min.isr=2"):
            assert line in props
        asyncio.run(_produce(cluster.bootstrap, unique_topic, [b"1"]))
        leader = cluster.leader(unique_topic, 0)
        cluster.node(leader).kill()
        assert cluster.node(leader).pid is None and len(cluster.pids) == 2
        # two of three replicas are the ISR minimum: acks=all still succeeds
        asyncio.run(_produce(cluster.bootstrap, unique_topic, [b"2"]))
        assert cluster.leader(unique_topic, 0) != leader
        assert (unique_topic, 0) in cluster.under_replicated()
        cluster.node(leader).start()
        cluster.wait_in_sync(90)
        assert cluster.under_replicated() == []
        assert sorted(asyncio.run(_consume(cluster.bootstrap, unique_topic, 2))) == [b"1", b"2"]
        # The nodes stop together: a majority shuts down on its SIGTERM (143). Stopped one by
        # one, the last voter waited 30 s for a quorum that was gone, then was killed (-9); a
        # node left without its quorum is now killed after a short grace instead, and nothing
        # acknowledged is lost by it: the restarted cluster still holds both records.
        codes = cluster.stop()
        assert codes.count(143) >= 2, codes
        assert cluster.pids == []
        cluster.start()
        assert sorted(asyncio.run(_consume(cluster.bootstrap, unique_topic, 2))) == [b"1", b"2"]
    assert cluster.pids == []


def test_a_cluster_restarts_with_a_new_object_on_the_same_directory(tmp_path, unique_topic) -> None:
    first = KafkaCluster(tmp_path / "again").start()
    asyncio.run(_produce(first.bootstrap, unique_topic, [b"kept"]))
    first.stop()
    second = KafkaCluster(tmp_path / "again", port=first.port, controller_port=first.controller_port)
    assert second.cluster_id == first.cluster_id
    with second:
        assert asyncio.run(_consume(second.bootstrap, unique_topic, 1)) == [b"kept"]
