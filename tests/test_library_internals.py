"""Pins what the project relies on in aiokafka's and prometheus_client's internals
(``service_kit.aiokafka_internals``, ``service_kit.prometheus_internals``): each accessor is
driven against the real thing, so an upgrade that changes them fails here, loudly, and not as a
silent duplicate or a frozen consumer in production."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from importlib.metadata import version
from pathlib import Path

import aiokafka
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry, Histogram

from harness.kafka import KafkaCluster
from service_kit.wait import wait_until_async
from service_kit import aiokafka_internals, prometheus_internals
from test_mirror_helpers import create_topic

ROOT = Path(__file__).resolve().parent.parent


def test_the_pinned_versions_are_installed() -> None:
    assert aiokafka.__version__ == aiokafka_internals.PINNED_VERSION, (
        "aiokafka changed: check every accessor of service_kit/aiokafka_internals.py, then re-pin")
    assert version("prometheus-client").startswith(prometheus_internals.PINNED_SERIES), (
        "prometheus_client changed: check service_kit/prometheus_internals.py, then re-pin")


async def test_wait_for_producer_id_fences_the_previous_producer(kafka: KafkaCluster, unique_topic: str) -> None:
    """InitProducerId is sent when asked, not lazily: the older producer of the id is fenced
    before the new one has done anything else."""
    await create_topic(kafka.bootstrap, unique_topic, 1)
    txid = f"pin-{uuid.uuid4().hex[:8]}"
    old = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=txid)
    new = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=txid)
    await old.start()
    try:
        await aiokafka_internals.wait_for_producer_id(old)
        await new.start()
        await aiokafka_internals.wait_for_producer_id(new)
        failed = None
        try:
            async with old.transaction():
                await (await old.send(unique_topic, b"zombie"))
        except Exception as exc:  # noqa: BLE001 - any fencing error will do (ProducerFenced, ...)
            failed = exc
        assert failed is not None, "the older producer could still write: it was not fenced"
    finally:
        await old.stop()
        await new.stop()


async def test_coordination_ended_sees_the_group_task(kafka: KafkaCluster, unique_topic: str) -> None:
    await create_topic(kafka.bootstrap, unique_topic, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=f"pin-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False)
    await consumer.start()
    consumer.subscribe([unique_topic])
    try:
        await wait_until_async(lambda: consumer.assignment(), 30, interval=0.1, what="an assignment")
        assert aiokafka_internals.coordination_ended(consumer) is None
    finally:
        await consumer.stop()
    assert aiokafka_internals.coordination_ended(consumer) is not None  # stop ends the task


async def test_known_partitions_and_refresh_metadata(kafka: KafkaCluster, unique_topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        assert aiokafka_internals.known_partitions(producer, unique_topic) == set()
        await create_topic(kafka.bootstrap, unique_topic, 3)

        async def known() -> bool:
            await aiokafka_internals.refresh_metadata(producer)
            return aiokafka_internals.known_partitions(producer, unique_topic) == {0, 1, 2}

        await wait_until_async(known, 20, interval=0.2, what="the new topic's partitions in metadata")
    finally:
        await producer.stop()


async def test_fetch_stable_offsets_leaves_out_a_commit_still_in_a_transaction(
        kafka: KafkaCluster, unique_topic: str) -> None:
    """OffsetFetch v7 with require_stable, built on aiokafka's protocol structs and sent with the
    admin client's ``_send_request``: a partition whose offsets sit in an open transaction is left
    out (the broker's UNSTABLE_OFFSET_COMMIT), one never committed reads -1, and the transaction's
    commit makes the offset readable. aiokafka's own OffsetFetch (v1-v3) reads -1 for the pending
    one, which is what ``mirror.positions`` must never take for "never committed"."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    await create_topic(kafka.bootstrap, unique_topic, 2)
    group = f"pin-{uuid.uuid4().hex[:8]}"
    pending, never = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{group}")
    await admin.start()
    await producer.start()
    try:
        await producer.begin_transaction()
        await (await producer.send(unique_topic, b"x", partition=0))
        await producer.send_offsets_to_transaction({pending: 42}, group)
        unstable = await aiokafka_internals.fetch_stable_offsets(admin, group, [pending, never])
        assert unstable == {never: -1}, unstable
        plain = await admin.list_consumer_group_offsets(group, partitions=[pending])
        assert plain[pending].offset == -1   # what the stable read protects against
        await producer.commit_transaction()

        async def stable() -> bool:
            answer = await aiokafka_internals.fetch_stable_offsets(admin, group, [pending, never])
            return answer == {pending: 42, never: -1}

        await wait_until_async(stable, 20, interval=0.05, what="the committed offset, stable")
    finally:
        await producer.stop()
        await admin.close()


async def test_open_connection_lets_the_reason_through(kafka: KafkaCluster) -> None:
    """aiokafka.conn.create_conn opens one connection as a client would and raises the broker's
    refusal itself (a client's bootstrap only says "Unable to bootstrap"): here a SASL handshake
    that a plaintext listener cannot do."""
    import pytest
    from aiokafka.errors import KafkaError

    host, port = kafka.bootstrap.split(",")[0].rsplit(":", 1)
    await aiokafka_internals.open_connection(host, int(port), security_protocol="PLAINTEXT")
    with pytest.raises((KafkaError, OSError)):
        await aiokafka_internals.open_connection(
            host, int(port), security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username="u", sasl_plain_password="p")


def test_histogram_counts_written_directly_read_as_observations() -> None:
    registry = CollectorRegistry()
    child = Histogram("pin", "x", buckets=(0.1, 1.0), registry=registry)
    assert list(prometheus_internals.upper_bounds(child)) == [0.1, 1.0, float("inf")]
    prometheus_internals.add_counts(child, [2, 0, 1], 5.15)
    value = registry.get_sample_value
    assert value("pin_bucket", {"le": "0.1"}) == 2
    assert value("pin_bucket", {"le": "1.0"}) == 2
    assert value("pin_bucket", {"le": "+Inf"}) == 3
    assert value("pin_count") == 3 and abs(value("pin_sum") - 5.15) < 1e-9


def test_uvicorn_httptools_protocol_hooks_the_guard_relies_on() -> None:
    """``service_kit.http_protocol.GuardedHttpProtocol`` overrides the parser callbacks and swaps
    ``self.app`` for one request; uvicorn must still route through these names (the slow-client
    tests drive the real thing: tests/test_edge_slowclients.py, tests/test_router_https.py)."""
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for name in ("connection_made", "connection_lost", "data_received", "on_message_begin",
                 "on_headers_complete", "on_message_complete", "timeout_keep_alive_handler"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    init = inspect.getsource(HttpToolsProtocol.__init__)
    assert "self.app = config.loaded_app" in init and "self.connections = server_state.connections" in init
    headers = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "app = self.app" in headers and "self.cycle = RequestResponseCycle(" in headers
    # the guard replaces on_response_complete (a lazy keep-alive timer): what uvicorn's does besides
    # the timer must be what the guard's does, and every read must still reach the idle hook
    done = inspect.getsource(HttpToolsProtocol.on_response_complete)
    for step in ("self.server_state.total_requests += 1", "if self.transport.is_closing():",
                 "self.flow.resume_reading()", "cycle, app = self.pipeline.pop()",
                 "self._start_asgi_task(cycle, app)", "self.timeout_keep_alive_task = self.loop.call_later("):
        assert step in done, step
    assert done.count("self.") == 11, done  # nothing more than the steps above (and the unset)
    assert "self._unset_keepalive_if_required()" in inspect.getsource(HttpToolsProtocol.data_received)


def test_the_direct_cycle_has_every_cycle_attribute_uvicorns_protocol_uses() -> None:
    """``service_kit.direct_cycle.DirectCycle`` (and ``ImmediateCycle``) stands in for uvicorn's ``RequestResponseCycle``
    under the same protocol: every ``cycle.<name>`` the protocol's code touches must exist on it
    (behaviour: tests/test_edge_http.py drives pipelining, 100-continue, split bodies, closes)."""
    import re
    from pathlib import Path

    from uvicorn.protocols.http import httptools_impl

    from service_kit.direct_cycle import DirectCycle, ImmediateCycle

    # The module's text, not inspect.getsource(the class): for a class that parses the module with
    # ast, and CPython 3.11.7's ast.parse can fail with "SystemError: AST constructor recursion
    # depth mismatch" depending on the caller's stack depth (CI saw it once; CPython gh-106905).
    source = Path(httptools_impl.__file__).read_text()
    used = set(re.findall(r"\bcycle\.(\w+)", source))
    assert {"body", "more_body", "message_event", "response_complete", "run_asgi"} <= used, used
    provided = set(DirectCycle.__slots__) | {n for n in dir(DirectCycle) if not n.startswith("__")}
    assert used <= provided, used - provided
    # the immediate cycle is never queued behind another request, so never started as a task
    immediate = set(ImmediateCycle.__slots__) | {n for n in dir(ImmediateCycle) if not n.startswith("__")}
    assert used - {"run_asgi"} <= immediate, used - {"run_asgi"} - immediate
    assert "self._start_asgi_task(cycle, app)" in source and "cycle.run_asgi(app)" in source
    assert httptools_impl.STATUS_LINE[200] == b"HTTP/1.1 200 OK\r\n"


def test_py_consul_clients_hold_a_requests_session_their_close_leaves_open() -> None:
    """``service_kit.consul_watch.consul_session`` closes ``client.http.session`` itself because
    py-consul's ``close()`` does not: if a release starts closing it (or renames the session),
    this says so."""
    import requests

    from service_kit.consul_watch import consul_client
    client = consul_client("http://127.0.0.1:1")
    assert isinstance(client.http.session, requests.Session)
    adapter = client.http.session.get_adapter("http://127.0.0.1:1/")
    adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")  # a pool, as a request makes
    client.http.close()
    assert len(adapter.poolmanager.pools) == 1  # py-consul's close() left it (and its sockets) open


def test_chdb_takes_the_merge_threads_nice_value_as_a_start_up_argument(tmp_path) -> None:
    """``central.clickhouse.ChdbClient`` hands ClickHouse's ``os_threads_nice_value_merge_mutate``
    to chdb in its connection string: the server setting must arrive, and merges must run at that
    nice value (read from /proc while merges of many small parts run). A merge thread is set to
    the value when it takes its first task, so a freshly started one can be seen running at 0 for
    an instant (CI saw one such sample): most samples, not all, are at the value. In a fresh
    process: chdb's merge pool is per process, made by the first session that opens."""
    script = textwrap.dedent(f"""
        import os, threading, orjson
        from central.clickhouse import ChdbClient
        from service_kit.wait import wait_until
        client = ChdbClient({str(tmp_path / "chdb")!r}, merge_nice=17)
        setting = client.select("SELECT value FROM system.server_settings "
                                "WHERE name = 'os_threads_nice_value_merge_mutate'")
        client.execute("CREATE TABLE t (x UInt64, s String) ENGINE = MergeTree ORDER BY x")
        seen, stop = [], threading.Event()

        def insert_parts():  # many small parts: merges start and keep running
            while not stop.is_set():
                client.execute("INSERT INTO t SELECT number, toString(number) FROM numbers(200000)")

        def a_merge_thread_runs():
            for task in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{{task}}/comm") as comm, open(f"/proc/self/task/{{task}}/stat") as stat:
                        name, fields = comm.read().strip(), stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # the thread ended
                if name.startswith("MergeMutate") and fields[0] == "R":
                    seen.append(fields[16])
            return len(seen) >= 20

        inserter = threading.Thread(target=insert_parts)
        inserter.start()
        try:
            wait_until(a_merge_thread_runs, timeout=120, interval=0.005, what="20 samples of running merge threads")
        finally:
            stop.set()
            inserter.join()
        print(orjson.dumps({{"setting": setting, "nice": seen}}).decode())
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["setting"] == [{"value": "17"}]
    at_the_value = result["nice"].count("17")
    assert at_the_value >= 0.8 * len(result["nice"]), result["nice"]  # without the setting: all "0"
