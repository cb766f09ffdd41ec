"""The edge's entry in Consul: registered at start, kept registered, drained and removed at shutdown.

Consul is never on the request path: registration runs in the background and is retried with
backoff while Consul is down or slow; when the agent comes back without our entry (a restarted
agent), it is registered again. On shutdown the edge's ``/status`` already answers 503; the
registrar waits until Consul's HTTP check has seen that (the check turns critical, so the load
balancer and the geo router stop sending), then deregisters.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import consul

from service_kit.consul_watch import consul_session

log = logging.getLogger(__name__)


@dataclass
class EdgeRegistration:
    """What the edge registers: service ``edge`` with an HTTP check on ``/status``."""

    service_id: str
    address: str
    port: int
    region: str
    version: str
    check_url: str
    #: where the edge's Prometheus /metrics listens (HOST:PORT), published as meta ``metrics`` so
    #: that operators' tools (``geoctl edges``) find it from Consul alone; empty: not published
    metrics_address: str = ""
    service: str = "edge"
    tags: tuple[str, ...] = ()
    check_interval: str = "1s"
    check_timeout: str = "1s"
    deregister_critical_after: str = "1m"
    tls_skip_verify: bool = True
    #: how the load balancer reaches the edge (Meta.scheme): https when it serves TLS
    scheme: str = "http"

    @property
    def all_tags(self) -> list[str]:
        return [f"region-{self.region}", f"version-{self.version}", *self.tags]

    @property
    def check_id(self) -> str:
        return f"service:{self.service_id}"


@dataclass
class ConsulRegistrar:
    """Keeps an :class:`EdgeRegistration` in the local Consul agent."""

    url: str
    registration: EdgeRegistration
    token: str | None = None
    resync_interval: float = 5.0
    request_timeout: float = 3.0
    registered: bool = field(default=False, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Start the background registration loop."""
        self._task = asyncio.create_task(self._keep_registered(), name="consul-registrar")

    async def drain_and_deregister(self, critical_timeout: float = 10.0, linger: float = 1.0) -> None:
        """Wait (bounded) until Consul sees the check critical, keep the critical entry ``linger``
        seconds so that watchers (blocking queries, monitors) see it, then deregister; never raises."""
        if self._task is not None:
            self._task.cancel()
        try:
            loop_deadline = asyncio.get_running_loop().time() + critical_timeout
            while asyncio.get_running_loop().time() < loop_deadline:
                status = await self._call(self._check_status)
                if status in ("critical", None):
                    if status == "critical":
                        await asyncio.sleep(linger)
                    break
                await asyncio.sleep(0.2)
            await self._call(self._deregister)
            log.info("deregistered from consul", extra={"service_id": self.registration.service_id})
        except Exception as exc:
            log.warning("consul deregistration failed; deregister_critical_after will reap it",
                        extra={"error": repr(exc)})

    async def _keep_registered(self) -> None:
        backoff = 0.5
        while True:
            try:
                present = await self._call(self._is_registered)
                if not present:
                    await self._call(self._register)
                    log.info("registered in consul", extra={"service_id": self.registration.service_id,
                                                            "consul": self.url})
                self.registered = True
                backoff = 0.5
                await asyncio.sleep(self.resync_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.registered = False
                log.warning("consul registration failed; retrying", extra={"error": repr(exc),
                                                                           "retry_in": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _call(self, fn):  # type: ignore[no-untyped-def]
        return await asyncio.wait_for(asyncio.to_thread(fn), self.request_timeout + 1)

    def _client(self):  # type: ignore[no-untyped-def]
        """A client for one call, its connection closed when the call ends. Left to the garbage
        collector, each call's client kept its connection open (a py-consul client is a reference
        cycle, and the edge collects cycles rarely) until the agent's per-address limit (200)
        answered everyone on 127.0.0.1 with 429."""
        return consul_session(self.url, self.token, timeout=self.request_timeout)

    def _register(self) -> None:
        reg = self.registration
        check = consul.Check.http(reg.check_url, reg.check_interval, timeout=reg.check_timeout,
                                  deregister=reg.deregister_critical_after) | {"TLSSkipVerify": reg.tls_skip_verify}
        with self._client() as client:
            client.agent.service.register(
                reg.service, service_id=reg.service_id, address=reg.address, port=reg.port,
                tags=reg.all_tags,
                meta={"region": reg.region, "version": reg.version, "scheme": reg.scheme,
                      **({"metrics": reg.metrics_address} if reg.metrics_address else {})},
                check=check, token=self.token)

    def _is_registered(self) -> bool:
        with self._client() as client:
            return self.registration.service_id in client.agent.services()

    def _check_status(self) -> str | None:
        with self._client() as client:
            checks = client.agent.checks()
        check = checks.get(self.registration.check_id)
        return check["Status"] if check else None

    def _deregister(self) -> None:
        with self._client() as client:
            client.agent.service.deregister(self.registration.service_id, token=self.token)
