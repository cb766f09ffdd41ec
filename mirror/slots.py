"""Transaction slots: the unit of fencing and of assignment (MirrorMaker 2's tasks).

Every source partition of a region belongs to one of ``slots`` slots, by a fixed rule
(:func:`slot_of`); a slot has one transactional id, ``<prefix>-<region>-slot-<k>``, and a round
commits each slot's partitions in one transaction. Before, every partition had its own producer
and its own transaction: 14 transactions per round for the local stack's two regions, which is
what kept the rounds at 500 ms (docs/mirror.md, "Transaction rounds").

The source group hands out whole slots (:func:`slot_assignor`): the partitions of a slot always
go to the same worker, so the one producer that fenced the slot's id owns all of them. The slot
count is part of the assignor's protocol name (``geo-slots-<n>``): workers that disagree about
it — and would therefore fence different ids for one partition — cannot join one group (Kafka
answers INCONSISTENT_GROUP_PROTOCOL) instead of copying side by side unfenced.
"""

from __future__ import annotations

import collections
import zlib
from typing import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.structs import TopicPartition


def slot_of(topic: str, partition: int, slots: int) -> int:
    """The slot of a source partition: a topic's partitions are dealt over the slots in turn,
    starting at a slot fixed by the topic's name (so that single-partition topics spread)."""
    return (zlib.crc32(topic.encode()) + partition) % slots


def transactional_id(prefix: str, region: str, slot: int) -> str:
    return f"{prefix}-{region}-slot-{slot}"


def deal(partitions: Iterable[TopicPartition], subscriptions: Mapping[str, Iterable[str]],
         slots: int) -> dict[str, list[TopicPartition]]:
    """Whole slots to members (pure: the assignor's rule). The non-empty slots in order go to the
    members (sorted) in turn; a member is skipped for a slot with a topic it does not subscribe to
    yet (discovery runs on each worker on its own, so subscriptions differ for a moment). A slot
    that no member takes whole — no member subscribes to all its topics — goes partition by
    partition to a subscriber of each topic: split for that assignment, which costs the two
    owners fencing each other until the next rebalance, never safety."""
    subscribed = {m: set(topics) for m, topics in subscriptions.items()}
    ordered = sorted(subscribed)
    by_slot: dict[int, list[TopicPartition]] = collections.defaultdict(list)
    for tp in partitions:
        by_slot[slot_of(tp.topic, tp.partition, slots)].append(tp)
    dealt: dict[str, list[TopicPartition]] = {m: [] for m in ordered}
    turn = 0
    for slot in sorted(by_slot):
        tps = sorted(by_slot[slot])
        topics = {tp.topic for tp in tps}
        takers = [ordered[(turn + i) % len(ordered)] for i in range(len(ordered))]
        whole = next((m for m in takers if topics <= subscribed[m]), None)
        if whole is not None:
            dealt[whole].extend(tps)
        else:
            for tp in tps:
                taker = next((m for m in takers if tp.topic in subscribed[m]), None)
                if taker is not None:
                    dealt[taker].append(tp)
        turn += 1
    return dealt


def slot_assignor(slots: int) -> type[AbstractPartitionAssignor]:
    """An aiokafka partition assignor that hands out whole slots (see the module docstring)."""
    if slots < 1:
        raise ValueError("slots must be >= 1")

    class SlotAssignor(AbstractPartitionAssignor):
        name = f"geo-slots-{slots}"
        version = 0

        @classmethod
        def assign(cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata],
                   ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for meta in members.values() for t in meta.subscription})
            partitions = [TopicPartition(t, p) for t in topics for p in (cluster.partitions_for_topic(t) or ())]
            result = {}
            subscriptions = {m: meta.subscription for m, meta in members.items()}
            for member, tps in deal(partitions, subscriptions, slots).items():
                per_topic: dict[str, list[int]] = collections.defaultdict(list)
                for tp in tps:
                    per_topic[tp.topic].append(tp.partition)
                result[member] = ConsumerProtocolMemberAssignment(
                    cls.version, sorted((t, sorted(ps)) for t, ps in per_topic.items()), b"")
            return result

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return SlotAssignor
