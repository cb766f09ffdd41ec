"""One small ClickHouse interface, two implementations: chdb in-process and a server over HTTP.

Both take the same SQL with ``{name:Type}`` query parameters (values never go into the SQL text)
and return rows as dicts; inserts send rows (tuples) column by column (``JSONCompactColumns``: one
``orjson.dumps`` for a whole batch, no column names repeated per row). Calls are blocking;
:class:`AsyncClickHouse` runs them in threads: one writer thread for inserts and DDL, a small pool
for reads, so the event loop stays free.

An insert is encoded (:func:`encode_insert`) in the caller's thread and only *run* in the writer
thread: the encoding needs the GIL, and a writer thread that must win the GIL back from a busy
event loop several times per insert was measured to spend ~40 % of the insert's wall time there
(py-spy, the loaded stack at 10,500 events/s); running a statement releases the GIL.
"""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import httpx
import orjson

Rows = list[dict[str, Any]]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: the nice value of chdb's background merge threads (see :class:`ChdbClient`)
DEFAULT_MERGE_NICE = 19
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

    def run_insert(self, insert: EncodedInsert) -> None:
        """Run an insert encoded by :func:`encode_insert`."""

    def close(self) -> None:
        """Release the connection."""


def insert_statement(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) FORMAT JSONCompactColumns`` (plain identifiers only)."""
    names = ", ".join(identifier(c) for c in columns)
    return f"INSERT INTO {table} ({names}) FORMAT JSONCompactColumns"


def compact_columns(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    constants: Mapping[str, Any] | None = None) -> bytes:
    """``rows`` as ``JSONCompactColumns`` data: one JSON array per column; a column named in
    ``constants`` takes that value in every row (whatever the rows hold there)."""
    data: list[Any] = list(zip(*rows)) if rows else [[] for _ in columns]
    for name, value in (constants or {}).items():
        data[columns.index(name)] = [value] * len(rows)
    return orjson.dumps(data)


@dataclass(frozen=True)
class EncodedInsert:
    """An insert ready to run: its statement and its ``JSONCompactColumns`` data."""

    statement: str
    data: bytes


def encode_insert(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                  constants: Mapping[str, Any] | None = None) -> EncodedInsert:
    """``rows`` encoded for one insert into ``table`` (see :func:`compact_columns`)."""
    return EncodedInsert(insert_statement(table, columns), compact_columns(columns, rows, constants))


def _parse_rows(data: bytes) -> Rows:
    return [orjson.loads(line) for line in data.splitlines() if line]


class ChdbClient:
    """ClickHouse embedded in this process (chdb), its data kept in ``path``.

    chdb allows one data path per process at a time; close this client before opening another.
    Calls are serialised: chdb's query parameters are per connection state, and concurrent
    parameterised queries on one session were seen to lose their parameters.

    ``merge_nice`` is ClickHouse's ``os_threads_nice_value_merge_mutate`` (a server setting, given
    to chdb as a start-up argument): the background merges run at that nice value. They are not
    on any event's way into the table, and a ReplacingMergeTree's merges grow with it — in the
    loaded stack a merge into a ~400,000-row part took the CPU from the loader's inserts for
    seconds (see docs/central.md, "Merges and the loader's latency").
    """

    def __init__(self, path: str, merge_nice: int = DEFAULT_MERGE_NICE) -> None:
        import chdb.session

        if not 0 <= merge_nice <= 19:
            raise ValueError(f"merge_nice must be in 0..19, got {merge_nice}")
        self.path = path
        self._session = chdb.session.Session(f"{path}?os_threads_nice_value_merge_mutate={merge_nice}")
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
        self.run_insert(encode_insert(table, columns, rows))

    def run_insert(self, insert: EncodedInsert) -> None:
        # chdb takes the data inline, after the FORMAT clause, in the query text
        self._run(f"{insert.statement} {insert.data.decode()}", "CSV", None)

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
        self.run_insert(encode_insert(table, columns, rows))

    def run_insert(self, insert: EncodedInsert) -> None:
        self._post(insert.statement, insert.data, None)

    def close(self) -> None:
        self._http.close()


def _stringify(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: v if isinstance(v, str) else str(v) for k, v in params.items()}


def make_client(url: str | None, data_dir: str, merge_nice: int = DEFAULT_MERGE_NICE) -> ClickHouseClient:
    """An HTTP client when ``url`` is given (http:// or https://), else chdb in ``data_dir``
    (``merge_nice``: chdb only; a server takes ``os_threads_nice_value_merge_mutate`` from its
    own configuration)."""
    if url:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ClickHouse URL must start with http:// or https://, got {url!r}")
        return HttpClickHouseClient(url)
    return ChdbClient(data_dir, merge_nice)


class AsyncClickHouse:
    """Runs a blocking :class:`ClickHouseClient` in threads: one writer, ``readers`` readers."""

    def __init__(self, client: ClickHouseClient, readers: int = 2) -> None:
        self.client = client
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ch-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ch-reader")

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self.client.execute, sql, params)

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                     constants: Mapping[str, Any] | None = None) -> None:
        """Encode the rows here (see the module docstring), insert them in the writer thread."""
        encoded = encode_insert(table, columns, rows, constants)
        await asyncio.get_running_loop().run_in_executor(self._writer, self.client.run_insert, encoded)

    async def in_writer(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the writer thread (DDL, schema set-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.client.select, sql, params)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.client.close()
