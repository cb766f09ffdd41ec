"""Optional write keys per source: parsing, and a constant-time check of a presented key.

Keys come from ``--write-keys-file`` (one ``source:key`` per line, ``#`` comments) and/or the
``GEO_EDGE_WRITE_KEYS`` variable (comma list of ``source:key``); they never enter ``EdgeConfig``,
its JSON for the workers, or a log line. A request presents its key as ``Authorization: Bearer
<key>`` or ``X-Write-Key: <key>`` (the pixel also as ``?key=``). Checking hashes the presented key
and compares the digest with ``hmac.compare_digest`` against **every** known key (no early exit),
so neither which key matched nor how much of it did shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Mapping

KEYS_ENV = "GEO_EDGE_WRITE_KEYS"
_MAX_KEY = 512
_SOURCE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class WriteKeyError(ValueError):
    """A malformed write-key entry (the message never contains the key)."""


def parse_entries(text: str, separator: str, origin: str) -> dict[str, bytes]:
    """``{key: source}`` from ``source:key`` entries separated by ``separator`` (``\\n`` or ``,``)."""
    out: dict[str, bytes] = {}
    for number, entry in enumerate(text.split(separator), 1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        source, sep, key = entry.partition(":")
        source, key = source.strip(), key.strip()
        where = f"{origin} entry {number}"
        if not sep or not source or not key:
            raise WriteKeyError(f"{where}: expected source:key")
        if not set(source) <= _SOURCE_CHARS or len(source) > 64:
            raise WriteKeyError(f"{where}: source names use letters, digits, '.', '_', '-' (at most 64)")
        if len(key) < 16 or len(key) > _MAX_KEY or not key.isprintable() or " " in key:
            raise WriteKeyError(f"{where}: a key is 16..{_MAX_KEY} printable characters without spaces")
        if key in out:
            raise WriteKeyError(f"{where}: the same key is given twice")
        out[key] = source.encode()
    return out


class WriteKeys:
    """The known keys (as SHA-256 digests) and their sources; empty means writes are open."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._entries = [(hashlib.sha256(k.encode()).digest(), src) for k, src in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never the keys
        return f"WriteKeys({len(self._entries)} keys)"

    def source_of(self, presented: bytes | None) -> bytes | None:
        """The source of a valid key, else ``None``; constant time in the presented key's content."""
        if not presented or len(presented) > _MAX_KEY:
            return None
        digest = hashlib.sha256(presented).digest()
        found: bytes | None = None
        for known, source in self._entries:  # every entry, no early exit
            if hmac.compare_digest(digest, known):
                found = source
        return found


def load_write_keys(path: str = "", environ: Mapping[str, str] | None = None) -> WriteKeys:
    """The write keys of ``--write-keys-file`` plus ``GEO_EDGE_WRITE_KEYS``; raises ``WriteKeyError``."""
    keys: dict[str, bytes] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WriteKeyError(f"write keys file {path}: {type(exc).__name__}") from None
        keys.update(parse_entries(text, "\n", f"file {path}"))
    env_value = (os.environ if environ is None else environ).get(KEYS_ENV, "")
    for key, source in parse_entries(env_value, ",", KEYS_ENV).items():
        if key in keys:
            raise WriteKeyError(f"{KEYS_ENV}: a key of the file is given again")
        keys[key] = source
    return WriteKeys(keys)


def presented_key(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The key a request presents: ``Authorization: Bearer <key>``, else ``X-Write-Key``."""
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, value = auth.strip().partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip()
    key = headers.get(b"x-write-key")
    return key.strip() or None if key else None
