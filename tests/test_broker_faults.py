"""Broker faults on clusters of three: the eu region's Kafka and the central Kafka have three
brokers each (replication factor 3, ``min.insync.replicas`` 2, no unclean leader election), us
keeps one. Under the fault suite's load (``fault_kit``), one broker at a time is killed, hung or
restarted; every acknowledged event must be in the table exactly once and the central stream
must hold no mirror duplicate. Prints a line of figures per fault, like ``test_faults.py``.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from fault_kit import RESULTS, Fault, hung, run_fault
from geostack.stack import LocalStack
from harness.kafka import KafkaCluster, KafkaNode

pytestmark = [pytest.mark.slow, pytest.mark.faults]

BROKERS = {"eu": 3, "ru": 3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("broker-fault-stack"), brokers=BROKERS) as local:
        yield local
    print("\nbroker fault summary:")
    for row in RESULTS:
        if "broker" in str(row["fault"]):
            print(orjson.dumps(row).decode())


def back_in_sync(cluster: KafkaCluster, node: KafkaNode):  # type: ignore[no-untyped-def]
    def undo() -> None:
        node.start()
        cluster.wait_in_sync(120)
    return undo


def test_the_stack_runs_three_broker_clusters(stack: LocalStack) -> None:
    for region, n in BROKERS.items():
        cluster = stack.kafka[region]
        assert len(cluster.pids) == n
        assert cluster.under_replicated() == []
    topics = asyncio.run(_replication(stack.kafka["eu"], "events"))
    assert topics and all(len(replicas) == 3 for replicas in topics), topics
    mirrored = asyncio.run(_replication(stack.kafka["ru"], "eu.events"))
    assert mirrored and all(len(replicas) == 3 for replicas in mirrored), mirrored
    # Prometheus finds every broker's exporter (observability/prometheus.yml's file_sd)
    targets = orjson.loads((stack.workdir / "prometheus" / "kafka-targets.json").read_bytes())
    assert {t["labels"]["region"]: len(t["targets"]) for t in targets} == {"eu": 3, "us": 1, "ru": 3}


def test_kill_9_of_one_regional_broker(stack: LocalStack) -> None:
    """The leader of ``events``/0 in eu dies: its partitions move after its session expires,
    the edges' idempotent acks=all producers wait for the new leaders (within their produce
    timeout), so no client sees even a retried 503."""
    cluster = stack.kafka["eu"]
    node = cluster.node(cluster.leader("events", 0))
    run_fault(stack, Fault(f"regional broker eu-{node.node_id} kill -9 (leader of events-0)",
                           inject=node.kill, undo=back_in_sync(cluster, node), hold=15,
                           zero_client_errors=True))


def test_kill_9_of_the_central_transaction_coordinator(stack: LocalStack) -> None:
    """The central broker that coordinates most of the mirror's transactions dies mid-round:
    its __transaction_state partitions move, the open transactions are completed or aborted by
    the new coordinator, the mirror's producers are fenced and re-created where needed."""
    cluster = stack.kafka["ru"]
    node_id = asyncio.run(_busiest_transaction_coordinator(cluster))
    node = cluster.node(node_id)
    run_fault(stack, Fault(f"central broker ru-{node_id} kill -9 (the mirror's transaction coordinator)",
                           inject=node.kill, undo=back_in_sync(cluster, node), hold=15))


def test_rolling_restart_of_a_region(stack: LocalStack) -> None:
    """Each eu broker in turn: SIGTERM (a controlled shutdown hands its leaderships over first),
    start, and every replica back in the ISR before the next one."""
    cluster = stack.kafka["eu"]

    def roll() -> None:
        for node in cluster.nodes:
            node.stop()
            node.start()
            cluster.wait_in_sync(120)

    run_fault(stack, Fault("regional brokers eu rolling restart (3 of 3, in sync between)",
                           inject=roll, zero_client_errors=True, load_seconds=90))


def test_one_regional_broker_hung(stack: LocalStack) -> None:
    """A hung broker keeps its sockets open: the controller fences it after its session, its
    followers leave the ISR after replica.lag.time.max.ms; produces to partitions it leads or
    follows in the ISR wait until then, and some exceed the edges' produce timeout (retried 503)."""
    cluster = stack.kafka["eu"]
    node = cluster.node(cluster.leader("events", 1))
    fault = hung(f"regional broker eu-{node.node_id}", lambda: node.pid)
    wake = fault.undo
    assert wake is not None

    def wake_and_sync() -> None:
        wake()
        cluster.wait_in_sync(120)

    fault.undo = wake_and_sync
    run_fault(stack, fault)


async def _replication(cluster: KafkaCluster, topic: str) -> list[list[int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.internal_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [p["replicas"] for p in described["partitions"]]


async def _busiest_transaction_coordinator(cluster: KafkaCluster) -> int:
    """The node coordinating most of the mirror's transactional ids (``geo-mirror-<region>-
    <topic>-<partition>``; transactions exist for every copied partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.internal_bootstrap)
    await admin.start()
    try:
        counts: dict[int, int] = {}
        for region, partitions in (("eu", 6), ("us", 6)):
            for p in range(partitions):
                node = await admin.find_coordinator(f"geo-mirror-{region}-events-{p}", coordinator_type=1)
                counts[node] = counts.get(node, 0) + 1
    finally:
        await admin.close()
    return max(counts, key=lambda n: counts[n])
