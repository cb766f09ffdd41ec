"""Running the edge under uvicorn: graceful draining on SIGTERM, workers, TLS, the metrics listener.

SIGTERM in a worker: ``/status`` turns 503 (draining), the drain delay passes, the pre-shutdown
hooks run, then uvicorn closes the listener, lets in-flight requests finish
(``--shutdown-timeout``) and runs the lifespan shutdown, which flushes the producer. The process
then exits 0. With ``--workers`` > 1 uvicorn's own supervisor forwards SIGTERM to every worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from types import FrameType

import uvicorn
from uvicorn.supervisors import multiprocess

from edge import lifecycle
from edge.config import CONFIG_ENV, EdgeConfig
from service_kit.http_protocol import ProtectedConfig

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains (``Lifecycle.drain``) before it stops, and exits 0 on SIGTERM."""

    _drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit:
            if sig == signal.SIGINT:  # a second Ctrl+C: stop waiting
                self.force_exit = True
                self.should_exit = True
            return
        life = lifecycle.current()
        if life is None or not self.started:
            self.should_exit = True
            return
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain(life))

    async def _drain(self, life: lifecycle.Lifecycle) -> None:
        try:
            await life.drain()
        finally:
            self.should_exit = True


class EdgeProcess(multiprocess.Process):
    """uvicorn's worker process, running a ``DrainingServer``."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def uvicorn_config(config: EdgeConfig) -> uvicorn.Config:
    """uvicorn settings for the edge: uvloop, httptools with slow-client protection and one write
    per response (``service_kit.http_protocol``), TLS when configured, the factory by name."""
    return ProtectedConfig(
        "edge.app:create_app_from_env", limits=config.connection_limits(), factory=True,
        host=config.host, port=config.port, workers=config.workers, loop="uvloop", lifespan="on",
        log_config=None, access_log=False, server_header=False, date_header=False,
        timeout_graceful_shutdown=int(config.shutdown_timeout) or 1, backlog=4096,
        ssl_certfile=config.tls_cert or None, ssl_keyfile=config.tls_key or None,
        # The edge decides itself which forwarded headers to believe (--trusted-proxies): uvicorn's
        # own X-Forwarded-For rewriting (on by default for 127.0.0.1) would let a loopback client
        # spoof scope["client"] and with it the trust decision.
        proxy_headers=False,
    )


def start_metrics_listener(config: EdgeConfig, multiproc: bool) -> None:
    """Serve ``/metrics`` on the metrics port from a thread of this (parent) process."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    registry = REGISTRY
    if multiproc:
        from prometheus_client import multiprocess as prom_mp
        registry = CollectorRegistry()
        prom_mp.MultiProcessCollector(registry)
    start_http_server(config.metrics_port, config.metrics_host, registry=registry)


def run(config: EdgeConfig) -> None:
    """Serve the edge until SIGTERM/SIGINT; returns after a graceful shutdown."""
    os.environ[CONFIG_ENV] = config.to_env()
    multiproc = config.workers > 1
    own_dir = None
    if multiproc:
        prom_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not prom_dir:
            own_dir = prom_dir = tempfile.mkdtemp(prefix="geo-edge-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
        for name in os.listdir(prom_dir):  # stale files of a previous run
            if name.endswith(".db"):
                os.remove(os.path.join(prom_dir, name))
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ucfg = uvicorn_config(config)
    start_metrics_listener(config, multiproc)
    try:
        if multiproc:
            multiprocess.Process = EdgeProcess  # type: ignore[misc]  # workers run DrainingServer
            sock = ucfg.bind_socket()
            multiprocess.Multiprocess(ucfg, sockets=[sock]).run()
        else:
            DrainingServer(ucfg).run()
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
