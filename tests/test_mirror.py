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
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced
from aiokafka.structs import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from harness.kafka import KafkaCluster, start_clusters
from service_kit.wait import wait_until_async
from mirror.assignments import Assignments
from mirror.central import Central
from mirror.committer import ExactlyOnceCommitter, PartitionBatch
from mirror.config import MirrorConfig
from mirror.convert import convert
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


def sample(worker: MirrorWorker, name: str, **labels: str) -> float:
    """A sample of the worker's metrics, read through prometheus_client's public registry API."""
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


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
    assert sample(worker, "geo_mirror_transactions_total", region="eu", outcome="committed") > 0


async def test_new_topic_partition_and_settings_follow(clusters, make_worker) -> None:
    tag = uuid.uuid4().hex[:6]
    eu = clusters["eu"].bootstrap
    central = clusters["central"].bootstrap
    worker = await make_worker([f"grow-{tag}.*"])
    # the worker is running (its eu flow has synced topics once) before the topic exists
    await wait_until_async(lambda: worker.health()[1]["regions"]["eu"]["up"], 30, interval=0.05,
                           what="the eu flow up")
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

    async def retention_followed() -> bool:
        (resp,) = await central_admin.describe_configs([ConfigResource(
            ConfigResourceType.TOPIC, f"eu.{first}", configs={"retention.ms": None})])
        entry = resp.to_object()["resources"][0]["config_entries"][0]
        return entry["config_value"] == "123456789"

    try:
        await wait_until_async(retention_followed, 20, interval=0.3,
                               what=f"retention.ms of eu.{first} to follow the source topic")
    finally:
        await central_admin.close()
    assert new_topic_s < 20


async def test_topic_auto_created_while_partitions_are_being_assigned(clusters, make_worker) -> None:
    """Regression: a topic auto-created by a produce, discovered while the rebalance listener still
    assigns the partitions of the topic the mirror already runs with, is assigned and copied, and
    the source consumer's group coordination survives (aiokafka 0.14 used to lose it silently).

    The test holds a copy round open (as an in-flight central transaction would) until the first
    assignment waits for it, so that ``on_partitions_assigned`` is still running when the new
    topic is subscribed.
    """
    tag = uuid.uuid4().hex[:6]
    eu = clusters["eu"].bootstrap
    first, auto = f"auto-{tag}-a", f"auto-{tag}-b"
    await create_topic(eu, first, 1)
    worker = await make_worker([f"auto-{tag}-.*"])
    flow = worker.flow("eu")
    await wait_until_async(lambda: flow.assignments is not None, 30, interval=0, what="the flow's first run")
    assignments = flow.assignments
    assert assignments is not None
    async with assignments.round():  # the first assignment waits here
        await wait_until_async(lambda: TopicPartition(first, 0) in assignments.pending, 30,
                               interval=0.05, what="the first assignment waiting for the round")
        await produce(eu, auto, "eu", range(60))  # auto-creates the topic (3 partitions)
        await wait_until_async(lambda: auto in flow.status()["topics"], 30, interval=0.05,
                               what="the auto-created topic subscribed")
    records = await read_all(clusters["central"].bootstrap, f"eu.{auto}", 60, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(60))
    assert {f"{auto}-{p}" for p in range(3)} <= set(flow.status()["partitions"])
    assert flow.assignments is assignments, "the flow was rebuilt: group coordination had died"
    assert sample(worker, "geo_mirror_errors_total", region="eu", kind="GroupCoordinationLost") == 0

