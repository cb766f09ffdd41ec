"""The admin listener of a background service: ``/metrics`` (Prometheus) and ``/status`` (health).

Health is a callable returning ``(healthy, details)``; ``/status`` answers 200 or 503 with the
details as JSON, so that Consul, load balancers and operators read the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service_kit.wait import wait_until_async

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server run inside a service's own loop: it leaves SIGTERM/SIGINT to the service
    (``service_kit.shutdown``) and stops when ``should_exit`` is set."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def admin_app(health: HealthCheck, registry: CollectorRegistry = REGISTRY) -> Starlette:
    """A Starlette app serving ``/metrics`` and ``/status``."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def status(_: Request) -> Response:
        ok, details = health()
        body = {"status": "ok" if ok else "unavailable", **details}
        return Response(orjson.dumps(body, default=str), status_code=200 if ok else 503,
                        media_type="application/json")

    return Starlette(routes=[Route("/metrics", metrics), Route("/status", status),
                             Route("/healthz", status)])


async def serve_admin(host: str, port: int, health: HealthCheck, registry: CollectorRegistry = REGISTRY,
                      startup_timeout: float = 60.0) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """Serve the admin app in the running loop; returns the server (``should_exit``) and its task
    once it listens (raises what its start raised, or TimeoutError after ``startup_timeout``)."""
    config = uvicorn.Config(admin_app(health, registry), host=host, port=port, log_config=None,
                            access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until_async(lambda: server.started or task.done(), startup_timeout, interval=0.01,
                               what=f"the admin listener on {host}:{port} to start")
    except TimeoutError:
        task.cancel()
        raise
    if task.done():
        task.result()
    return server, task
