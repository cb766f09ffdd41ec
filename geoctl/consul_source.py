"""What Consul knows: datacenters, the ``edge`` and ``kafka`` services and their checks.

Plain HTTP API calls (httpx) with the operator's token (read-only policy ``geoctl``:
``consul/policies/geoctl.hcl``); a refused token or an unreachable agent is a ``GeoctlError``
with one line to show, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from geoctl.errors import GeoctlError

class ConsulUnavailable(GeoctlError):
    """Consul (or one datacenter through it) did not answer; a refused token is a plain GeoctlError."""


#: health states of an edge as geoctl shows them
EDGE_STATES = ("passing", "warning", "critical", "draining")


@dataclass(frozen=True)
class ServiceInstance:
    """One registered instance of a service with its aggregated check state."""

    id: str
    datacenter: str
    node: str
    address: str
    port: int
    meta: dict[str, str]
    state: str           # passing / warning / critical / draining
    output: str = ""     # the failing check's output, shortened

    @property
    def region(self) -> str:
        return self.meta.get("region", "")


def instance_state(checks: list[dict[str, Any]]) -> tuple[str, str]:
    """The state of an instance from its service checks (and its node's): the worst one, and
    ``draining`` for a critical edge whose ``/status`` says it drains (the SIGTERM drain)."""
    statuses = [c.get("Status", "critical") for c in checks]
    worst = "critical" if "critical" in statuses else "warning" if "warning" in statuses else "passing"
    failing = [c for c in checks if c.get("Status") != "passing"]
    output = " ".join(str(failing[0].get("Output", "")).split())[:200] if failing else ""
    if worst == "critical" and any('"draining":true' in str(c.get("Output", "")).replace(" ", "")
                                   for c in checks):
        return "draining", output
    return worst, output


@dataclass
class Consul:
    """A Consul HTTP API (``url``: any agent of the federation) with a token."""

    url: str
    token: str = ""
    timeout: float = 5.0
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"X-Consul-Token": self.token} if self.token else {}
            self._client = httpx.Client(base_url=self.url.rstrip("/"), headers=headers, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def get(self, path: str, **params: str) -> Any:
        try:
            answer = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ConsulUnavailable(f"Consul at {self.url} is unreachable ({type(exc).__name__}: {exc})") from None
        if answer.status_code == 403:
            reason = " ".join(answer.text.split())[:120] or "permission denied"
            raise GeoctlError(f"Consul refused the token (403 {reason}); check --consul-token / "
                              f"--consul-token-file (policy geoctl, read only)")
        if answer.status_code != 200:
            raise ConsulUnavailable(f"Consul at {self.url} answered {answer.status_code} for {path}: "
                              f"{' '.join(answer.text.split())[:160]}")
        return answer.json()

    def check_token(self) -> None:
        """Fail early, with the clear message, when the token is refused."""
        if self.token:
            self.get("/v1/acl/token/self")

    def datacenters(self) -> list[str]:
        return list(self.get("/v1/catalog/datacenters"))

    def service(self, name: str, datacenter: str) -> list[ServiceInstance]:
        """Every registered instance of ``name`` in ``datacenter``, healthy or not."""
        entries = self.get(f"/v1/health/service/{name}", dc=datacenter)
        instances = []
        for entry in entries:
            service = entry.get("Service") or {}
            state, output = instance_state(entry.get("Checks") or [])
            instances.append(ServiceInstance(
                id=service.get("ID", ""), datacenter=datacenter, node=(entry.get("Node") or {}).get("Node", ""),
                address=service.get("Address") or (entry.get("Node") or {}).get("Address", ""),
                port=int(service.get("Port") or 0), meta=dict(service.get("Meta") or {}),
                state=state, output=output))
        return sorted(instances, key=lambda i: i.id)

    def edges(self, datacenter: str) -> list[ServiceInstance]:
        return self.service("edge", datacenter)

    def kafka(self, datacenter: str) -> list[ServiceInstance]:
        return self.service("kafka", datacenter)
