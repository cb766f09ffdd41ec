"""Hypothesis on every edge parser: body decoding (identity, gzip, chunked, bombs), NDJSON
splitting, pixel query decoding, validation and structure limits, header enrichment (sent_at,
event id / key), write-key parsing and checking, trusted-proxy parsing. Each test prints one
summary line (``pytest -s``): examples tried and outcomes seen."""

from __future__ import annotations

import asyncio
import base64
import collections
import gzip
import ipaddress
import string
import urllib.parse
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import errors
from edge.auth import WriteKeyError, WriteKeys, parse_entries, presented_key
from edge.body import encoding_of, read_body
from edge.enrich import Enricher, ProxyTrust, RequestContext, country_of, event_id_and_key, sent_at_of
from edge.errors import EdgeError
from edge.handlers import BatchEvents, decode_pixel_query, pixel_key
from edge.limits import StructureLimits, check_headers
from edge.validation import check_default, parse_event

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


class Tally:
    """Counts outcomes of one property test and prints them at the end of the module."""

    all: dict[str, "Tally"] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: collections.Counter[str] = collections.Counter()
        Tally.all[name] = self

    def __call__(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def line(self) -> str:
        total = sum(self.counts.values())
        return f"fuzz {self.name}: {total} examples tried, outcomes {dict(self.counts.most_common())}"


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    for tally in Tally.all.values():
        print(tally.line())


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except EdgeError as exc:
        assert exc.reason in errors.STATUS_OF and 400 <= exc.status < 500
        return exc.reason, None


def _receive(chunks: list[bytes]):
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)
    return receive


body_tally = Tally("read_body")


@SETTINGS
@given(payload=st.binary(max_size=3000), gz=st.booleans(), corrupt=st.booleans(),
       cuts=st.lists(st.integers(0, 3000), max_size=4), limit=st.integers(1, 4000))
def test_read_body_roundtrip_and_limits(payload, gz, corrupt, cuts, limit):
    data = gzip.compress(payload) if gz else payload
    if gz and corrupt and data:
        data = data[: len(data) // 2]
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    outcome, body = _outcome(lambda: asyncio.run(read_body(_receive(chunks), limit, b"gzip" if gz else b"", None)))
    body_tally(outcome)
    if outcome == "ok":
        assert body == payload and len(body) <= limit
    elif outcome == "body_too_large":
        assert len(payload) > limit or len(data) > limit
    else:
        assert outcome == "invalid_gzip" and gz and (corrupt or not payload)


encoding_tally = Tally("encoding_of")


@SETTINGS
@given(known=st.sampled_from([b"gzip", b" GZIP ", b"x-gzip", b"identity", b"", b"br"]), other=st.binary(max_size=20),
       use_known=st.booleans())
def test_encoding_of(known, other, use_known):
    value = known if use_known else other
    outcome, enc = _outcome(encoding_of, value)
    encoding_tally(outcome)
    assert outcome == "ok" and enc in (b"", b"gzip") or outcome == "unsupported_encoding"


ndjson_tally = Tally("ndjson_split")


@SETTINGS
@given(lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20),
       eol=st.sampled_from([b"\n", b"\r\n"]))
def test_ndjson_split_keeps_every_non_blank_line(lines, eol):
    raw = eol.join(lines)
    parts = BatchEvents._split_ndjson(None, raw)  # type: ignore[arg-type]
    expected = [line.strip(b" \t\r") for line in lines if line.strip(b" \t\r")]
    ndjson_tally(f"{min(len(parts), 5)}+ lines" if len(parts) >= 5 else f"{len(parts)} lines")
    assert parts == expected


pixel_tally = Tally("pixel_query")


@SETTINGS
@given(doc=json_values, how=st.sampled_from(["json", "b64", "b64pad", "raw"]), junk=st.binary(max_size=60),
       key=st.none() | st.text(string.ascii_letters, min_size=1, max_size=30))
def test_pixel_query_decoding(doc, how, junk, key):
    text = orjson.dumps(doc)
    if how == "json":
        query = b"e=" + urllib.parse.quote(text).encode()
    elif how in ("b64", "b64pad"):
        enc = base64.urlsafe_b64encode(text)
        query = b"e=" + (enc.rstrip(b"=") if how == "b64" else urllib.parse.quote(enc).encode())
    else:
        query = junk
    if key is not None:
        query += b"&key=" + key.encode()
    outcome, raw = _outcome(decode_pixel_query, query, 10_000)
    pixel_tally(f"{how}:{outcome}")
    if how == "json" and isinstance(doc, dict) and outcome == "ok":
        assert orjson.loads(raw) == doc
    if how.startswith("b64") and text.strip() and outcome == "ok":
        assert raw == text or raw.strip() == text.strip()
    if key is not None and how != "raw":
        assert pixel_key(query) == key.encode()


validation_tally = Tally("validation+limits")


@SETTINGS
@given(doc=json_values | st.fixed_dictionaries({"event": st.text(max_size=5)}, optional={"nest": json_values}),
       depth=st.integers(1, 6), max_string=st.integers(1, 40))
