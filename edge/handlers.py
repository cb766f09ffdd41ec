"""The event endpoints as plain ASGI callables (the hot path avoids Request/Response objects).

``POST /post`` (one event, the original service's answer), ``POST /v1/events`` (JSON array or
NDJSON batch, one result per event) and ``GET /v1/pixel.gif`` (image beacon).
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, NamedTuple
from urllib.parse import parse_qs

import orjson

from edge import errors, metrics
from edge.auth import WriteKeys, presented_key
from edge.body import ClientDisconnected, encoding_of, read_body
from edge.enrich import Enricher, ProxyTrust, RequestContext, country_of, event_id_and_key, sent_at_of
from edge.errors import EdgeError
from edge.limits import StructureLimits
from edge.ratelimit import TokenBuckets, retry_after
from edge.sink import Ack, KafkaSink, Record
from edge.validation import Checker, check_event, parse_event, parse_json
from service_kit.contract import CLIENT_IP, DLQ_DETAIL, DLQ_REASON, RECEIVED_AT

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
# /post takes what the original service took: the body is the event whatever the declared type,
# so `curl -d '{...}'` (application/x-www-form-urlencoded) works as it always did.
_SINGLE_TYPES = frozenset((b"", b"application/json", b"text/plain", b"application/x-www-form-urlencoded"))
_NDJSON_TYPES = frozenset((b"application/x-ndjson", b"application/ndjson", b"application/jsonl",
                           b"application/jsonlines", b"application/x-jsonlines"))
# The smallest transparent GIF (43 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def media_type(headers: dict[bytes, bytes]) -> bytes:
    """The Content-Type without parameters, lower-case (``b""`` when absent)."""
    value = headers.get(b"content-type", b"")
    return value.split(b";", 1)[0].strip().lower()


@dataclass
class EdgeContext:
    """What the handlers share: configuration-derived helpers and the Kafka sink."""

    sink: KafkaSink
    check: Checker
    enricher: Enricher
    trust: ProxyTrust
    max_body_bytes: int
    max_event_bytes: int
    max_batch_events: int
    retry_after: bytes
    structure: StructureLimits
    write_keys: WriteKeys
    ip_buckets: TokenBuckets | None = None
    key_buckets: TokenBuckets | None = None

    def admit(self, scope: Scope, headers: dict[bytes, bytes], presented: bytes | None) -> Peer:
        """Who is asking: client IP (trusted-proxy aware), rate limits (429), write key (401)."""
        client = scope.get("client")
        client_ip, trusted = self.trust.client(client[0] if client else None, headers)
        if self.ip_buckets is not None and client_ip is not None:
            wait = self.ip_buckets.take(client_ip)
            if wait:
                metrics.RATE_LIMITED.labels("ip").inc()
                raise EdgeError(errors.RATE_LIMITED, "too many requests from this client address",
                                headers=((b"retry-after", retry_after(wait)),))
        source = None
        if self.write_keys.enabled:
            source = self.write_keys.source_of(presented)
            if source is None:
                raise EdgeError(errors.UNAUTHORIZED, "a valid write key is required "
                                "(Authorization: Bearer KEY or X-Write-Key: KEY)", headers=_CHALLENGE)
            if self.key_buckets is not None:
                wait = self.key_buckets.take(source)
                if wait:
                    metrics.RATE_LIMITED.labels("key").inc()
                    raise EdgeError(errors.RATE_LIMITED, "too many requests with this write key",
                                    headers=((b"retry-after", retry_after(wait)),))
        return Peer(client_ip, trusted, source)

    def request_context(self, peer: Peer, headers: dict[bytes, bytes], single: bool) -> RequestContext:
        return RequestContext(
            received_at=b"%d" % int(time.time() * 1000),
            client_ip=peer.client_ip,
            country=country_of(headers.get(b"cf-ipcountry")) if peer.trusted else None,
            sent_at=sent_at_of(headers.get(b"x-sent-at")),
            idempotency_key=(headers.get(b"idempotency-key") or None) if single else None,
            source=peer.source,
        )


class Peer(NamedTuple):
    """The client as the edge determined it: address, whether its proxy is trusted, key's source."""

    client_ip: bytes | None
    trusted: bool
    source: bytes | None


