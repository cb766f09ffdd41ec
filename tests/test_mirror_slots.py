"""Transaction slots (``mirror.slots``): the partition-to-slot rule and the assignor's dealing of
whole slots, pure. The fencing and the copy over slots are driven on real Kafka by
tests/test_mirror.py and the fault suite."""

from __future__ import annotations

from hypothesis import given, strategies as st

from aiokafka import TopicPartition

from mirror.slots import deal, slot_assignor, slot_of, transactional_id


def partitions(topics: dict[str, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]


def test_a_partition_has_one_slot_and_a_topic_uses_them_all_in_turn() -> None:
    slots = [slot_of("events", p, 4) for p in range(8)]
    assert sorted(slots[:4]) == [0, 1, 2, 3] and slots[:4] == slots[4:]
    assert slot_of("events", 3, 4) == slot_of("events", 3, 4)   # deterministic across processes
    assert transactional_id("geo-mirror", "eu", 1) == "geo-mirror-eu-slot-1"


@given(topics=st.dictionaries(st.sampled_from(["events", "heartbeats", "clicks", "orders"]),
                              st.integers(1, 12), min_size=1),
       members=st.integers(1, 5), slots=st.integers(1, 6))
def test_every_partition_dealt_once_and_slots_never_split(topics: dict[str, int], members: int,
                                                         slots: int) -> None:
    names = [f"member-{i}" for i in range(members)]
    dealt = deal(partitions(topics), {m: list(topics) for m in names}, slots)
    everything = [tp for tps in dealt.values() for tp in tps]
    assert sorted(everything) == sorted(partitions(topics))           # each once
    owner = {}
    for member, tps in dealt.items():
        for tp in tps:
            assert owner.setdefault(slot_of(tp.topic, tp.partition, slots), member) == member  # whole slots
    used = {slot_of(tp.topic, tp.partition, slots) for tp in everything}
    counts = sorted(len({slot_of(tp.topic, tp.partition, slots) for tp in tps}) for tps in dealt.values())
    assert counts[-1] - counts[0] <= 1 and sum(counts) == len(used)   # slots spread evenly


def test_a_member_not_yet_subscribed_to_a_topic_is_given_none_of_it() -> None:
    tps = partitions({"events": 4, "new": 2})
    dealt = deal(tps, {"a": ["events", "new"], "b": ["events"]}, 2)
    assert all(tp.topic == "events" for tp in dealt["b"])
    assert sorted(dealt["a"] + dealt["b"]) == sorted(tps)


def test_the_slot_count_is_in_the_protocol_name() -> None:
    assert slot_assignor(2).name == "geo-slots-2" and slot_assignor(4).name == "geo-slots-4"