async def test_an_assignment_replaces_every_earlier_partition_state(clusters) -> None:
    """An assignment is the whole assignment. aiokafka 0.14 does not always revoke first (when
    the subscription changes while ``on_partitions_assigned`` runs, the next revocation names the
    assignment before that one): a partition of an interrupted assignment must not stay in the
    states, the lag gauge or the assigned-partitions gauge as if still owned."""
    topic = f"reassign-{uuid.uuid4().hex[:6]}"
    eu = clusters["eu"].bootstrap
    await create_topic(eu, topic, 3)
    async with assignments_of(clusters, "eu") as (assignments, metrics, consumer):
        p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
        consumer.assign([p0, p1, p2])
        await assignments.on_assigned([p0, p2])            # interrupted: no revocation follows
        metrics.records_behind.labels("eu", topic, "2").set(5)
        await assignments.on_assigned([p0, p1])
        assert assignments.partitions() == [p0, p1]
        assert all(assignments.ready(tp) is not None for tp in (p0, p1))
        assert assignments.ready(p2) is None
        assert metrics.registry.get_sample_value("geo_mirror_assigned_partitions", {"region": "eu"}) == 2
        assert metrics.registry.get_sample_value(
            "geo_mirror_records_behind", {"region": "eu", "topic": topic, "partition": "2"}) is None


async def test_every_assignment_fences_before_it_reads_the_position(clusters) -> None:
    """The position of a partition is read only after a new producer of its transactional id has
    fenced the previous one. Then a zombie (the previous owner, another worker or this one
    before the rebalance) cannot commit any more, and the position read right after a commit
    is that commit's, not the one before it (``commit_transaction`` returns before the
    transaction's offset commit is visible to an OffsetFetch)."""
    topic = f"fence-{uuid.uuid4().hex[:6]}"
    eu = clusters["eu"].bootstrap
    await create_topic(eu, topic, 1)
    tp = TopicPartition(topic, 0)
    tag = uuid.uuid4().hex[:8]
    async with assignments_of(clusters, "eu", tag) as (first, _, consumer_1), \
            assignments_of(clusters, "eu", tag) as (second, _, consumer_2):
        committer = ExactlyOnceCommitter(first.central, 15)
        consumer_1.assign([tp])
        consumer_2.assign([tp])
        await first.on_assigned([tp])
        for n in range(1, 21):          # commit, re-assign at once, read: 20 times
            state = first.ready(tp)
            assert state is not None
            batch = convert_batch(state, n)
            assert await committer.commit([batch]) == [None]
            first.committed(state, batch.next_offset)
            await first.on_assigned([tp])
            again = first.ready(tp)
            assert again is not None and again is not state
            assert again.next_offset == n, f"round {n}: read {again.next_offset}, committed {n}"
        zombie = first.ready(tp)
        assert zombie is not None
        await second.on_assigned([tp])                   # another worker takes the partition over
        taken = second.ready(tp)
        assert taken is not None and taken.next_offset == 20
        (error,) = await committer.commit([convert_batch(zombie, 21)])
        assert isinstance(error, (ProducerFenced, InvalidProducerEpoch)), repr(error)
        assert await committer.commit([convert_batch(taken, 21)]) == [None]
    records = await read_all(clusters["central"].bootstrap, f"eu.{topic}", 21, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(1, 22))   # the zombie's is not there


async def test_a_commit_is_never_refused_and_retried(clusters, caplog) -> None:
    """A round's transaction meets no refusal it causes itself: positions sent while the produce
    was in flight made the partition leader's verification of the produce fail (KIP-890), and
    the broker answered NOT_ENOUGH_REPLICAS, retried after a backoff, in about one transaction
    of ten (docs/mirror.md, "Where a commit's time goes"). 60 commits back to back, none retried."""
    topic = f"verify-{uuid.uuid4().hex[:6]}"
    await create_topic(clusters["eu"].bootstrap, topic, 1)
    tp = TopicPartition(topic, 0)
    caplog.set_level("WARNING", logger="aiokafka")
    async with assignments_of(clusters, "eu") as (assignments, _, consumer):
        committer = ExactlyOnceCommitter(assignments.central, 15)
        consumer.assign([tp])
        await assignments.on_assigned([tp])
        await wait_until_async(lambda: assignments.ready(tp) is not None, 30,
                               what="the partition initialised (a first start may need a repair)")
        for n in range(1, 61):
            state = assignments.ready(tp)
            assert state is not None
            batch = convert_batch(state, n)
            assert await committer.commit([batch]) == [None]
            assignments.committed(state, batch.next_offset)
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried == []
    records = await read_all(clusters["central"].bootstrap, f"eu.{topic}", 60, timeout=30)
    assert sorted(ids_of(records)) == sorted(f"eu-{i}" for i in range(1, 61))


