"""Real Consul agents (one server per datacenter) on free loopback ports.

    with ConsulAgent(workdir / "eu", datacenter="eu", acl=True) as eu:   # starts, waits for a leader
        secret = eu.create_token(["edge"])          # policies from consul/policies/*.hcl
        eu.stop(); eu.start()                       # same ports: "Consul stopped and restarted"
    eu.join_wan(ru)                                 # datacenters federated over the WAN

The binary: ``consul_binary()`` runs ``harness/consul_build/build.sh`` (``consul`` on PATH, else
the cached build in ``$GEOINGEST_CACHE/consul-<version>/consul``, else builds it: minutes).
``dev=True`` (default) runs ``consul agent -dev`` (state in memory, lost on restart);
``dev=False`` runs a single bootstrapping server whose state lives in ``workdir/data``.
HTTP calls go through httpx with an explicit ``X-Consul-Token``; ``client()`` returns a py-consul
client (remember: ``CONSUL_HTTP_TOKEN`` in the environment overrides its ``token=``).
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import httpx

from harness.ports import free_port
from harness.managed import ManagedProcess
from service_kit.wait import wait_until

REPO = Path(__file__).resolve().parent.parent
BUILD_SH = REPO / "harness" / "consul_build" / "build.sh"
CONSUL_CONFIG_DIR = REPO / "consul"
POLICY_DIR = CONSUL_CONFIG_DIR / "policies"
SERVICE_DIR = CONSUL_CONFIG_DIR / "services"
AGENT_CONFIG_DIR = CONSUL_CONFIG_DIR / "agent"
POLICIES = ("edge", "mirror", "georouter", "kafka-registrar", "prometheus", "geoctl")


@functools.cache
def consul_binary() -> str:
    """Path of a usable consul binary (built on first use, then cached on disk and in-process)."""
    out = subprocess.run(["bash", str(BUILD_SH)], check=True, stdout=subprocess.PIPE, text=True)
    path = out.stdout.strip().splitlines()[-1]
    if not Path(path).is_file():
        raise RuntimeError(f"{BUILD_SH} printed {path!r}, which is not a file")
    return path


def consul_version() -> str:
    """``vX.Y.Z`` of ``consul_binary()``."""
    out = subprocess.run([consul_binary(), "version"], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.split()[1]


def policy_rules(name: str) -> str:
    """The ACL rules (HCL) of policy ``name`` from ``consul/policies/<name>.hcl``."""
    return (POLICY_DIR / f"{name}.hcl").read_text()


def _free_tcp_udp_port() -> int:
    """A loopback port free for both TCP and UDP (Consul's DNS and Serf ports use both)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@dataclass
class ConsulPorts:
    """The loopback ports one agent listens on (``grpc_tls`` and ``https`` are disabled)."""

    http: int = field(default_factory=free_port)
    dns: int = field(default_factory=_free_tcp_udp_port)
    grpc: int = field(default_factory=free_port)
    serf_lan: int = field(default_factory=_free_tcp_udp_port)
    serf_wan: int = field(default_factory=_free_tcp_udp_port)
    server: int = field(default_factory=free_port)


class ConsulError(RuntimeError):
    """A Consul HTTP call answered with an unexpected status."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        super().__init__(f"{response.request.method} {response.request.url.path} -> "
                         f"{response.status_code}: {response.text.strip()[:500]}")


@dataclass(eq=False)
class ConsulAgent(ManagedProcess):
    """One Consul server agent: datacenter ``datacenter``, logs in ``workdir/consul.log``.

    ``acl=True`` enables ACLs with ``default_policy = "deny"``; ``management_token`` (a random
    UUID unless given) is the initial management token and also the agent's own token.
    ``primary_datacenter`` (default: this one) is the ACL authority when datacenters federate.
    ``config_files`` are extra ``-config-file`` arguments, read before the harness's own file;
    command-line flags (ports, datacenter, node, bind) win over every file.
    """

    workdir: Path
    datacenter: str = "dc1"
    node: str = ""
    acl: bool = False
    management_token: str = ""
    primary_datacenter: str = ""
    dev: bool = True
    log_level: str = "INFO"
    config_files: Sequence[Path] = ()
    extra_config: dict[str, Any] = field(default_factory=dict)
    ports: ConsulPorts = field(default_factory=ConsulPorts)
    stop_timeout = 15.0

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.node = self.node or f"consul-{self.datacenter}"
        self.primary_datacenter = self.primary_datacenter or self.datacenter
        if self.acl and not self.management_token:
            self.management_token = str(uuid.uuid4())

    # -- addresses -------------------------------------------------------------------------------

    @property
    def http_addr(self) -> str:
        """``127.0.0.1:PORT`` of the HTTP API (what ``CONSUL_HTTP_ADDR`` takes)."""
        return f"127.0.0.1:{self.ports.http}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def serf_wan_addr(self) -> str:
        return f"127.0.0.1:{self.ports.serf_wan}"

    @property
    def dns_addr(self) -> str:
        return f"127.0.0.1:{self.ports.dns}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "consul.log"

    # -- lifecycle (start, stop, kill, hang, resume, restart, log_tail: ManagedProcess) ---------

    def argv(self) -> list[str]:
        """The command line that ``start()`` runs (writes the harness config file)."""
        config = self._write_config()
        p = self.ports
        argv = [consul_binary(), "agent"]
        if self.dev:
            argv.append("-dev")
        else:
            argv += ["-server", "-bootstrap-expect=1", f"-data-dir={self.workdir / 'data'}"]
        for extra in self.config_files:
            argv.append(f"-config-file={extra}")
        argv += [
            f"-config-file={config}",
            f"-datacenter={self.datacenter}", f"-node={self.node}",
            "-bind=127.0.0.1", "-client=127.0.0.1",
            f"-http-port={p.http}", f"-dns-port={p.dns}", f"-grpc-port={p.grpc}",
            f"-serf-lan-port={p.serf_lan}", f"-serf-wan-port={p.serf_wan}",
            f"-server-port={p.server}", f"-log-level={self.log_level}",
        ]
        return argv

    def command(self) -> list[str]:
        argv = self.argv()
        with open(self.log_path, "ab") as log:
            log.write(f"---- harness: {' '.join(argv)}\n".encode())
        return argv

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def working_directory(self) -> Path:
        return self.workdir

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until a leader is elected (and, with ACLs in the primary, the management token
        resolves); raise with the log tail otherwise."""
        try:
            wait_until(lambda: self.dead_or(bool(self.leader())), timeout,
                       what=f"a consul leader at {self.url}")
            self.check_alive("consul")
            if self.acl and self.primary_datacenter == self.datacenter:
                wait_until(lambda: self.dead_or(self._token_resolves(self.management_token)),
                           timeout, what="the ACL management token to resolve")
                self.check_alive("consul")
        except Exception as exc:
            raise RuntimeError(f"consul {self.datacenter} at {self.url} not ready: {exc}\n"
                               f"{self.log_tail()}") from exc

    # -- HTTP ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, *, check: bool = False,
                timeout: float = 10.0, **kwargs: Any) -> httpx.Response:
        """One HTTP call to ``/v1/...``; ``token=None`` sends the management token (if any),
        ``token=""`` sends none. ``check=True`` raises ``ConsulError`` on a non-2xx answer."""
        if token is None:
            token = self.management_token
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["X-Consul-Token"] = token
        response = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=timeout,
                                 **kwargs)
        if check and not response.is_success:
            raise ConsulError(response)
        return response

    def leader(self) -> str:
        """``/v1/status/leader`` (empty while there is none or the agent is down)."""
        try:
            response = self.request("GET", "/v1/status/leader", token="", timeout=2.0)
        except httpx.HTTPError:
            return ""
        return response.json() if response.status_code == 200 else ""

    def datacenters(self) -> list[str]:
        """``/v1/catalog/datacenters``: this one and every WAN-joined one."""
        return self.request("GET", "/v1/catalog/datacenters", check=True).json()

    def client(self, token: str | None = None, dc: str | None = None) -> Any:
        """A py-consul ``consul.Consul`` for this agent (``token=None``: the management token).
        ``CONSUL_HTTP_TOKEN`` in the environment overrides the token."""
        import consul

        return consul.Consul(host="127.0.0.1", port=self.ports.http,
                             token=self.management_token if token is None else token, dc=dc)

    # -- federation ------------------------------------------------------------------------------

    def join_wan(self, other: "ConsulAgent", timeout: float = 30.0) -> None:
        """Join ``other``'s datacenter over the WAN and wait until both list both datacenters.
        With ACLs, call it on the primary (a secondary resolves tokens through the primary)."""
        self.request("PUT", f"/v1/agent/join/{other.serf_wan_addr}", params={"wan": "1"},
                     check=True)
        wanted = {self.datacenter, other.datacenter}

        def federated() -> bool:
            try:
                return wanted <= set(self.datacenters()) and wanted <= set(other.datacenters())
            except (httpx.HTTPError, ConsulError):
                return False

        wait_until(federated, timeout, what=f"datacenters {sorted(wanted)} to see each other")

    # -- ACLs ------------------------------------------------------------------------------------

    def apply_policies(self, names: Iterable[str] = POLICIES) -> dict[str, str]:
        """Create or update the ACL policies ``consul/policies/<name>.hcl``; return name -> ID.
        Call it on the primary datacenter (policies are global)."""
        ids: dict[str, str] = {}
        for name in names:
            body = {"Name": name, "Rules": policy_rules(name),
                    "Description": f"geoingest {name} (consul/policies/{name}.hcl)"}
            existing = self.request("GET", f"/v1/acl/policy/name/{name}")
            if existing.status_code == 200:
                policy_id = existing.json()["ID"]
                self.request("PUT", f"/v1/acl/policy/{policy_id}", json=body, check=True)
            else:
                policy_id = self.request("PUT", "/v1/acl/policy", json=body, check=True).json()["ID"]
            ids[name] = policy_id
        return ids

    def create_token(self, policies: Sequence[str], description: str = "",
                     local: bool = False) -> str:
        """A new token (its SecretID) holding ``policies``, which are created from
        ``consul/policies/`` first when missing. ``local=True``: valid in this datacenter only."""
        missing = [n for n in policies
                   if self.request("GET", f"/v1/acl/policy/name/{n}").status_code != 200]
        if missing:
            self.apply_policies(missing)
        body = {"Description": description or f"geoingest {'+'.join(policies)}",
                "Policies": [{"Name": n} for n in policies], "Local": local}
        return self.request("PUT", "/v1/acl/token", json=body, check=True).json()["SecretID"]

    def delete_token(self, secret: str) -> None:
        accessor = self.request("GET", "/v1/acl/token/self", token=secret, check=True).json()
        self.request("DELETE", f"/v1/acl/token/{accessor['AccessorID']}", check=True)

    # -- internals -------------------------------------------------------------------------------

    def _token_resolves(self, token: str) -> bool:
        try:
            return self.request("GET", "/v1/acl/token/self", token=token,
                                timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def config(self) -> dict[str, Any]:
        """The harness's agent configuration (JSON), before ``extra_config`` is merged in."""
        config: dict[str, Any] = {
            "primary_datacenter": self.primary_datacenter,
            "ports": {"grpc_tls": -1, "https": -1},
            "disable_update_check": True,         # no calls home: loopback only
            "disable_anonymous_signature": True,
            "enable_script_checks": False,
            "leave_on_terminate": False,
            "connect": {"enabled": False},        # no service mesh in geoingest
            "performance": {"raft_multiplier": 1},
        }
        if not self.dev:
            config["ui_config"] = {"enabled": False}
        if self.acl:
            tokens: dict[str, str] = {"agent": self.management_token}
            if self.primary_datacenter == self.datacenter:
                tokens["initial_management"] = self.management_token
            else:
                tokens["replication"] = self.management_token
            config["acl"] = {
                "enabled": True,
                "default_policy": "deny",
                "down_policy": "extend-cache",
                "enable_token_persistence": False,
                "enable_token_replication": self.primary_datacenter != self.datacenter,
                "tokens": tokens,
            }
        return config

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = _merge(self.config(), self.extra_config)
        path = self.workdir / "harness.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def start_agents(datacenters: Sequence[str], workdir: Path, *, federate: bool = True,
                 ports: Sequence[ConsulPorts] | None = None, **kwargs: Any) -> list[ConsulAgent]:
    """One agent per datacenter (started in parallel), WAN-joined to the first when ``federate``;
    ``ports``: one ``ConsulPorts`` per datacenter (free ports when omitted).
    With ``acl=True`` the first datacenter is the primary and holds the management token."""
    kwargs = dict(kwargs)
    if kwargs.get("acl"):
        kwargs.setdefault("management_token", str(uuid.uuid4()))
        kwargs.setdefault("primary_datacenter", datacenters[0])
    port_sets = list(ports) if ports is not None else [ConsulPorts() for _ in datacenters]
    agents = [ConsulAgent(Path(workdir) / dc, datacenter=dc, ports=p, **kwargs)
              for dc, p in zip(datacenters, port_sets)]
    try:
        for agent in agents:
            agent.start(wait=False)
        for agent in agents:
            agent.wait_ready()
        if federate:
            for agent in agents[1:]:
                agents[0].join_wan(agent)   # from the primary: a secondary's ACLs need it first
    except BaseException:
        for agent in agents:
            agent.stop()
        raise
    return agents
