"""Reading a request body from ASGI with limits: the raw size and, for ``Content-Encoding: gzip``,
the decompressed size, decompressed incrementally so that a gzip bomb never grows past the cap."""

from __future__ import annotations

import zlib
from typing import Any, Awaitable, Callable

from edge.errors import BODY_TOO_LARGE, INVALID_GZIP, UNSUPPORTED_ENCODING, EdgeError

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientDisconnected(Exception):
    """The client went away before sending the whole body: nothing to answer."""

_IDENTITY = (b"", b"identity")
_GZIP = (b"gzip", b"x-gzip")


def encoding_of(value: bytes) -> bytes:
    """Normalise a Content-Encoding value; raises 415 for anything but identity and gzip."""
    enc = value.strip().lower()
    if enc in _IDENTITY:
        return b""
    if enc in _GZIP:
        return b"gzip"
    raise EdgeError(UNSUPPORTED_ENCODING, f"Content-Encoding {value.decode('latin-1')!r}: "
                                          "only gzip and identity are accepted")


async def read_body(receive: Receive, limit: int, encoding: bytes, content_length: int | None) -> bytes:
    """The whole body, decoded; raises 413 when it (decompressed) exceeds ``limit`` bytes."""
    if content_length is not None and content_length > limit:
        raise EdgeError(BODY_TOO_LARGE, f"Content-Length {content_length} exceeds {limit} bytes")
    if encoding == b"gzip":
        return await _read_gzip(receive, limit)
    message = await _receive(receive)
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise EdgeError(BODY_TOO_LARGE, f"body exceeds {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await _receive(receive)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise EdgeError(BODY_TOO_LARGE, f"body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _read_gzip(receive: Receive, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    raw_size = 0
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    more = True
    while more:
        message = await _receive(receive)
        more = message.get("more_body", False)
        data: bytes = message.get("body", b"")
        raw_size += len(data)
        if raw_size > limit:
            raise EdgeError(BODY_TOO_LARGE, f"compressed body exceeds {limit} bytes")
        while data:
            try:
                if decomp.eof:  # concatenated gzip members are valid gzip
                    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                chunk = decomp.decompress(data, limit - size + 1)
            except zlib.error as exc:
                raise EdgeError(INVALID_GZIP, f"gzip: {exc}") from None
            size += len(chunk)
            if size > limit:
                raise EdgeError(BODY_TOO_LARGE, f"decompressed body exceeds {limit} bytes")
            out.append(chunk)
            data = decomp.unconsumed_tail or (decomp.unused_data if decomp.eof else b"")
    if not decomp.eof:
        raise EdgeError(INVALID_GZIP, "gzip stream truncated")
    return b"".join(out)


async def _receive(receive: Receive) -> dict[str, Any]:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()
    return message
