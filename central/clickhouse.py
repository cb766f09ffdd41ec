"""One small ClickHouse interface, two implementations: chdb in-process and a server over HTTP.

Both take the same SQL with ``{name:Type}`` query parameters (values never go into the SQL text)
and return rows as dicts; inserts send rows (tuples) column by column (``JSONCompactColumns``: one
``orjson.dumps`` for a whole batch, no column names repeated per row). Calls are blocking;
:class:`AsyncClickHouse` runs them in threads: one writer thread for inserts and DDL, a small pool
for reads, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Protocol, Sequence

import httpx
import orjson

Rows = list[dict[str, Any]]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTPUT_SETTINGS = {"output_format_json_quote_64bit_integers": "0",
                    "output_format_json_quote_denormals": "0"}


class ClickHouseError(RuntimeError):
    """A query or insert that ClickHouse refused or could not run."""


def identifier(name: str) -> str:
    """``name`` if it is a plain SQL identifier (database and table names), else ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


class ClickHouseClient(Protocol):
    """What the loader and the API need from ClickHouse."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement (DDL, INSERT ... SELECT) and discard any result."""

    def select(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        """Run a SELECT and return its rows as dicts (no FORMAT clause in ``sql``)."""

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (values in ``columns`` order) into ``table`` in one insert."""

    def close(self) -> None:
        """Release the connection."""


def insert_statement(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) FORMAT JSONCompactColumns`` (plain identifiers only)."""
    names = ", ".join(identifier(c) for c in columns)
    return f"INSERT INTO {table} ({names}) FORMAT JSONCompactColumns"


def compact_columns(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows`` as ``JSONCompactColumns`` data: one JSON array per column."""
    return orjson.dumps(list(zip(*rows)) if rows else [[] for _ in columns])


def _parse_rows(data: bytes) -> Rows:
    return [orjson.loads(line) for line in data.splitlines() if line]


class ChdbClient:
    """ClickHouse embedded in this process (chdb), its data kept in ``path``.

    chdb allows one data path per process at a time; close this client before opening another.
    Calls are serialised: chdb's query parameters are per connection state, and concurrent
    parameterised queries on one session were seen to lose their parameters.
    """

    def __init__(self, path: str) -> None:
        import chdb.session

        self.path = path
        self._session = chdb.session.Session(path)
        self._lock = threading.Lock()

    def _run(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        from chdb import ChdbError

        try:
            with self._lock:
                result = self._session.query(sql, fmt, params=_stringify(params))
        except (ChdbError, RuntimeError, ValueError) as exc:
            raise ClickHouseError(str(exc)) from exc
        return result.bytes() if hasattr(result, "bytes") else bytes(result)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, "CSV", params)

    def select(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        settings = ", ".join(f"{k}={v}" for k, v in _OUTPUT_SETTINGS.items())
        return _parse_rows(self._run(f"{sql}\nSETTINGS {settings}", "JSONEachRow", params))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        data = compact_columns(columns, rows).decode()
        self._run(f"{insert_statement(table, columns)} {data}", "CSV", None)

    def close(self) -> None:
        self._session.close()


class HttpClickHouseClient:
    """A ClickHouse server over its HTTP interface (``http://user:password@host:8123``)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = httpx.URL(url)
        auth = (parsed.username, parsed.password) if parsed.username else None
        self.url = str(parsed.copy_with(username=None, password=None))
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth)

    def _post(self, query: str | None, body: bytes | str, params: Mapping[str, Any] | None,
              settings: Mapping[str, str] | None = None) -> bytes:
        url_params: dict[str, str] = dict(settings or {})
        if query is not None:
            url_params["query"] = query
        for key, value in (_stringify(params) or {}).items():
            url_params[f"param_{key}"] = value
        try:
            response = self._http.post("/", params=url_params, content=body)
        except httpx.HTTPError as exc:
            raise ClickHouseError(f"ClickHouse at {self.url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ClickHouseError(f"ClickHouse HTTP {response.status_code}: {response.text[:500]}")
        return response.content

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._post(None, sql, params)

    def select(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        return _parse_rows(self._post(None, f"{sql}\nFORMAT JSONEachRow", params, _OUTPUT_SETTINGS))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._post(insert_statement(table, columns), compact_columns(columns, rows), None)

    def close(self) -> None:
        self._http.close()


def _stringify(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: v if isinstance(v, str) else str(v) for k, v in params.items()}


def make_client(url: str | None, data_dir: str) -> ClickHouseClient:
    """An HTTP client when ``url`` is given (http:// or https://), else chdb in ``data_dir``."""
    if url:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ClickHouse URL must start with http:// or https://, got {url!r}")
        return HttpClickHouseClient(url)
    return ChdbClient(data_dir)


class AsyncClickHouse:
    """Runs a blocking :class:`ClickHouseClient` in threads: one writer, ``readers`` readers."""

    def __init__(self, client: ClickHouseClient, readers: int = 2) -> None:
        self.client = client
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ch-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ch-reader")

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self.client.execute, sql, params)

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self.client.insert, table, columns, rows)

    async def in_writer(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the writer thread (DDL, schema set-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.client.select, sql, params)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.client.close()