def test_parse_event_and_structure_limits(doc, depth, max_string):
    raw = orjson.dumps(doc)
    limits = StructureLimits(depth, max_string)
    outcome, parsed = _outcome(parse_event, raw, check_default, limits)
    validation_tally(outcome)

    def measure(value: Any, level: int) -> tuple[int, int]:
        if isinstance(value, dict):
            inner = [measure(v, level + 1) for v in value.values()] + [(level, len(k)) for k in value]
            return max([(level, 0)] + inner, key=lambda x: x[0])[0], max([0] + [x[1] for x in inner])
        if isinstance(value, list):
            inner = [measure(v, level + 1) for v in value]
            return max([level] + [x[0] for x in inner]), max([0] + [x[1] for x in inner])
        return level - 1, len(value) if isinstance(value, str) else 0

    deepest, longest = measure(doc, 1)
    if outcome == "ok":
        assert parsed == doc and deepest <= depth and longest <= max_string
    elif outcome == "too_deep":
        assert deepest > depth
    elif outcome == "string_too_long":
        assert longest > max_string
    elif outcome == "not_an_object":
        assert not isinstance(doc, dict)
    else:
        assert outcome in ("missing_field", "invalid_field")
        assert deepest <= depth and longest <= max_string


headers_tally = Tally("header_limits")


@SETTINGS
@given(headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=200)), max_size=30),
       max_count=st.integers(1, 30), max_bytes=st.integers(1, 3000))
def test_header_limits(headers, max_count, max_bytes):
    outcome, _ = _outcome(check_headers, headers, max_count, max_bytes)
    headers_tally(outcome)
    over = len(headers) > max_count or sum(len(a) + len(b) for a, b in headers) > max_bytes
    assert (outcome == "headers_too_large") == over


enrich_tally = Tally("enrichment")


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(["event", "event_id", "user_id", "anonymous_id", "sent_at", "x"]),
                           json_values | st.integers(0, 2**53) | st.text(string.digits, max_size=16), max_size=6),
       idem=st.none() | st.binary(min_size=1, max_size=40),
       sent_header=st.none() | st.binary(max_size=20) | st.integers(0, 2**60).map(lambda n: str(n).encode()))
def test_enrichment_headers(doc, idem, sent_header):
    ctx = RequestContext(received_at=b"1", client_ip=b"203.0.113.1", country=country_of(b"DE"),
                         sent_at=sent_at_of(sent_header), idempotency_key=idem, source=b"web")
    event_id, key = event_id_and_key(doc, idem)
    headers = dict(Enricher("eu", "e1").headers(doc, ctx, event_id))
    enrich_tally("sent-at" if "sent-at" in headers else "no sent-at")
    assert headers["event-id"] == event_id and event_id
    if isinstance(doc.get("event_id"), str) and 0 < len(doc["event_id"]) <= 200:
        assert event_id == doc["event_id"].encode()
    elif idem:
        assert event_id == idem
    if isinstance(doc.get("user_id"), str) and doc["user_id"]:
        assert key == doc["user_id"].encode()
    if "sent-at" in headers:
        assert headers["sent-at"].isdigit()
    assert headers["source"] == b"web" and headers["region"] == b"eu"
    assert all(isinstance(v, bytes) for v in headers.values())


keys_tally = Tally("write_keys")


_key_chars = st.sampled_from(sorted(set(string.ascii_letters + string.digits + string.punctuation + "éß€") - {","}))
entries = st.lists(st.tuples(st.text(string.ascii_letters + "._-", min_size=1, max_size=10),
                             st.text(_key_chars, min_size=14, max_size=40)), max_size=4)


@SETTINGS
@given(good=entries, junk=st.text(max_size=60), use_junk=st.booleans(), sep=st.sampled_from(["\n", ","]),
       presented=st.binary(max_size=64), pick=st.integers(0, 3))
def test_write_key_parsing_and_checking(good, junk, use_junk, sep, presented, pick):
    text = sep.join(f"{src}:{key}" for src, key in good) + (sep + junk if use_junk else "")
    if good and not use_junk:
        presented = [k for _, k in good][pick % len(good)].encode() if pick < 2 else presented
    try:
        parsed = parse_entries(text, sep, "fuzz")
    except WriteKeyError as exc:
        keys_tally("rejected")
        assert "fuzz" in str(exc)
        return
    keys_tally(f"{min(len(parsed), 3)} keys")
    keys = WriteKeys(parsed)
    for key, source in parsed.items():
        assert keys.source_of(key.encode()) == source
    found = keys.source_of(presented)
    assert found is None or parsed.get(presented.decode("utf-8", "replace")) == found
    assert presented_key({b"authorization": b"Bearer " + presented}) in (presented.strip() or None, None)


proxy_tally = Tally("trusted_proxies")


@SETTINGS
@given(trusted=st.lists(st.ip_addresses().map(str), max_size=3),
       peer=st.ip_addresses().map(str) | st.text(max_size=10),
       xff=st.none() | st.lists(st.ip_addresses().map(str) | st.text(max_size=8), max_size=4).map(
           lambda hops: ", ".join(hops).encode("utf-8", "replace")),
       cf=st.none() | st.binary(max_size=50))
def test_trusted_proxy_decision(trusted, peer, xff, cf):
    trust = ProxyTrust([f"{t}/{32 if ':' not in t else 128}" for t in trusted])
    headers = {k: v for k, v in ((b"x-forwarded-for", xff), (b"cf-connecting-ip", cf)) if v is not None}
    client_ip, is_trusted = trust.client(peer, headers)
    try:
        peer_in = ipaddress.ip_address(peer) in {ipaddress.ip_address(t) for t in trusted}
    except ValueError:
        peer_in = False
    proxy_tally("trusted" if is_trusted else "untrusted")
    assert is_trusted == peer_in
    if not is_trusted:
        assert client_ip == peer.encode()  # forwarded headers ignored
    else:
        assert client_ip is not None and len(client_ip) <= 64
