"""The HTTP API and dashboard (Starlette): counts, top values, latency, freshness, one event,
summary, ``/status``, ``/metrics`` and the static dashboard page."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from central.clickhouse import ClickHouseError
from central.metrics import CentralMetrics
from central.queries import BadParameter, Queries, TimeRange, bucket_seconds, dimension, limit

log = logging.getLogger(__name__)
DASHBOARD = Path(__file__).with_name("dashboard")
Health = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def build_app(queries: Queries, metrics: CentralMetrics, health: Health) -> Starlette:
    """The Starlette app serving the API, the dashboard, ``/status`` and ``/metrics``."""

    def endpoint(name: str, handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            try:
                result = await handler(request)
            except BadParameter as exc:
                return _json({"error": str(exc)}, 400)
            except ClickHouseError as exc:
                log.error("query failed", extra={"endpoint": name, "error": str(exc)[:500]})
                return _json({"error": "query failed"}, 503)
            finally:
                metrics.query_seconds.labels(name).observe(time.perf_counter() - started)
            if isinstance(result, Response):
                return result
            return _json(result)
        return wrapped

    async def counts(request: Request) -> Any:
        p = request.query_params
        rng = TimeRange.from_params(p)
        by = dimension(p)
        bucket = bucket_seconds(p, rng.end - rng.start)
        rows = await queries.counts(by, bucket, rng)
        return {"by": by, "bucket_s": bucket, "from": rng.start, "to": rng.end, "rows": rows}

    async def top(request: Request) -> Any:
        p = request.query_params
        rng = TimeRange.from_params(p)
        by = dimension(p, "event")
        return {"by": by, "from": rng.start, "to": rng.end, "rows": await queries.top(by, rng, limit(p))}

    async def latency(request: Request) -> Any:
        rng = TimeRange.from_params(request.query_params)
        return {"from": rng.start, "to": rng.end, "rows": await queries.latency(rng)}

    async def freshness(_: Request) -> Any:
        return {"now": int(time.time() * 1000), "rows": await queries.freshness()}

    async def event(request: Request) -> Any:
        event_id = request.path_params["event_id"]
        if not 1 <= len(event_id) <= 200:
            raise BadParameter("event id: 1 to 200 characters")
        row = await queries.event(event_id)
        return row if row is not None else _json({"error": "no such event"}, 404)

    async def summary(_: Request) -> Any:
        return await queries.summary()

    async def audit(request: Request) -> Any:
        run_id = request.query_params.get("run_id", "")
        if not 1 <= len(run_id) <= 100:
            raise BadParameter("run_id: 1 to 100 characters")
        return await queries.audit(run_id, request.query_params.get("ids") == "1")

    async def status(_: Request) -> Response:
        ok, details = await health()
        return _json({"status": "ok" if ok else "unavailable", **details}, 200 if ok else 503)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(_: Request) -> Response:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-store"})

    async def script(_: Request) -> Response:
        return FileResponse(DASHBOARD / "dashboard.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/", page), Route("/dashboard.js", script),
        Route("/api/counts", endpoint("counts", counts)),
        Route("/api/top", endpoint("top", top)),
        Route("/api/latency", endpoint("latency", latency)),
        Route("/api/freshness", endpoint("freshness", freshness)),
        Route("/api/events/{event_id:str}", endpoint("event", event)),
        Route("/api/summary", endpoint("summary", summary)),
        Route("/api/audit", endpoint("audit", audit)),
        Route("/status", status), Route("/healthz", status), Route("/metrics", prometheus),
    ])
