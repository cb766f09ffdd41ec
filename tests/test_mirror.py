"""The mirror against real Kafka: two regional clusters and a central one.

Events arrive exactly once, in per-partition order, with key, value, headers, timestamp,
partition and provenance; new topics and partitions are picked up within seconds; cycles are
refused; at-least-once mode copies everything too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from harness.kafka import KafkaCluster, start_clusters
from mirror.config import MirrorConfig
from mirror.flow import PartitionState
from mirror.metrics import MirrorMetrics
from mirror.policy import ReplicationPolicy, TopicFilter, is_mirrored_record
from mirror.regions import parse_region_flags
from mirror.worker import MirrorWorker
from test_mirror_helpers import (committed_position, create_topic, grow_topic, ids_of, produce,
                                 read_all)


# ---------------------------------------------------------------- policy (no Kafka)
def test_naming_and_filter() -> None:
    policy = ReplicationPolicy()
    assert policy.target_topic("eu", "events") == "eu.events"
    assert ReplicationPolicy(separator="_").target_topic("eu", "events") == "eu_events"
    assert ReplicationPolicy(identity=True).target_topic("eu", "events") == "events"
    f = TopicFilter(policy=policy)
    regions = ["eu", "us"]
    assert f.selects("events", regions) and f.selects("heartbeats", regions)
    for internal in ("__consumer_offsets", "__transaction_state", "app-internal", "x.internal"):
        assert not f.selects(internal, regions)
    assert not f.selects("us.events", regions)          # already a mirror: cycle stopped by name
    assert f.selects("useless", regions)                # prefix needs the separator
    narrow = TopicFilter(include=[r"events.*"], exclude=[r".*\.dlq"], policy=policy)
    assert narrow.selects("events", regions) and not narrow.selects("events.dlq", regions)
    assert not narrow.selects("other", regions)
    assert is_mirrored_record([("mirror-source-region", b"eu")])
    assert not is_mirrored_record([("region", b"eu")]) and not is_mirrored_record(None)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="bad include regex"):
        TopicFilter(include=["("])
    with pytest.raises(ValueError, match="NAME=HOST:PORT"):
        parse_region_flags(["eu"])
    with pytest.raises(ValueError, match="bootstrap"):
        parse_region_flags(["eu=nohostport"])
    with pytest.raises(ValueError, match="twice"):
        parse_region_flags(["eu=a:1", "eu=b:2"])
    assert parse_region_flags(["eu=127.0.0.1:1", "us=127.0.0.1:2"]) == {
        "eu": "127.0.0.1:1", "us": "127.0.0.1:2"}


# ---------------------------------------------------------------- real Kafka
@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, KafkaCluster]]:
    """eu, us and central, shared by this module's tests (each uses its own topics and groups)."""
    started = start_clusters(3, tmp_path_factory.mktemp("mirror"), names=["eu", "us", "central"])
    yield dict(zip(["eu", "us", "central"], started))
    for cluster in started:
        cluster.stop()


@pytest.fixture
async def make_worker(clusters: dict[str, KafkaCluster]) -> AsyncIterator:
    """Start in-process workers with a unique group/prefix; all stopped at teardown."""
    workers: list[MirrorWorker] = []

    async def make(include: list[str], **overrides: object) -> MirrorWorker:
        tag = uuid.uuid4().hex[:8]
        policy = overrides.pop("policy", ReplicationPolicy())
        config = MirrorConfig(
            central_bootstrap=clusters["central"].bootstrap, policy=policy,  # type: ignore[arg-type]
            topic_filter=TopicFilter(include=include, policy=policy),  # type: ignore[arg-type]
            source_group=f"mirror-{tag}", positions_group=f"positions-{tag}",
            transactional_id_prefix=f"tx-{tag}", refresh_interval_s=0.5,
            session_timeout_ms=6000, **overrides)  # type: ignore[arg-type]
        worker = MirrorWorker(config, MirrorMetrics())
        await worker.start()
        workers.append(worker)
        worker.set_regions({"eu": clusters["eu"].bootstrap, "us": clusters["us"].bootstrap})
        return worker

    yield make
    for worker in workers:
        await worker.stop()


