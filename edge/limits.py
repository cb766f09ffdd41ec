"""Structural limits of requests and events: header size/count (431), JSON nesting depth and
string length (400). Checks are cheap on the common path: the raw bytes tell when an event cannot
be too deep (fewer opening brackets than the limit) or hold a too-long string (shorter than the
limit), and only otherwise is the parsed value walked."""

from __future__ import annotations

from typing import Any, Iterable

from edge.errors import HEADERS_TOO_LARGE, STRING_TOO_LONG, TOO_DEEP, EdgeError


def check_headers(headers: Iterable[tuple[bytes, bytes]], max_count: int, max_bytes: int) -> None:
    """Raise 431 when there are more than ``max_count`` headers or their names+values exceed ``max_bytes``."""
    count = 0
    size = 0
    for name, value in headers:
        count += 1
        size += len(name) + len(value)
    if count > max_count:
        raise EdgeError(HEADERS_TOO_LARGE, f"{count} header fields; at most {max_count}")
    if size > max_bytes:
        raise EdgeError(HEADERS_TOO_LARGE, f"header fields total {size} bytes; at most {max_bytes}")


class StructureLimits:
    """Rejects events nested deeper than ``max_depth`` or with a string (value or key) longer than
    ``max_string`` characters. Depth: a flat object is 1, each nested object/array adds 1."""

    def __init__(self, max_depth: int, max_string: int) -> None:
        self.max_depth = max_depth
        self.max_string = max_string

    def check(self, doc: Any, raw: bytes | None = None) -> None:
        """Check ``doc``; with its ``raw`` bytes the walk is skipped when it cannot find anything."""
        if raw is not None:
            need_depth = raw.count(b"{") + raw.count(b"[") > self.max_depth
            need_strings = len(raw) > self.max_string
            if not (need_depth or need_strings):
                return
        self._walk(doc)

    def _walk(self, doc: Any) -> None:
        max_depth, max_string = self.max_depth, self.max_string
        stack: list[tuple[Any, int]] = [(doc, 1)]
        while stack:
            value, depth = stack.pop()
            kind = type(value)
            if kind is dict:
                if depth > max_depth:
                    raise EdgeError(TOO_DEEP, f"nested deeper than {max_depth} levels")
                for key, item in value.items():
                    if len(key) > max_string:
                        raise EdgeError(STRING_TOO_LONG, f"a key is longer than {max_string} characters")
                    stack.append((item, depth + 1))
            elif kind is list:
                if depth > max_depth:
                    raise EdgeError(TOO_DEEP, f"nested deeper than {max_depth} levels")
                stack.extend((item, depth + 1) for item in value)
            elif kind is str and len(value) > max_string:
                raise EdgeError(STRING_TOO_LONG, f"a string is longer than {max_string} characters")
