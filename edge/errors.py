"""Machine-readable rejection reasons and the error the request handlers raise.

Every error answer has the body ``{"error": {"reason": "<reason>", "detail": "<text>"}}``.
"""

from __future__ import annotations

import orjson

# 400: the request or the event is malformed
EMPTY_BODY = "empty_body"
INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
INVALID_GZIP = "invalid_gzip"
NOT_AN_OBJECT = "not_an_object"
NOT_AN_ARRAY = "not_an_array"
EMPTY_BATCH = "empty_batch"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
SCHEMA_VIOLATION = "schema_violation"
INVALID_QUERY = "invalid_query"
ALL_REJECTED = "all_rejected"
TOO_DEEP = "too_deep"
STRING_TOO_LONG = "string_too_long"
# 401 / 429 / 431: who may write, how often, how large the request head is
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
HEADERS_TOO_LARGE = "headers_too_large"
# 413: over a size limit (after decompression)
BODY_TOO_LARGE = "body_too_large"
EVENT_TOO_LARGE = "event_too_large"
TOO_MANY_EVENTS = "too_many_events"
# 415
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
UNSUPPORTED_ENCODING = "unsupported_encoding"
# 503: not stored, retry later (with Retry-After)
OVERLOADED = "overloaded"
KAFKA_UNAVAILABLE = "kafka_unavailable"
KAFKA_TIMEOUT = "kafka_timeout"

STATUS_OF = {
    EMPTY_BODY: 400, INVALID_JSON: 400, INVALID_UTF8: 400, INVALID_GZIP: 400, NOT_AN_OBJECT: 400,
    NOT_AN_ARRAY: 400, EMPTY_BATCH: 400, MISSING_FIELD: 400, INVALID_FIELD: 400,
    SCHEMA_VIOLATION: 400, INVALID_QUERY: 400, ALL_REJECTED: 400, TOO_DEEP: 400, STRING_TOO_LONG: 400,
    UNAUTHORIZED: 401, RATE_LIMITED: 429, HEADERS_TOO_LARGE: 431,
    BODY_TOO_LARGE: 413, EVENT_TOO_LARGE: 413, TOO_MANY_EVENTS: 413,
    UNSUPPORTED_MEDIA_TYPE: 415, UNSUPPORTED_ENCODING: 415,
    OVERLOADED: 503, KAFKA_UNAVAILABLE: 503, KAFKA_TIMEOUT: 503,
}


class EdgeError(Exception):
    """A request the edge refuses: HTTP status from the reason, a human detail, extra answer headers."""

    def __init__(self, reason: str, detail: str = "",
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = STATUS_OF[reason]
        self.headers = headers

    def body(self) -> bytes:
        return error_body(self.reason, self.detail)


def error_body(reason: str, detail: str) -> bytes:
    """The JSON body of an error answer."""
    return orjson.dumps({"error": {"reason": reason, "detail": detail}})