def convert_batch(state, n: int) -> PartitionBatch:  # type: ignore[no-untyped-def]
    """Round ``n`` of the fencing test: source record ``n - 1`` as ``eu-{n}``."""
    record = ConsumerRecord(state.source.topic, state.source.partition, n - 1, int(time.time() * 1000),
                            0, None, f'{{"id":"eu-{n}"}}'.encode(), None, 0, 0,
                            [("event-id", f"eu-{n}".encode())])
    converted = convert([record], "eu", state.source, record.timestamp)
    return PartitionBatch(state.source, state.target, converted.records, n, state.producer)


@asynccontextmanager
async def assignments_of(clusters, region: str, tag: str | None = None):  # type: ignore[no-untyped-def]
    """An :class:`Assignments` of its own (and its central side and source consumer), driven by
    the test instead of a consumer group."""
    tag = tag or uuid.uuid4().hex[:8]
    config = MirrorConfig(central_bootstrap=clusters["central"].bootstrap,
                          positions_group=f"positions-{tag}", transactional_id_prefix=f"tx-{tag}")
    metrics = MirrorMetrics()
    central = Central(config, metrics)
    await central.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=clusters[region].bootstrap, enable_auto_commit=False,
                                auto_offset_reset="none")
    await consumer.start()
    assignments = Assignments(region, config, central, metrics, consumer)
    try:
        yield assignments, metrics, consumer
    finally:
        await assignments.close()
        await consumer.stop()
        await central.stop()

async def test_rebalances_while_a_round_collects_copy_nothing_twice(clusters, make_worker) -> None:
    """The hung-process duplicates, provoked on purpose: rounds collect for 4 s while records keep
    coming, and a second worker joins and leaves three times, so worker 1's group rebalances in
    the middle of its rounds and its assignments seek the partitions it keeps back to their
    central positions. Records a round is handed again must be taken once, and a position must be
    read only after fencing. (On the code before the fix this failed three runs out of three,
    with 114, 341 and 641 duplicates.)"""
    topic = f"midround-{uuid.uuid4().hex[:6]}"
    eu, central = clusters["eu"].bootstrap, clusters["central"].bootstrap
    await create_topic(eu, topic, 4)
    first = await make_worker([topic], transaction_interval_ms=4000)
    total = 6000
    stream = asyncio.create_task(produce(eu, topic, "eu", range(total), rate=250))
    await wait_until_async(lambda: sample(first, "geo_mirror_records_total", region="eu", topic=topic) > 0,
                           30, what="worker 1 copying")
    for _ in range(3):
        second = MirrorWorker(first.config, MirrorMetrics())
        await second.start()
        try:
            second.set_regions({"eu": eu})
            await wait_until_async(lambda: sample(second, "geo_mirror_records_total", region="eu",
                                                  topic=topic) > 0, 60, what="worker 2 copying its share")
        finally:
            await second.stop()
    await stream
    records = await read_all(central, f"eu.{topic}", total, timeout=90, settle=5)
    ids = ids_of(records)
    print("rebalances mid-round: records taken once though handed again:",
          sample(first, "geo_mirror_refetched_records_total", region="eu"))
    assert len(ids) == total and set(ids) == {f"eu-{i}" for i in range(total)}, \
        f"{len(ids)} records, {len(set(ids))} distinct"


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
        await wait_until_async(lambda: sample(worker, "geo_mirror_transactions_total", region="eu",
                                              outcome="aborted") >= 3, 30, what="3 aborted transactions")
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
    assert sample(worker, "geo_mirror_cycle_skipped_records_total", region="eu", topic=plain) == 5


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
