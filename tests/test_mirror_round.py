"""The copy round's pure parts, without Kafka: what a round takes from fetched records
(``mirror.rounds``) and how source records become central ones (``mirror.convert``)."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from mirror.convert import convert
from mirror.rounds import RoundRecords, not_yet_copied
from service_kit import contract

TP = TopicPartition("events", 2)


def record(offset: int, headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord:
    return ConsumerRecord("events", 2, offset, 1_700_000_000_000 + offset, 0, b"user-1",
                          f'{{"n":{offset}}}'.encode(), None, 6, 8, headers or [])


def test_records_fetched_again_after_a_seek_within_a_round_are_taken_once() -> None:
    """The hung-process duplicates: a round holds 10..14, a rebalance seeks the partition back to
    its central position 12, and the fetcher returns 12..17 in the same round."""
    taken = RoundRecords()
    taken.add(TP, [record(o) for o in range(10, 15)])
    taken.add(TP, [record(o) for o in range(12, 18)])
    (tp, records), = list(taken)
    assert tp == TP and [r.offset for r in records] == list(range(10, 18))
    assert taken.count == 8 and taken.refetched == 3
    assert [r.offset for r in not_yet_copied(records, 12)] == list(range(12, 18))


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20)), min_size=1, max_size=12))
def test_a_round_holds_each_offset_once_and_in_order(chunks: list[tuple[int, int]]) -> None:
    """Whatever the seeks (chunks starting anywhere), a partition's records of a round are
    strictly increasing and cover every offset any chunk brought after the first."""
    taken = RoundRecords()
    for start, length in chunks:
        taken.add(TP, [record(o) for o in range(start, start + length)])
    (_, records), = list(taken)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert taken.count == len(offsets)
    assert taken.count + taken.refetched == sum(length for _, length in chunks)


def test_not_yet_copied_keeps_records_from_the_position_on() -> None:
    records = [record(o) for o in range(5, 10)]
    assert not_yet_copied(records, None) is records
    assert not_yet_copied(records, 5) is records
    assert [r.offset for r in not_yet_copied(records, 8)] == [8, 9]
    assert not_yet_copied(records, 10) == []


def test_convert_keeps_the_record_and_adds_provenance() -> None:
    source = record(41, [("event-id", b"e-41")])
    ((key, value, timestamp, out_headers),) = convert([source], "eu", TP, 1_800_000_000_123).records
    assert (key, value, timestamp) == (source.key, source.value, source.timestamp)
    headers = dict(out_headers)
    assert headers["event-id"] == b"e-41"
    assert headers[contract.MIRROR_SOURCE_REGION] == b"eu"
    assert headers[contract.MIRROR_SOURCE_TOPIC] == b"events"
    assert headers[contract.MIRROR_SOURCE_PARTITION] == b"2"
    assert headers[contract.MIRROR_SOURCE_OFFSET] == b"41"
    assert headers[contract.MIRRORED_AT] == b"1800000000123"
    assert list(headers)[:1] == ["event-id"]     # the source's headers first, provenance after


def test_convert_skips_records_that_already_went_through_a_mirror() -> None:
    looped = record(1, [(contract.MIRROR_SOURCE_REGION, b"us")])
    result = convert([record(0), looped, record(2)], "eu", TP, 0)
    assert result.skipped == 1
    assert [dict(r[3])[contract.MIRROR_SOURCE_OFFSET] for r in result.records] == [b"0", b"2"]
    assert result.nbytes == sum(len(r.key or b"") + len(r.value or b"") for r in (record(0), record(2)))