async def test_exactly_once_with_fidelity_and_provenance(clusters, make_worker) -> None:
    topic = f"events-{uuid.uuid4().hex[:6]}"
    for region in ("eu", "us"):
        await create_topic(clusters[region].bootstrap, topic, 3)
    before = int(time.time() * 1000)
    await asyncio.gather(*(produce(clusters[r].bootstrap, topic, r, range(400),
                                   headers=[("country", b"DE")]) for r in ("eu", "us")))
    worker = await make_worker([topic, "heartbeats"])
    central = clusters["central"].bootstrap

    for region in ("eu", "us"):
        records = await read_all(central, f"{region}.{topic}", 400)
        ids = ids_of(records)
        assert len(ids) == 400 and set(ids) == {f"{region}-{i}" for i in range(400)}, \
            f"{region}: {len(ids)} records, {len(set(ids))} distinct"
        by_source_partition: dict[int, list[int]] = defaultdict(list)
        by_key: dict[bytes, list[int]] = defaultdict(list)
        for r in records:
            h = dict(r.headers)
            assert h["mirror-source-region"] == region.encode()
            assert h["mirror-source-topic"] == topic.encode()
            assert int(h["mirror-source-partition"]) == r.partition      # partition kept
            assert h["country"] == b"DE" and h["event-id"].startswith(region.encode())
            assert int(h["mirrored-at"]) >= r.timestamp >= before          # timestamp kept
            assert r.key is not None and r.key.startswith(b"user-")
            by_source_partition[r.partition].append(int(h["mirror-source-offset"]))
            by_key[r.key].append(int(r.value.split(b'"n":')[1].rstrip(b"}")))
        for offsets in by_source_partition.values():
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        for numbers in by_key.values():
            assert numbers == sorted(numbers)                                # per-key order
    # heartbeats are emitted and mirrored like any topic
    beats = await read_all(central, "eu.heartbeats", 2, timeout=30, settle=0)
    assert beats and b'"region":"eu"' in beats[0].value
    ok, details = worker.health()
    assert ok and details["regions"]["eu"]["up"] and details["regions"]["us"]["up"]
    assert worker.metrics.transactions.labels("eu", "committed")._value.get() > 0


async def test_new_topic_partition_and_settings_follow(clusters, make_worker) -> None:
    tag = uuid.uuid4().hex[:6]
    eu = clusters["eu"].bootstrap
    central = clusters["central"].bootstrap
    await make_worker([f"grow-{tag}.*"])
    await asyncio.sleep(1)  # the worker is running before the topic exists
    first = f"grow-{tag}-a"
    await create_topic(eu, first, 2)
    await produce(eu, first, "eu", range(50), partitions=2)
    started = time.monotonic()
    records = await read_all(central, f"eu.{first}", 50, timeout=20, settle=0)
    assert len(records) >= 50, f"new topic not mirrored within 20 s ({len(records)} records)"
    new_topic_s = time.monotonic() - started

    await grow_topic(eu, first, 4)
    await produce(eu, first, "eu", range(50, 90), partitions=4)
    records = await read_all(central, f"eu.{first}", 90, timeout=20)
    ids = ids_of(records)
    assert sorted(ids) == sorted(f"eu-{i}" for i in range(90))
    assert {r.partition for r in records} == {0, 1, 2, 3}                  # partition 3 -> 3
    for r in records:
        assert int(dict(r.headers)["mirror-source-partition"]) == r.partition

    admin = AIOKafkaAdminClient(bootstrap_servers=eu)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, first,
                                                  configs={"retention.ms": "123456789"})])
    finally:
        await admin.close()
    central_admin = AIOKafkaAdminClient(bootstrap_servers=central)
    await central_admin.start()
    try:
        async with asyncio.timeout(20):
            while True:
                (resp,) = await central_admin.describe_configs([ConfigResource(
                    ConfigResourceType.TOPIC, f"eu.{first}", configs={"retention.ms": None})])
                entry = resp.to_object()["resources"][0]["config_entries"][0]
                if entry["config_value"] == "123456789":
                    break
                await asyncio.sleep(0.3)
    finally:
        await central_admin.close()
    assert new_topic_s < 20


