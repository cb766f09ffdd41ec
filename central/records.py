"""Turns one mirrored Kafka record into a table row, or into a quarantine row with its reason.

Event time rule (clock-skew correction, as Segment/Snowplow do): when the event carries its own
``timestamp`` *and* the edge recorded a ``sent-at`` header, ``event_time = received_at −
(sent_at − timestamp)``, capped at ``received_at``; otherwise ``event_time = received_at``. The raw
client values are kept in ``client_ts`` and ``sent_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, Sequence

import orjson

REQUIRED_EVENT_HEADERS = ("event-id", "received-at", "region", "edge")
EXTRACTED_FIELDS = ("event", "os", "browser", "timestamp", "event_id", "sent_at", "user_id")
PREVIEW_BYTES = 4096


class RecordLike(Protocol):
    """What the loader reads of a consumed record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class KafkaRecord(NamedTuple):
    """A record built by hand (tests, benchmarks): the parts of a consumed record the loader uses."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Rejected(Exception):
    """Why a record cannot be loaded."""

    reason: str
    detail: str


def ch_time(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ClickHouse DateTime64(3) text (``seconds.mmm``)."""
    if ms is None:
        return None
    return f"{ms // 1000}.{ms % 1000:03d}"


def _headers(record: RecordLike) -> dict[str, str]:
    try:
        return {key: value.decode("utf-8", "replace") for key, value in record.headers or ()}
    except AttributeError:  # a value that is not bytes (hand-built records)
        return {key: value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
                for key, value in record.headers or ()}


def _int_header(headers: dict[str, str], name: str, required: bool) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        if required:
            raise Rejected("missing_header", f"header {name!r} missing")
        return None
    try:
        return int(raw)
    except ValueError:
        if required:
            raise Rejected("bad_header", f"header {name!r} is not an integer: {raw[:64]!r}") from None
        return None


def _client_ms(value: Any) -> int | None:
    """A client timestamp: ms since the epoch (number) or ISO 8601 text; None when unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return int(number * 1000) if number < 1e11 else int(number)  # seconds or ms
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def event_time(received_at: int, sent_at: int | None, client_ts: int | None) -> int:
    """The skew-corrected event time (see the module docstring)."""
    if sent_at is None or client_ts is None:
        return received_at
    return min(received_at, received_at - (sent_at - client_ts))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _check_size(record: RecordLike, max_bytes: int) -> bytes:
    if record.value is None:
        raise Rejected("empty", "record has no value")
    if len(record.value) > max_bytes:
        raise Rejected("too_large", f"{len(record.value)} bytes > limit {max_bytes}")
    return record.value


def _json_object(value: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise Rejected("not_an_object", f"JSON {type(doc).__name__}, expected an object")
    return doc


_EXTRACTED = frozenset(EXTRACTED_FIELDS)


def event_row(record: RecordLike, loaded_at: int, max_bytes: int) -> dict[str, Any]:
    """The ``events`` row for a mirrored event record; raises :class:`Rejected`."""
    headers = _headers(record)
    get = headers.get
    for name in REQUIRED_EVENT_HEADERS:
        if not get(name):
            raise Rejected("missing_header", f"header {name!r} missing")
    received_at = _int_header(headers, "received-at", True)
    assert received_at is not None
    doc = _json_object(_check_size(record, max_bytes))
    sent_at = _int_header(headers, "sent-at", False) if "sent-at" in headers else None
    timestamp = doc.get("timestamp")
    client_ts = _client_ms(timestamp) if timestamp is not None else None
    properties = {k: v for k, v in doc.items() if k not in _EXTRACTED}
    event, os_, browser = doc.get("event"), doc.get("os"), doc.get("browser")
    user = doc.get("user_id") or doc.get("anonymous_id")
    return {
        "event_id": headers["event-id"],
        "event": event if type(event) is str else _text(event),
        "os": os_ if type(os_) is str else _text(os_),
        "browser": browser if type(browser) is str else _text(browser),
        "country": get("country", ""),
        "region": headers["region"],
        "edge": headers["edge"],
        "user_id": user if type(user) is str else _text(user),
        "client_ip": get("client-ip", ""),
        "properties": orjson.dumps(properties).decode(),
        "client_ts": ch_time(client_ts),
        "sent_at": ch_time(sent_at),
        "received_at": ch_time(received_at),
        "event_time": ch_time(event_time(received_at, sent_at, client_ts)),
        "mirrored_at": ch_time(_int_header(headers, "mirrored-at", False)),
        "loaded_at": ch_time(loaded_at),
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "source_topic": get("mirror-source-topic", ""),
        "source_partition": _int_header(headers, "mirror-source-partition", False),
        "source_offset": _int_header(headers, "mirror-source-offset", False),
    }


def heartbeat_row(record: RecordLike, loaded_at: int, max_bytes: int) -> dict[str, Any]:
    """The ``heartbeats`` row for ``{"region": .., "ts": ms}``; raises :class:`Rejected`."""
    doc = _json_object(_check_size(record, max_bytes))
    region, ts = doc.get("region"), doc.get("ts")
    if not isinstance(region, str) or not region:
        raise Rejected("bad_heartbeat", "heartbeat without a region string")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        raise Rejected("bad_heartbeat", "heartbeat without an integer ts (ms)")
    headers = _headers(record)
    return {"region": region, "ts": ch_time(ts),
            "mirrored_at": ch_time(_int_header(headers, "mirrored-at", False)),
            "loaded_at": ch_time(loaded_at), "topic": record.topic,
            "partition": record.partition, "offset": record.offset}


def quarantine_row(record: RecordLike, reason: str, detail: str, loaded_at: int) -> dict[str, Any]:
    """The ``quarantine`` row for a record that could not be loaded."""
    value = record.value or b""
    return {"reason": reason, "detail": detail[:1000], "topic": record.topic,
            "partition": record.partition, "offset": record.offset,
            "kafka_ts": ch_time(record.timestamp) if record.timestamp and record.timestamp > 0 else None,
            "headers": orjson.dumps(_headers(record)).decode(), "value_size": len(value),
            "value_preview": value[:PREVIEW_BYTES].decode("utf-8", "replace"),
            "loaded_at": ch_time(loaded_at)}
