"""The edge's Starlette application: routes, CORS, lifespan (Kafka producer per worker)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import yaml
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge import errors, lifecycle, metrics
from edge.auth import load_write_keys
from edge.consul_registration import ConsulRegistrar, EdgeRegistration
from edge.config import EdgeConfig
from edge.enrich import Enricher, ProxyTrust
from edge.handlers import BatchEvents, EdgeContext, PixelEvent, PostEvent
from edge.limits import StructureLimits, check_headers
from edge.ratelimit import TokenBuckets
from edge.sink import KafkaSink
from edge.validation import make_checker
from service_kit.gc_tuning import tune_for_throughput

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


def load_openapi() -> dict[str, Any]:
    """The OpenAPI description of the edge (``edge/openapi.yaml``)."""
    return yaml.safe_load(OPENAPI_PATH.read_text())


def create_app(config: EdgeConfig) -> Starlette:
    """The edge app for ``config``; the lifespan starts and stops its Kafka producer."""
    sink = KafkaSink(config)
    life = lifecycle.Lifecycle(drain_delay=config.drain_delay)
    lifecycle.register(life)
    ctx = EdgeContext(
        sink=sink, check=make_checker(config.validation, config.schema_file),
        enricher=Enricher(config.region, config.node_id), trust=ProxyTrust(config.trusted_proxies),
        max_body_bytes=config.max_body_bytes, max_event_bytes=config.max_event_bytes,
        max_batch_events=config.max_batch_events, retry_after=str(config.retry_after).encode(),
        structure=StructureLimits(config.max_json_depth, config.max_string_length),
        write_keys=load_write_keys(config.write_keys_file),
        ip_buckets=TokenBuckets(config.rate_limit_ip, config.rate_limit_ip_burst,
                                config.rate_limit_table_size) if config.rate_limit_ip else None,
        key_buckets=TokenBuckets(config.rate_limit_key, config.rate_limit_key_burst,
                                 config.rate_limit_table_size) if config.rate_limit_key else None,
    )
    openapi_json = orjson.dumps(load_openapi())
    status_counters = {code: metrics.REQUESTS.labels("/status", str(code)) for code in (200, 503)}

    async def status(_: Request) -> Response:
        reasons = []
        if life.draining:
            reasons.append("draining")
        if not sink.up:
            reasons.append("kafka_unavailable")
        ok = not reasons
        body = {"status": "ok" if ok else "unavailable", "reasons": reasons, "region": config.region,
                "edge": config.node_id, "draining": life.draining,
                "kafka": {"up": sink.up, "error": sink.last_error, "pending_events": sink.pending}}
        code = 200 if ok else 503
        status_counters[code].inc()
        return Response(orjson.dumps(body), status_code=code, media_type="application/json",
                        headers={"cache-control": "no-store"})

    async def openapi(_: Request) -> Response:
        return Response(openapi_json, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sink.start()
        if config.consul_url:
            registrar = edge_registrar(config)
            registrar.start()
            life.add_pre_shutdown_hook(
                lambda: registrar.drain_and_deregister(config.consul_drain_timeout))
        try:
            yield
        finally:
            await sink.stop()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess
                multiprocess.mark_process_dead(os.getpid())

    middleware = [Middleware(HeaderLimits, max_count=config.max_headers, max_bytes=config.max_header_bytes)]
    if config.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["content-type", "content-encoding", "idempotency-key", "x-sent-at",
                           "authorization", "x-write-key"],
            expose_headers=["retry-after", "www-authenticate"], max_age=600))
    post, batch, pixel = PostEvent(ctx), BatchEvents(ctx), PixelEvent(ctx)
    app = EdgeApp(
        fast_routes={(b"POST", "/post"): post, (b"POST", "/v1/events"): batch, (b"GET", "/v1/pixel.gif"): pixel},
        max_headers=config.max_headers, max_header_bytes=config.max_header_bytes,
        routes=[
            Route("/post", post, methods=["POST"]),
            Route("/v1/events", batch, methods=["POST"]),
            Route("/v1/pixel.gif", pixel, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.sink = sink
    app.state.lifecycle = life
    app.state.context = ctx
    return app


class EdgeApp(Starlette):
    """Starlette with a fast path: an event request without ``Origin`` (no CORS work to do) goes
    straight to its endpoint after the header-limit check, skipping the middleware stack and the
    router's pattern matching. Everything else takes the ordinary Starlette way. Under the edge's
    own HTTP protocol the same decision (``direct_endpoint``) is taken before any ASGI cycle
    exists, and the endpoint runs in a ``DirectCycle``."""

    def __init__(self, *, fast_routes: dict[tuple[bytes, str], Any], max_headers: int,
                 max_header_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes = {(method.decode(), path): ep for (method, path), ep in fast_routes.items()}
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    def direct_endpoint(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
        """The endpoint that serves this request without the middleware and the router — an event
        route, no ``Origin`` (no CORS work), headers within the limits — else None. The edge's
        HTTP protocol asks this when a request's head is complete (``service_kit.direct_cycle``)."""
        endpoint = self.fast_routes.get((method, path))
        if endpoint is None or len(headers) > self.max_headers:
            return None
        size = 0
        for name, value in headers:
            if name == b"origin":
                return None
            size += len(name) + len(value)
        return endpoint if size <= self.max_header_bytes else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            endpoint = self.direct_endpoint(scope["method"], scope["path"], scope["headers"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class HeaderLimits:
    """ASGI middleware: 431 ``headers_too_large`` when a request has too many or too large header
    fields (httptools itself enforces no limit on them)."""

    def __init__(self, app: Any, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._counter = metrics.REQUESTS.labels("*", "431")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                check_headers(scope["headers"], self.max_count, self.max_bytes)
            except errors.EdgeError as exc:
                body = exc.body()
                metrics.EVENTS_REJECTED.labels(exc.reason).inc()
                self._counter.inc()
                await send({"type": "http.response.start", "status": exc.status, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def edge_registrar(config: EdgeConfig) -> ConsulRegistrar:
    """The Consul registrar of this edge: service ``edge``, id = node id, check on ``/status``."""
    address = config.advertise_address or ("127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host)
    scheme = "https" if config.tls_cert else "http"
    metrics_address = address if config.metrics_host in ("0.0.0.0", "::", "") else config.metrics_host
    return ConsulRegistrar(
        url=config.consul_url, token=config.consul_token or None,
        registration=EdgeRegistration(
            service_id=config.node_id, address=address, port=config.port, region=config.region,
            version=edge_version(), check_url=f"{scheme}://{address}:{config.port}/status", scheme=scheme,
            metrics_address=f"{metrics_address}:{config.metrics_port}",
            check_interval=config.consul_check_interval,
            deregister_critical_after=config.consul_deregister_after),
    )


def edge_version() -> str:
    try:
        return importlib.metadata.version("geoingest")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def create_app_from_env() -> Starlette:
    """uvicorn factory for worker processes: the configuration comes from ``GEO_EDGE_CONFIG_JSON``."""
    config = EdgeConfig.from_env()
    from service_kit.logs import configure_logging
    configure_logging(config.log_level, service="geo-edge", region=config.region, edge=config.node_id)
    # No access log: uvicorn decides per connection with hasHandlers(), which the root JSON handler
    # would satisfy (and then it formats the request line of every answer).
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate = [], False
    app = create_app(config)
    # The hot path allocates many short-lived objects: collect the young generation less often
    # and keep the start-up objects out of every collection.
    tune_for_throughput()
    return app