async def test_topic_auto_created_while_partitions_are_being_assigned(clusters, make_worker) -> None:
    """Regression: a topic auto-created by a produce, discovered while the rebalance listener still
    assigns the partitions of the topic the mirror already runs with, is assigned and copied, and
    the source consumer's group coordination survives (aiokafka 0.14 used to lose it silently).

    The test holds the flow's lock (as an in-flight central transaction would) from the moment
    the consumer prepared its first join (its initial revocation needs the lock too), so that the
    first ``on_partitions_assigned`` is still running when the new topic is subscribed.
    """
    tag = uuid.uuid4().hex[:6]
    eu = clusters["eu"].bootstrap
    first, auto = f"auto-{tag}-a", f"auto-{tag}-b"
    await create_topic(eu, first, 1)
    worker = await make_worker([f"auto-{tag}-.*"])
    flow = worker._flows["eu"][0]  # noqa: SLF001
    async with asyncio.timeout(30):
        while not getattr(getattr(flow._consumer, "_coordinator", None),  # noqa: SLF001
                          "_performed_join_prepare", False):
            await asyncio.sleep(0)  # the join itself needs broker round trips: cannot be missed
    async with flow._lock:  # noqa: SLF001 - the first assignment waits here
        async with asyncio.timeout(30):
            while flow._consumer is None or TopicPartition(first, 0) not in flow._consumer.assignment():  # noqa: SLF001
                await asyncio.sleep(0.05)
        consumer = flow._consumer  # noqa: SLF001
        await produce(eu, auto, "eu", range(60))  # auto-creates the topic (3 partitions)
        async with asyncio.timeout(30):
            while auto not in flow.status()["topics"]:
                await asyncio.sleep(0.05)
    records = await read_all(clusters["central"].bootstrap, f"eu.{auto}", 60, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(60))
    assert {f"{auto}-{p}" for p in range(3)} <= set(flow.status()["partitions"])
    assert flow._consumer is consumer, "the flow was rebuilt: group coordination had died"  # noqa: SLF001
    assert worker.metrics.errors.labels("eu", "GroupCoordinationLost")._value.get() == 0


async def test_an_assignment_replaces_every_earlier_partition_state(clusters, make_worker) -> None:
    """An assignment is the whole assignment. aiokafka 0.14 does not always revoke first (when
    the subscription changes while ``on_partitions_assigned`` runs, the next revocation names the
    assignment before that one): a partition left over from such an interrupted assignment must
    not stay in the flow, its lag gauge, its status or the assigned-partitions gauge as if owned.
    The left-over state is put in place here as aiokafka leaves it; then the consumer's real
    assignment is handed to the listener again and copying goes on exactly once."""
    topic = f"reassign-{uuid.uuid4().hex[:6]}"
    eu, central = clusters["eu"].bootstrap, clusters["central"].bootstrap
    await create_topic(eu, topic, 2)
    await produce(eu, topic, "eu", range(30))
    worker = await make_worker([topic])
    assert len(await read_all(central, f"eu.{topic}", 30, timeout=30, settle=0)) == 30
    flow = worker._flows["eu"][0]  # noqa: SLF001
    ghost = TopicPartition(f"{topic}-gone", 0)
    flow._parts[ghost] = PartitionState(ghost, TopicPartition(f"eu.{topic}-gone", 0))  # noqa: SLF001
    flow.metrics.records_behind.labels("eu", ghost.topic, "0").set(5)
    await flow.on_assigned(sorted(flow._consumer.assignment()))  # noqa: SLF001
    assigned = {f"{tp.topic}-{tp.partition}" for tp in flow._consumer.assignment()}  # noqa: SLF001
    assert set(flow.status()["partitions"]) == assigned == {f"{topic}-0", f"{topic}-1"}
    assert worker.metrics.partitions.labels("eu")._value.get() == 2
    assert ("eu", ghost.topic, "0") not in {
        tuple(s.labels.values()) for m in worker.metrics.records_behind.collect() for s in m.samples}
    await produce(eu, topic, "eu", range(30, 60))
    records = await read_all(central, f"eu.{topic}", 60, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(60))   # no loss, no duplicate


async def test_dead_group_coordination_rebuilds_the_flow(clusters, make_worker) -> None:
    """If the source consumer's group coordination task ever ends, the flow notices and rebuilds
    itself instead of keeping a frozen assignment (or mistaking it for its own cancellation)."""
    topic = f"coord-{uuid.uuid4().hex[:6]}"
    eu = clusters["eu"].bootstrap
    central = clusters["central"].bootstrap
    await create_topic(eu, topic, 2)
    await produce(eu, topic, "eu", range(20))
    worker = await make_worker([topic])
    assert len(await read_all(central, f"eu.{topic}", 20, timeout=30, settle=0)) >= 20
    flow = worker._flows["eu"][0]  # noqa: SLF001
    consumer = flow._consumer  # noqa: SLF001
    consumer._coordinator._coordination_task.cancel()  # noqa: SLF001 - the fault
    await produce(eu, topic, "eu", range(20, 50))
    records = await read_all(central, f"eu.{topic}", 50, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(50))   # no loss, no duplicate
    assert worker.metrics.errors.labels("eu", "GroupCoordinationLost")._value.get() >= 1
    assert flow._consumer is not consumer  # noqa: SLF001


