"""The record contract (service_kit/contract.py): what the edge writes is what the mirror, geo-central
and the stream audit read, and geo-central applies the edge's user-key rule."""

from __future__ import annotations

import string
import time
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.records import KafkaRecord, Rejected, event_row
from central.schema import EVENT_COLUMNS
from edge.enrich import Enricher, RequestContext, event_id_and_key
from edge.testing import consume, edge_config, running_app
from geostack.stream_audit import StreamTally, source_position
from mirror.policy import H_MIRRORED_AT, H_OFFSET, H_PARTITION, H_REGION, H_TOPIC, is_mirrored_record
from service_kit import contract

RECEIVED_AT = 1_700_000_010_000
FULL_CONTEXT = RequestContext(received_at=str(RECEIVED_AT).encode(), client_ip=b"203.0.113.7", country=b"FR",
                              sent_at=b"1700000009000", idempotency_key=None, source=b"web")


def mirrored(headers: list[tuple[str, bytes]], region: str = "eu", partition: int = 3, offset: int = 41,
             mirrored_at: int = RECEIVED_AT + 5) -> list[tuple[str, bytes]]:
    """The headers a mirrored record carries: the edge's, then the provenance headers under the
    names mirror/flow.py takes from mirror.policy."""
    return [*headers, (H_REGION, region.encode()), (H_TOPIC, b"events"), (H_PARTITION, str(partition).encode()),
            (H_OFFSET, str(offset).encode()), (H_MIRRORED_AT, str(mirrored_at).encode())]


