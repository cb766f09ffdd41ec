"""Event validation: parse one JSON value and check it against the configured rules.

Modes: ``default`` (an object with a non-empty string ``event``, optional string ``os`` and
``browser``, anything else allowed), ``permissive`` (any JSON object, as the original service) and
``schema`` (a JSON Schema file compiled with fastjsonschema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

from edge.limits import StructureLimits
from edge.errors import (INVALID_FIELD, INVALID_JSON, INVALID_UTF8, MISSING_FIELD, NOT_AN_OBJECT,
                         SCHEMA_VIOLATION, EdgeError)

Checker = Callable[[dict[str, Any]], None]


def parse_json(raw: bytes | str) -> Any:
    """``orjson.loads`` with the edge's reasons: ``invalid_utf8`` or ``invalid_json``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                raise EdgeError(INVALID_UTF8, f"not UTF-8 at byte {uexc.start}") from None
        raise EdgeError(INVALID_JSON, str(exc)) from None


def check_default(doc: dict[str, Any]) -> None:
    """The default rule: non-empty string ``event``; ``os`` and ``browser`` strings when present."""
    event = doc.get("event")
    if event is None:
        raise EdgeError(MISSING_FIELD, "field `event` is required")
    if type(event) is not str or not event:
        raise EdgeError(INVALID_FIELD, "field `event` must be a non-empty string")
    if "os" in doc and type(doc["os"]) is not str:
        raise EdgeError(INVALID_FIELD, "field `os` must be a string")
    if "browser" in doc and type(doc["browser"]) is not str:
        raise EdgeError(INVALID_FIELD, "field `browser` must be a string")


def check_permissive(doc: dict[str, Any]) -> None:
    """Any JSON object passes."""


def schema_checker(path: str | Path) -> Checker:
    """A checker from a JSON Schema file (raises ValueError at start-up when the schema is bad)."""
    try:
        validate = fastjsonschema.compile(orjson.loads(Path(path).read_bytes()))
    except (OSError, orjson.JSONDecodeError, fastjsonschema.JsonSchemaDefinitionException) as exc:
        raise ValueError(f"schema {path}: {exc}") from exc

    def check(doc: dict[str, Any]) -> None:
        try:
            validate(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise EdgeError(SCHEMA_VIOLATION, exc.message) from None

    return check


def make_checker(mode: str, schema_file: str = "") -> Checker:
    """The checker for a validation mode."""
    if mode == "permissive":
        return check_permissive
    if mode == "schema":
        return schema_checker(schema_file)
    return check_default


def parse_event(raw: bytes, check: Checker, limits: StructureLimits | None = None) -> dict[str, Any]:
    """Parse and validate one event's bytes; returns the object or raises ``EdgeError``."""
    return check_event(parse_json(raw), check, limits, raw)


def check_event(doc: Any, check: Checker, limits: StructureLimits | None = None,
                raw: bytes | None = None) -> dict[str, Any]:
    """Validate a parsed event: an object, within the structure limits, passing ``check``."""
    if type(doc) is not dict:
        raise EdgeError(NOT_AN_OBJECT, f"an event must be a JSON object, not {_kind(doc)}")
    if limits is not None:
        limits.check(doc, raw)
    check(doc)
    return doc


def _kind(doc: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(doc), type(doc).__name__)