async def test_a_batch_the_centre_refuses_is_never_committed_past(clusters, make_worker) -> None:
    """A batch the central cluster refuses for good must not let its transaction commit: aiokafka
    would commit the transaction (and the position after the batch) with the batch missing. Here
    the central topic refuses records older than an hour; one such record stops the partition
    (its transactions abort, the position stays) until the centre accepts it, then everything
    arrives exactly once."""
    tag = uuid.uuid4().hex[:6]
    topic, target = f"refuse-{tag}", f"eu.refuse-{tag}"
    eu, central = clusters["eu"].bootstrap, clusters["central"].bootstrap
    await create_topic(eu, topic, 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=central)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, 1, 1, topic_configs={
            "message.timestamp.before.max.ms": "3600000"})])
        await produce(eu, topic, "eu", range(20))
        worker = await make_worker([topic])
        assert len(await read_all(central, target, 20, timeout=30, settle=0)) == 20
        old = int(time.time() * 1000) - 2 * 86_400_000
        await produce(eu, topic, "eu", [20], timestamp_ms=old)   # refused centrally
        await produce(eu, topic, "eu", range(21, 41))
        aborted = worker.metrics.transactions.labels("eu", "aborted")
        async with asyncio.timeout(30):
            while aborted._value.get() < 3:
                await asyncio.sleep(0.1)
        assert sorted(ids_of(await read_all(central, target, 21, timeout=3))) == \
            sorted(f"eu-{i}" for i in range(20))
        assert await committed_position(central, worker.config.positions_group,
                                        TopicPartition(target, 0)) == 20
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, target, configs={
            "message.timestamp.before.max.ms": str(2**63 - 1)})])
    finally:
        await admin.close()
    records = await read_all(central, target, 41, timeout=60)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(41))  # no loss, no duplicate


async def test_cycles_are_refused(clusters, make_worker) -> None:
    tag = uuid.uuid4().hex[:6]
    eu = clusters["eu"].bootstrap
    central = clusters["central"].bootstrap
    plain, looped = f"cyc-{tag}", f"us.cyc-{tag}"
    await create_topic(eu, plain, 1)
    await create_topic(eu, looped, 1)
    # a record that already went through a mirror, in an ordinary-looking topic
    await produce(eu, plain, "eu", range(5), headers=[("mirror-source-region", b"us")])
    await produce(eu, plain, "eu", range(5, 10))
    await produce(eu, looped, "eu", range(10))
    worker = await make_worker([f"cyc-{tag}", f"us\\.cyc-{tag}"],
                               policy=ReplicationPolicy(identity=False))
    records = await read_all(central, f"eu.{plain}", 5, timeout=30)
    assert sorted(ids_of(records)) == [f"eu-{i}" for i in range(5, 10)]   # stopped by provenance
    admin = AIOKafkaAdminClient(bootstrap_servers=central)
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    assert f"eu.{looped}" not in names and f"eu.us.cyc-{tag}" not in names  # stopped by name
    assert worker.metrics.cycle_skipped.labels("eu", plain)._value.get() == 5


async def test_identity_naming_is_safe(clusters, make_worker) -> None:
    """With identity naming a mirrored topic keeps its name; provenance still stops a loop."""
    topic = f"ident-{uuid.uuid4().hex[:6]}"
    eu = clusters["eu"].bootstrap
    central = clusters["central"].bootstrap
    await create_topic(eu, topic, 2)
    await produce(eu, topic, "eu", range(30))
    await produce(eu, topic, "eu", range(30, 40), headers=[("mirror-source-region", b"us")])
    await make_worker([topic], policy=ReplicationPolicy(identity=True))
    records = await read_all(central, topic, 30, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(30))


async def test_at_least_once_mode_copies_everything(clusters, make_worker) -> None:
    topic = f"alo-{uuid.uuid4().hex[:6]}"
    us = clusters["us"].bootstrap
    await create_topic(us, topic, 3)
    await produce(us, topic, "us", range(300))
    await make_worker([topic], exactly_once=False)
    records = await read_all(clusters["central"].bootstrap, f"us.{topic}", 300)
    assert sorted(ids_of(records)) == sorted(f"us-{i}" for i in range(300))


def test_cli_rejects_bad_flags(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("geo-mirror"))
    result = subprocess.run([exe, "--region", "eu"], capture_output=True, text=True)
    assert result.returncode == 2 and "NAME=HOST:PORT" in result.stderr
    result = subprocess.run([exe, "--region", "eu=127.0.0.1:1", "--include", "("],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "bad include regex" in result.stderr
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    assert "GEO_MIRROR_CENTRAL" in help_text and "--at-least-once" in help_text