_CHALLENGE = ((b"www-authenticate", b'Bearer realm="geo-edge"'),)


class EventEndpoint:
    """Common ASGI plumbing: metrics, error answers, never a 5xx for bad input."""

    route = ""

    def __init__(self, ctx: EdgeContext) -> None:
        self.ctx = ctx
        self._latency = metrics.BufferedHistogram(metrics.REQUEST_SECONDS.labels(self.route))
        self._accepted = metrics.BufferedCounter(metrics.EVENTS_ACCEPTED.labels(self.route))
        self._by_status: dict[int, Any] = {}

    async def handle(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                     peer: Peer) -> tuple[int, bytes, bytes]:
        raise NotImplementedError

    def credential(self, scope: Scope, headers: dict[bytes, bytes]) -> bytes | None:
        """The write key the request presents (headers; the pixel also ``?key=``)."""
        return presented_key(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        metrics.LIVE.in_flight += 1
        extra: tuple[tuple[bytes, bytes], ...] = ()
        try:
            headers = dict(scope["headers"])
            peer = self.ctx.admit(scope, headers, self.credential(scope, headers))
            status, body, ctype = await self.handle(scope, receive, headers, peer)
        except EdgeError as exc:
            status, body, ctype, extra = self._rejected(exc)
        except ClientDisconnected:
            metrics.LIVE.in_flight -= 1
            return
        except Exception:
            log.exception("unexpected error", extra={"route": self.route})
            status, body, ctype = 500, errors.error_body("internal_error", "unexpected error"), JSON
        metrics.LIVE.in_flight -= 1
        if status == 503 and not extra:
            extra = ((b"retry-after", self.ctx.retry_after),)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body)),
                                (b"cache-control", b"no-store"), *extra]})
        await send({"type": "http.response.body", "body": body})
        self._record(status, start)

    def _rejected(self, exc: EdgeError) -> tuple[int, bytes, bytes, tuple[tuple[bytes, bytes], ...]]:
        """The answer to a rejected request (counted by reason); a 503 tells when to come back."""
        metrics.EVENTS_REJECTED.labels(exc.reason).inc()
        extra = tuple(exc.headers)
        if exc.status == 503:
            extra += ((b"retry-after", self.ctx.retry_after),)
        return exc.status, exc.body(), JSON, extra

    def _record(self, status: int, start: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = metrics.BufferedCounter(
                metrics.REQUESTS.labels(self.route, str(status)))
        counter.inc()
        self._latency.observe(time.perf_counter() - start)

    def takes_immediately(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the HTTP protocol may read this request's whole body itself and call
        :meth:`immediate` (``service_kit.direct_cycle.ImmediateCycle``); else the ASGI way."""
        return False

    def immediate(self, cycle: Any) -> None:
        raise NotImplementedError

    async def _read(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        length = headers.get(b"content-length")
        return await read_body(receive, self.ctx.max_body_bytes,
                               encoding_of(headers.get(b"content-encoding", b"")),
                               int(length) if length and length.isdigit() else None)

    async def _produce_single(self, peer: Peer, headers: dict[bytes, bytes], raw: bytes) -> Ack:
        ack = await self.ctx.sink.send_one(*self._single_record(peer, headers, raw))
        self._accepted.inc()
        return ack

    def _single_record(self, peer: Peer, headers: dict[bytes, bytes], raw: bytes) -> Record:
        """The Kafka record of one event (checked, enriched); ``EdgeError`` when it is invalid."""
        ctx = self.ctx
        if len(raw) > ctx.max_event_bytes:
            raise EdgeError(errors.EVENT_TOO_LARGE, f"event exceeds {ctx.max_event_bytes} bytes")
        doc = parse_event(raw, ctx.check, ctx.structure)
        rctx = ctx.request_context(peer, headers, single=True)
        event_id, key = event_id_and_key(doc, rctx.idempotency_key)
        return key, raw, ctx.enricher.headers(doc, rctx, event_id)


class PostEvent(EventEndpoint):
    """``POST /post``: one JSON event; ``{"status":"ok","partition":N,"offset":N}`` after the ack."""

    route = "/post"

    async def handle(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                     peer: Peer) -> tuple[int, bytes, bytes]:
        if media_type(headers) not in _SINGLE_TYPES:
            raise EdgeError(errors.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        raw = await self._read(receive, headers)
        if not raw.strip():
            raise EdgeError(errors.EMPTY_BODY, "the body is empty")
        ack = await self._produce_single(peer, headers, raw)
        return 200, _ok_body(ack), JSON

    def takes_immediately(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """A body of a declared length within the limit and not compressed (the common request):
        the protocol reads it whole. Chunked, compressed or oversized bodies take the ASGI way
        (streamed reading, gzip limits, the early 413)."""
        length = None
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"content-encoding" or name == b"transfer-encoding":
                return False
        return length is not None and length.isdigit() and int(length) <= self.ctx.max_body_bytes

    def immediate(self, cycle: Any) -> None:
        """The same request as :meth:`handle`, answered from callbacks: checked and submitted to
        Kafka here, answered when the acknowledgement (or the failure) arrives."""
        start = time.perf_counter()
        metrics.LIVE.in_flight += 1
        try:
            headers = dict(cycle.scope["headers"])
            peer = self.ctx.admit(cycle.scope, headers, presented_key(headers))
            if media_type(headers) not in _SINGLE_TYPES:
                raise EdgeError(errors.UNSUPPORTED_MEDIA_TYPE, "send application/json")
            raw = bytes(cycle.body)
            if not raw.strip():
                raise EdgeError(errors.EMPTY_BODY, "the body is empty")
            self.ctx.sink.submit_one(*self._single_record(peer, headers, raw),
                                     functools.partial(self._acked, cycle, start))
        except EdgeError as exc:
            self._answer(cycle, start, *self._rejected(exc))
        except Exception:
            log.exception("unexpected error", extra={"route": self.route})
            self._answer(cycle, start, 500, errors.error_body("internal_error", "unexpected error"), JSON, ())

    def _acked(self, cycle: Any, start: float, results: list[Ack | EdgeError]) -> None:
        result = results[0]
        if type(result) is Ack:
            self._accepted.inc()
            self._answer(cycle, start, 200, _ok_body(result), JSON, ())
        else:
            self._answer(cycle, start, *self._rejected(result))

    def _answer(self, cycle: Any, start: float, status: int, body: bytes, ctype: bytes,
                extra: tuple[tuple[bytes, bytes], ...]) -> None:
        metrics.LIVE.in_flight -= 1  # (a 503 here is a rejection: ``_rejected`` gave it Retry-After)
        head = b"content-type: %s\r\ncache-control: no-store\r\n" % ctype
        if extra:
            head += b"".join(b"%s: %s\r\n" % pair for pair in extra)
        cycle.respond(status, head, body)
        self._record(status, start)


def _ok_body(ack: Ack) -> bytes:
    return b'{"status":"ok","partition":%d,"offset":%d}' % (ack.partition, ack.offset)


class PixelEvent(EventEndpoint):
    """``GET /v1/pixel.gif?e=<event>``: the event as URL-encoded JSON or base64url JSON; a 1x1 GIF."""

    route = "/v1/pixel.gif"

    async def handle(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                     peer: Peer) -> tuple[int, bytes, bytes]:
        raw = decode_pixel_query(scope.get("query_string", b""), self.ctx.max_event_bytes)
        await self._produce_single(peer, headers, raw)
        return 200, PIXEL_GIF, b"image/gif"

    def credential(self, scope: Scope, headers: dict[bytes, bytes]) -> bytes | None:
        return presented_key(headers) or pixel_key(scope.get("query_string", b""))


def pixel_key(query: bytes) -> bytes | None:
    """The write key of a pixel request's ``key`` parameter (``None`` when absent or malformed)."""
    if b"key=" not in query or len(query) > 1 << 20:
        return None
    try:
        values = parse_qs(query.decode("latin-1"), errors="strict", encoding="utf-8").get("key")
        return values[0].strip().encode() or None if values else None
    except (UnicodeError, ValueError):
        return None


def decode_pixel_query(query: bytes, limit: int) -> bytes:
    """The event bytes of a pixel request's ``e`` parameter."""
    if len(query) > 4 * limit:
        raise EdgeError(errors.EVENT_TOO_LARGE, f"query exceeds {4 * limit} bytes")
    try:
        values = parse_qs(query.decode("latin-1"), keep_blank_values=True, errors="strict",
                          encoding="utf-8").get("e")
    except (UnicodeDecodeError, ValueError):
        raise EdgeError(errors.INVALID_UTF8, "query parameter `e` is not UTF-8") from None
    if not values or not values[0].strip():
        raise EdgeError(errors.INVALID_QUERY, "query parameter `e` (the event) is required")
    value = values[0].strip()
    if value.startswith("{"):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise EdgeError(errors.INVALID_UTF8, "query parameter `e` is not UTF-8") from None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise EdgeError(errors.INVALID_QUERY, "`e` is neither JSON nor base64url JSON") from None


def batch_format(headers: dict[bytes, bytes]) -> bool | None:
    """Whether a ``/v1/events`` body is NDJSON by its Content-Type (``None``: sniff the body)."""
    mtype = media_type(headers)
    if mtype == b"application/json":
        return False
    if mtype in _NDJSON_TYPES:
        return True
    if mtype in (b"", b"text/plain"):
        return None
    raise EdgeError(errors.UNSUPPORTED_MEDIA_TYPE, "send application/json or application/x-ndjson")


class BatchOutcome:
    """The per-event results of one ``/v1/events`` request and the answer they make (pure)."""

    __slots__ = ("results", "sent", "accepted", "kafka_failed")

    def __init__(self, count: int) -> None:
        self.results: list[dict[str, Any] | None] = [None] * count
        self.sent: list[tuple[int, bytes]] = []   # (index, event id) of each event handed to Kafka, in order
        self.accepted = 0
        self.kafka_failed = False

    def rejected(self, index: int, exc: EdgeError) -> None:
        self.results[index] = {"index": index, "status": "rejected", "reason": exc.reason, "detail": exc.detail}

    def produced(self, index: int, event_id: bytes) -> None:
        self.sent.append((index, event_id))

    def stored(self, acks: list[Ack | EdgeError]) -> None:
        """Kafka's answer for the produced events, in the order they were produced."""
        results = self.results
        for (index, event_id), ack in zip(self.sent, acks):
            if isinstance(ack, Ack):
                self.accepted += 1
                results[index] = {"index": index, "status": "accepted", "event_id": event_id.decode(),
                                  "partition": ack.partition, "offset": ack.offset}
            else:
                self.kafka_failed = True
                metrics.EVENTS_REJECTED.labels(ack.reason).inc()
                results[index] = {"index": index, "status": "failed", "event_id": event_id.decode(),
                                  "reason": ack.reason, "detail": ack.detail}

    def answer(self) -> tuple[int, bytes, bytes]:
        """200 when some were stored and none failed in Kafka, 503 when Kafka failed some, 400
        when none was valid."""
        doc: dict[str, Any] = {"accepted": self.accepted, "rejected": len(self.results) - self.accepted,
                               "results": self.results}
        if self.kafka_failed:
            status = 503
            doc["error"] = {"reason": errors.KAFKA_TIMEOUT, "detail": "some events were not stored"}
        elif self.accepted:
            status = 200
        else:
            status = 400
            doc["error"] = {"reason": errors.ALL_REJECTED, "detail": "no event of the batch is valid"}
        return status, orjson.dumps(doc), JSON


class BatchEvents(EventEndpoint):
    """``POST /v1/events``: a JSON array or NDJSON; valid events are stored, invalid ones reported."""

    route = "/v1/events"

    async def handle(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                     peer: Peer) -> tuple[int, bytes, bytes]:
        ctx = self.ctx
        ndjson = batch_format(headers)
        elements = self._elements(await self._read(receive, headers), ndjson)
        rctx = ctx.request_context(peer, headers, single=False)
        outcome = BatchOutcome(len(elements))
        records = self._valid_records(elements, rctx, outcome)
        if records:
            outcome.stored(await ctx.sink.send_many(records))
        if outcome.accepted:
            self._accepted.inc(outcome.accepted)
        return outcome.answer()

    def _elements(self, raw: bytes, ndjson: bool | None) -> list[Any]:
        """The batch's elements (NDJSON lines as bytes, array items as parsed), within the limits."""
        stripped = raw.lstrip()
        if not stripped:
            raise EdgeError(errors.EMPTY_BODY, "the body is empty")
        if ndjson is None:
            ndjson = not stripped.startswith(b"[")
        elements = self._split_ndjson(raw) if ndjson else self._split_array(raw)
        if not elements:
            raise EdgeError(errors.EMPTY_BATCH, "the batch has no events")
        if len(elements) > self.ctx.max_batch_events:
            raise EdgeError(errors.TOO_MANY_EVENTS,
                            f"{len(elements)} events; at most {self.ctx.max_batch_events} per request")
        return elements

    def _valid_records(self, elements: list[Any], rctx: RequestContext, outcome: BatchOutcome) -> list[Record]:
        """The Kafka records of the valid elements; each invalid one is reported in ``outcome``
        and sent to the dead-letter topic."""
        enricher = self.ctx.enricher
        records: list[Record] = []
        for index, element in enumerate(elements):
            try:
                value, doc = self._event(element)
            except EdgeError as exc:
                outcome.rejected(index, exc)
                metrics.EVENTS_REJECTED.labels(exc.reason).inc()
                self._dead_letter(element, exc, rctx)
                continue
            event_id, key = event_id_and_key(doc, None)
            records.append((key, value, enricher.headers(doc, rctx, event_id)))
            outcome.produced(index, event_id)
        return records

    def _split_ndjson(self, raw: bytes) -> list[bytes]:
        return [s for line in raw.split(b"\n") if (s := line.strip(b" \t\r"))]

    def _split_array(self, raw: bytes) -> list[Any]:
        doc = parse_json(raw)
        if type(doc) is dict:
            return [doc]
        if type(doc) is not list:
            raise EdgeError(errors.NOT_AN_ARRAY, "send a JSON array of events (or NDJSON)")
        return doc

    def _event(self, element: Any) -> tuple[bytes, dict[str, Any]]:
        ctx = self.ctx
        if type(element) is bytes:
            if len(element) > ctx.max_event_bytes:
                raise EdgeError(errors.EVENT_TOO_LARGE, f"event exceeds {ctx.max_event_bytes} bytes")
            return element, parse_event(element, ctx.check, ctx.structure)
        if type(element) is not dict:
            check_event(element, ctx.check)  # raises not_an_object
        value = orjson.dumps(element)
        if len(value) > ctx.max_event_bytes:
            raise EdgeError(errors.EVENT_TOO_LARGE, f"event exceeds {ctx.max_event_bytes} bytes")
        return value, check_event(element, ctx.check, ctx.structure, value)

    def _dead_letter(self, element: Any, exc: EdgeError, rctx: RequestContext) -> None:
        if not self.ctx.sink.config.dead_letter_topic:
            return
        try:
            value = element if type(element) is bytes else orjson.dumps(element)
        except TypeError:
            return
        headers = [(DLQ_REASON, exc.reason.encode()), (DLQ_DETAIL, exc.detail[:500].encode("utf-8", "replace")),
                   (RECEIVED_AT, rctx.received_at), self.ctx.enricher.region, self.ctx.enricher.edge]
        if rctx.client_ip is not None:
            headers.append((CLIENT_IP, rctx.client_ip))
        self.ctx.sink.dead_letter(value, headers)