def edge_record(doc: dict, ctx: RequestContext = FULL_CONTEXT) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the record the edge writes for ``doc``."""
    event_id, key = event_id_and_key(doc, ctx.idempotency_key)
    return key, orjson.dumps(doc), Enricher("eu", "edge-7").headers(doc, ctx, event_id)


def central_row(value: bytes, headers: list[tuple[str, bytes]]) -> dict:
    record = KafkaRecord("eu.events", 3, 9, RECEIVED_AT, value, mirrored(headers))
    return dict(zip(EVENT_COLUMNS, event_row(record, RECEIVED_AT + 10, 1 << 20), strict=True))


# (doc, the user both sides must settle on; None: the edge keys by the event id, central stores "")
TRICKY_USERS = [
    ({"user_id": "u1"}, "u1"),
    ({"user_id": "u1", "anonymous_id": "a1"}, "u1"),
    ({"user_id": "", "anonymous_id": "a1"}, "a1"),
    ({"user_id": 123, "anonymous_id": "a1"}, "a1"),
    ({"user_id": 123}, None),
    ({"user_id": ["u1"], "anonymous_id": "a1"}, "a1"),
    ({"user_id": ["u1"]}, None),
    ({"user_id": {"id": "u1"}}, None),
    ({"user_id": True, "anonymous_id": "a1"}, "a1"),
    ({"user_id": 0, "anonymous_id": 7}, None),
    ({"user_id": None, "anonymous_id": "a1"}, "a1"),
    ({"anonymous_id": "a1"}, "a1"),
    ({"anonymous_id": ""}, None),
    ({"anonymous_id": 42}, None),
    ({"user_id": "", "anonymous_id": ""}, None),
    ({}, None),
    ({"user_id": "ü-€-1"}, "ü-€-1"),
    ({"user_id": " "}, " "),
]


@pytest.mark.parametrize(("fields", "user"), TRICKY_USERS, ids=lambda v: orjson.dumps(v).decode())
def test_edge_key_and_central_user_id_agree(fields: dict, user: str | None) -> None:
    doc = {"event": "click", "event_id": "e-1", **fields}
    key, value, headers = edge_record(doc)
    assert contract.user_key(doc) == user
    assert key == (b"e-1" if user is None else user.encode())
    row = central_row(value, headers)
    assert row["user_id"] == ("" if user is None else user)
    assert row["event_id"] == "e-1"


def test_a_user_id_the_key_rule_refuses_is_kept_in_properties() -> None:
    """A non-string user_id has no column any more: it must not vanish from the row."""
    for given_user in (123, ["u1"], {"id": "u1"}, False, 0):
        doc = {"event": "click", "user_id": given_user, "anonymous_id": "a1", "button": "buy"}
        row = central_row(*edge_record(doc)[1:])
        assert row["user_id"] == "a1"
        assert orjson.loads(row["properties"]) == {"user_id": given_user, "anonymous_id": "a1", "button": "buy"}
    for string_user in ("u1", ""):
        row = central_row(*edge_record({"event": "click", "user_id": string_user, "button": "buy"})[1:])
        assert orjson.loads(row["properties"]) == {"button": "buy"}


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3),
                           max_leaves=5)
user_values = json_values | st.sampled_from(["", "u", "0", " "]) | st.text(string.printable, max_size=12)


@settings(max_examples=300, deadline=None)
@given(doc=st.fixed_dictionaries({}, optional={"user_id": user_values, "anonymous_id": user_values,
                                               "x": json_values}))
def test_edge_key_and_central_user_id_agree_for_any_doc(doc: dict) -> None:
    doc = {"event": "e", "event_id": "the-event", **doc}
    key, value, headers = edge_record(doc)
    row = central_row(value, headers)
    if key == b"the-event":  # keyed by the event id: no user
        assert row["user_id"] == "" and contract.user_key(doc) is None
    else:
        assert row["user_id"].encode() == key


def test_every_header_the_edge_writes_is_a_contract_name_and_central_reads_them() -> None:
    doc = {"event": "click", "event_id": "e-9", "user_id": "u1", "timestamp": 1_700_000_008_000}
    _, value, headers = edge_record(doc)
    written = [name for name, _ in headers]
    assert sorted(written) == sorted(contract.EDGE_HEADERS)  # a full context: every optional header too
    row = central_row(value, headers)
    assert (row["event_id"], row["region"], row["edge"]) == ("e-9", "eu", "edge-7")
    assert (row["country"], row["client_ip"]) == ("FR", "203.0.113.7")
    assert row["received_at"] == RECEIVED_AT / 1000 and row["sent_at"] == 1_700_000_009.0
    assert row["event_time"] == (RECEIVED_AT - 1000) / 1000  # skew-corrected from the sent-at header
    # the provenance headers the mirror writes are the ones central reads
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("events", 3, 41)
    assert row["mirrored_at"] == (RECEIVED_AT + 5) / 1000


def test_the_headers_central_requires_are_the_ones_the_edge_always_writes() -> None:
    minimal = RequestContext(received_at=b"1700000010000", client_ip=None, country=None, sent_at=None,
                             idempotency_key=None)
    _, value, headers = edge_record({"event": "click"}, minimal)
    assert [name for name, _ in headers] == list(contract.REQUIRED_EVENT_HEADERS)
    assert central_row(value, headers)["user_id"] == ""
    for dropped in range(len(headers)):
        rest = headers[:dropped] + headers[dropped + 1:]
        with pytest.raises(Rejected) as rejected:
            central_row(value, rest)
        assert rejected.value.reason == "missing_header"
        assert headers[dropped][0] in rejected.value.detail


def test_mirror_provenance_names_are_the_contracts() -> None:
    assert (H_REGION, H_TOPIC, H_PARTITION, H_OFFSET, H_MIRRORED_AT) == contract.PROVENANCE_HEADERS
    _, _, headers = edge_record({"event": "click"})
    assert not is_mirrored_record(headers)  # the edge never writes a provenance header
    assert not set(contract.EDGE_HEADERS) & set(contract.PROVENANCE_HEADERS)
    assert is_mirrored_record(mirrored(headers))


def test_stream_audit_reads_the_mirrors_provenance_headers() -> None:
    def record(event_id: str, offset: int) -> tuple[bytes, list[tuple[str, bytes]]]:
        doc = {"event": "click", "event_id": event_id, "run_id": "r1"}
        _, value, headers = edge_record(doc)
        return value, mirrored(headers, region="us", partition=2, offset=offset)

    value, headers = record("e-1", 10)
    assert source_position(headers) == (b"us", b"2", b"10")
    assert source_position(edge_record({"event": "click"})[2]) == (b"", b"", b"")  # not mirrored
    tally = StreamTally("r1")
    tally.add(value, headers)
    tally.add(value, headers)            # the same source record copied twice: a mirror duplicate
    tally.add(*record("e-1", 11))        # the same event id at another source offset: a client retry
    tally.add(*record("e-2", 12))
    tally.add(b'{"event_id":"e-3","run_id":"other"}', headers)  # another run: ignored
    tally.add(b"not json", headers)
    assert tally.audit().as_dict() == {"central_stream_records": 4, "central_stream_event_ids": 2,
                                       "mirror_duplicates": 1, "client_retry_copies": 1}


async def test_records_the_running_edge_writes_load_in_central_with_the_same_user(kafka, unique_topic):
    """Through the real edge (HTTP in, Kafka out): keys, headers and central's rows agree."""
    docs = [{"event": "e", "event_id": f"id-{i}", **fields} for i, (fields, _) in enumerate(TRICKY_USERS)]
    async with running_app(edge_config(kafka.bootstrap, unique_topic)) as (_, client):
        r = await client.post("/v1/events", json=docs, headers={"CF-IPCountry": "DE"})
        assert r.status_code == 200 and r.json()["accepted"] == len(docs), r.text
    records = await consume(kafka.bootstrap, unique_topic, len(docs))
    expected = {f"id-{i}": user for i, (_, user) in enumerate(TRICKY_USERS)}
    for rec in records:
        assert {name for name, _ in rec.headers} <= set(contract.EDGE_HEADERS)
        row = central_row(rec.value, list(rec.headers))
        user = expected.pop(row["event_id"])
        assert rec.key == (row["event_id"].encode() if user is None else user.encode())
        assert row["user_id"] == ("" if user is None else user)
        assert (row["region"], row["edge"], row["country"]) == ("test", "edge-t1", "DE")
    assert not expected


async def test_stream_audit_since_a_time_reads_only_records_stamped_after_it(kafka) -> None:
    """``audit_stream(since_ms=...)`` starts each partition at the first record stamped at or after
    the time (what the fault suite passes: one run after another on one stack); records of the
    same run stamped before it are not read, a partition with nothing after it is skipped."""
    from aiokafka import AIOKafkaProducer

    from geostack.stream_audit import audit_stream
    from test_mirror_helpers import create_topic

    topic = f"audit{uuid.uuid4().hex[:8]}.events"
    await create_topic(kafka.bootstrap, topic, 2)
    since = int(time.time() * 1000) - 600_000   # brokers refuse stamps far in the future
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for i, (partition, stamp) in enumerate([(0, since - 10), (0, since), (0, since + 5),
                                                (1, since - 20)]):
            doc = {"event": "view", "event_id": f"e{i}", "run_id": topic}
            await producer.send_and_wait(topic, orjson.dumps(doc), partition=partition, timestamp_ms=stamp,
                                         headers=mirrored([], offset=i))
    finally:
        await producer.stop()
    everything = await audit_stream(kafka.bootstrap, topic, timeout=60)
    assert everything.records == 4
    recent = await audit_stream(kafka.bootstrap, topic, timeout=60, since_ms=since)
    assert (recent.records, recent.event_ids, recent.mirror_duplicates) == (2, 2, 0)
