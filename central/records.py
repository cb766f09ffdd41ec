"""Turns one mirrored Kafka record into a table row, or into a quarantine row with its reason.

Rows are tuples in the column order of :mod:`central.schema` (``EVENT_COLUMNS``,
``HEARTBEAT_COLUMNS``, ``QUARANTINE_COLUMNS``); times are DateTime64(3) values as seconds (float).

Event time rule (clock-skew correction, as Segment/Snowplow do): when the event carries its own
``timestamp`` *and* the edge recorded a ``sent-at`` header, ``event_time = received_at −
(sent_at − timestamp)``, capped at ``received_at``; otherwise ``event_time = received_at``. The raw
client values are kept in ``client_ts`` and ``sent_at``.

Header names and the user rule (``user_id`` = the record's key user, :func:`service_kit.contract.user_key`,
as the edge keys it) come from :mod:`service_kit.contract`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, Sequence

import orjson

from service_kit.contract import (CLIENT_IP, COUNTRY, EDGE, EVENT_ID, FIELD_EVENT_ID, FIELD_SENT_AT, FIELD_USER_ID,
                                  MIRROR_SOURCE_OFFSET, MIRROR_SOURCE_PARTITION, MIRROR_SOURCE_TOPIC, MIRRORED_AT,
                                  RECEIVED_AT, REGION, REQUIRED_EVENT_HEADERS, SENT_AT, user_key)

#: JSON fields with a column of their own, left out of ``properties`` (a ``user_id`` that is not a
#: string is kept there: the key rule does not take it, so it has no column).
EXTRACTED_FIELDS = ("event", "os", "browser", "timestamp", FIELD_EVENT_ID, FIELD_SENT_AT, FIELD_USER_ID)
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


Row = tuple[Any, ...]
#: 2299-12-31 23:59:59.999 UTC in ms, the end of ClickHouse's DateTime64 range.
MAX_MS = 10_413_791_999_999
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


def ch_time(ms: int | None) -> float | None:
    """Milliseconds since the epoch as a ClickHouse DateTime64(3) value: seconds, a float whose
    shortest JSON form is the exact ``seconds.mmm`` (for every ms below 10**15; times are
    kept in ``[0, MAX_MS]``)."""
    return None if ms is None else ms / 1000


def _headers(record: RecordLike) -> dict[str, str]:
    try:
        return {key: value.decode("utf-8", "replace") for key, value in record.headers or ()}
    except AttributeError:  # a value that is not bytes (hand-built records)
        return {key: value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
                for key, value in record.headers or ()}


def _int_header(headers: dict[str, str], name: str, required: bool, high: int = MAX_MS) -> int | None:
    """An integer header in ``[0, high]`` (default: a time in DateTime64's range); an absent or
    unusable one is ``None``, or :class:`Rejected` when ``required``. Out-of-range values never
    reach an insert, where one bad value would fail the whole batch."""
    raw = headers.get(name)
    if raw is None or raw == "":
        if required:
            raise Rejected("missing_header", f"header {name!r} missing")
        return None
    try:
        value = int(raw) if len(raw) <= 24 else -1
    except ValueError:
        value = -1
    if 0 <= value <= high:
        return value
    if required:
        raise Rejected("bad_header", f"header {name!r} is not an integer in [0, {high}]: {raw[:64]!r}")
    return None


def _client_ms(value: Any) -> int | None:
    """A client timestamp: ms since the epoch (number: seconds below 1e11, else ms) or ISO 8601
    text; None when unusable or outside 1970..2299 (DateTime64's range)."""
    ms: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not 0 <= value <= MAX_MS:
            return None
        ms = int(value * 1000) if value < 1e11 else int(value)
    elif isinstance(value, str) and value:
        try:
            ms = int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            return None
    return ms if ms is not None and 0 <= ms <= MAX_MS else None


def event_time(received_at: int, sent_at: int | None, client_ts: int | None) -> int:
    """The skew-corrected event time (see the module docstring); ``received_at`` when the
    correction would put it before 1970."""
    if sent_at is None or client_ts is None:
        return received_at
    corrected = min(received_at, received_at - (sent_at - client_ts))
    return corrected if corrected >= 0 else received_at


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
_EXTRACTED_BUT_USER = _EXTRACTED - {FIELD_USER_ID}


def event_row(record: RecordLike, loaded_at: int, max_bytes: int) -> Row:
    """The ``events`` row (``EVENT_COLUMNS`` order) for a mirrored event record; raises :class:`Rejected`."""
    headers = _headers(record)
    get = headers.get
    for name in REQUIRED_EVENT_HEADERS:
        if not get(name):
            raise Rejected("missing_header", f"header {name!r} missing")
    received_at = _int_header(headers, RECEIVED_AT, True)
    assert received_at is not None
    doc = _json_object(_check_size(record, max_bytes))
    sent_at = _int_header(headers, SENT_AT, False) if SENT_AT in headers else None
    timestamp = doc.get("timestamp")
    client_ts = _client_ms(timestamp) if timestamp is not None else None
    given_user = doc.get(FIELD_USER_ID)
    extracted = _EXTRACTED if given_user is None or type(given_user) is str else _EXTRACTED_BUT_USER
    properties = {k: v for k, v in doc.items() if k not in extracted}
    event, os_, browser = doc.get("event"), doc.get("os"), doc.get("browser")
    mirrored_at = _int_header(headers, MIRRORED_AT, False) if MIRRORED_AT in headers else None
    return (
        headers[EVENT_ID],
        event if type(event) is str else _text(event),
        os_ if type(os_) is str else _text(os_),
        browser if type(browser) is str else _text(browser),
        get(COUNTRY, ""),
        headers[REGION],
        headers[EDGE],
        user_key(doc) or "",
        get(CLIENT_IP, ""),
        orjson.dumps(properties).decode(),
        ch_time(client_ts),
        ch_time(sent_at),
        ch_time(received_at),
        ch_time(event_time(received_at, sent_at, client_ts)),
        ch_time(mirrored_at),
        ch_time(loaded_at),
        record.topic,
        record.partition,
        record.offset,
        get(MIRROR_SOURCE_TOPIC, ""),
        _int_header(headers, MIRROR_SOURCE_PARTITION, False, UINT32_MAX),
        _int_header(headers, MIRROR_SOURCE_OFFSET, False, UINT64_MAX),
    )


def heartbeat_row(record: RecordLike, loaded_at: int, max_bytes: int) -> Row:
    """The ``heartbeats`` row (``HEARTBEAT_COLUMNS`` order) for ``{"region": .., "ts": ms}``;
    raises :class:`Rejected`."""
    doc = _json_object(_check_size(record, max_bytes))
    region, ts = doc.get("region"), doc.get("ts")
    if not isinstance(region, str) or not region:
        raise Rejected("bad_heartbeat", "heartbeat without a region string")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts <= MAX_MS:
        raise Rejected("bad_heartbeat", "heartbeat without an integer ts (ms, up to 2299)")
    headers = _headers(record)
    return (region, ch_time(ts), ch_time(_int_header(headers, MIRRORED_AT, False)), ch_time(loaded_at),
            record.topic, record.partition, record.offset)


def quarantine_row(record: RecordLike, reason: str, detail: str, loaded_at: int) -> Row:
    """The ``quarantine`` row (``QUARANTINE_COLUMNS`` order) for a record that could not be loaded."""
    value = record.value or b""
    return (reason, detail[:1000], record.topic, record.partition, record.offset,
            ch_time(record.timestamp) if record.timestamp and 0 < record.timestamp <= MAX_MS else None,
            orjson.dumps(_headers(record)).decode(), len(value),
            value[:PREVIEW_BYTES].decode("utf-8", "replace"), ch_time(loaded_at))
