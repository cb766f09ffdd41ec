"""Helpers for the edge's tests and benchmark: run the app in-process (lifespan included) or as a
real ``geo-edge`` process, and read records back from Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

import httpx
from aiokafka import AIOKafkaConsumer
from starlette.applications import Starlette

from edge.app import create_app
from edge.config import EdgeConfig
from service_kit.wait import wait_until, wait_until_async


def edge_config(bootstrap: str, topic: str, **overrides: Any) -> EdgeConfig:
    """An ``EdgeConfig`` for tests: short timeouts, the given Kafka and topic."""
    base = dict(kafka=bootstrap, topic=topic, region="test", node_id="edge-t1", produce_timeout=3.0,
                kafka_check_interval=0.5, topic_partitions=3, linger_ms=1)
    base.update(overrides)
    return EdgeConfig(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_app(config: EdgeConfig, wait_up: bool = True,
                      timeout: float = 30.0) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running and an httpx client on it (ASGI transport, peer 127.0.0.1)."""
    app = create_app(config)
    async with app.router.lifespan_context(app):
        if wait_up:
            await wait_until_async(lambda: app.state.sink.up, timeout, interval=0.05,
                                   what="the edge's Kafka sink to be up")
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            yield app, client


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning (fails after ``timeout`` seconds)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await asyncio.wait_for(consumer.start(), timeout)
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    records.extend(recs)
    finally:
        await consumer.stop()
    return records


def edge_argv(config: EdgeConfig) -> list[str]:
    """The ``geo-edge`` command line for ``config``."""
    argv = [str(Path(sys.executable).with_name("geo-edge")),
            "--listen", f"{config.host}:{config.port}",
            "--metrics-listen", f"{config.metrics_host}:{config.metrics_port}"]
    defaults = EdgeConfig()
    for field in dataclasses.fields(EdgeConfig):
        if field.name in ("host", "port", "metrics_host", "metrics_port"):
            continue
        value = getattr(config, field.name)
        if value == getattr(defaults, field.name):
            continue
        flag = "--" + {"schema_file": "schema"}.get(field.name, field.name).replace("_", "-")
        if isinstance(value, tuple):
            argv += [flag, *value]
        else:
            argv += [flag, str(value)]
    return argv


def edge_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``geo-edge`` child: no inherited GEO_EDGE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_EDGE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra or {})
    return env


def wait_status(url: str, want: int, timeout: float, verify: Any = True) -> None:
    """Poll ``GET url`` until it answers ``want``."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0, verify=verify).status_code == want
        except httpx.HTTPError:
            return False

    wait_until(check, timeout, interval=0.1, what=f"{url} -> {want}")


__all__ = ["edge_config", "running_app", "consume", "edge_argv", "edge_env", "wait_status",
           "subprocess"]


def fuzz_live_edge(base_url: str, max_examples: int = 30, write_key: str | None = None,
                   unauthenticated_every: int = 5, seed: int | None = None) -> dict[str, Any]:
    """Run schemathesis against a live edge's ``/openapi.json``: every operation, ``max_examples``
    generated cases each, with the response checks (no 5xx; status code, content type, headers
    and body conform to the description). With ``write_key`` every ``unauthenticated_every``-th
    case goes without it (expecting the documented 401). Returns what was tried and found."""
    import collections

    import schemathesis
    from hypothesis import HealthCheck, given, seed as hseed, settings
    from schemathesis import checks as st_checks

    selected = [st_checks.not_a_server_error, st_checks.status_code_conformance,
                st_checks.content_type_conformance, st_checks.response_headers_conformance,
                st_checks.response_schema_conformance]
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    summary: dict[str, Any] = {"base_url": base_url, "max_examples": max_examples, "operations": {},
                               "failures": []}
    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        statuses: collections.Counter[str] = collections.Counter()
        tried = [0]

        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            tried[0] += 1
            headers = {}
            if write_key and tried[0] % unauthenticated_every:
                headers["X-Write-Key"] = write_key
            response = case.call(base_url=base_url, timeout=10, headers=headers)
            statuses[str(response.status_code)] += 1
            try:
                case.validate_response(response, checks=selected)
            except Exception as exc:  # schemathesis raises a group of check failures
                summary["failures"].append({"operation": name, "status": response.status_code,
                                            "failure": str(exc)[:600]})
                raise

        if seed is not None:
            check = hseed(seed)(check)
        try:
            check()
        finally:
            summary["operations"][name] = {"examples": tried[0], "statuses": dict(statuses)}
    summary["examples"] = sum(op["examples"] for op in summary["operations"].values())
    return summary
