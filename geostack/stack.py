"""The whole geo topology on one machine, from the regions file.

Per edge region: a Kafka cluster, a Consul datacenter, ``edges_per_region`` edges registered in it.
Central region: its Kafka cluster, its Consul datacenter (the ACL primary), the mirror (regions
discovered in Consul), ``geo-central`` with its dashboard. In front: the geo router.

``LocalStack(workdir, fixed_ports=True)`` uses the ports of ``regions.yaml`` (``make up``);
``fixed_ports=False`` takes free loopback ports (tests, benchmarks).

HTTPS on the public path, as in production: the stack's CA (``geostack.local_ca``, made once in
``workdir/tls`` and reused) issues the geo router's certificate (``localhost``, ``127.0.0.1``, the
regions file's domain) and an origin certificate per edge; the router serves HTTPS on its public
port (plain HTTP on ``local.router_http_port``) and reaches the edges over HTTPS, verifying their
certificates against the CA (Cloudflare's "Full (strict)"). Clients trust ``client_ssl()``.

A stack started again on the same ``workdir`` keeps its data (Kafka logs, Consul state, the chdb
table) and its ACL tokens: the management token and the services' tokens are kept in
``workdir/consul/acl-tokens.json`` (mode 0600) and reused. Consul's persisted ACL state is why:
a secondary datacenter that has replicated tokens once answers "ACL not found" for a token it has
not replicated yet (it no longer asks the primary), so tokens made new on every start were refused
in ``eu`` and ``us`` until replication caught up (``make up`` twice failed registering Kafka).
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import httpx
import orjson

from harness.consul import ConsulAgent, ConsulPorts, start_agents
from harness.kafka import KafkaCluster
from harness.ports import free_port
from harness.tcp_proxy import TcpProxyGroup
from harness.wan import Link
from geostack import operator_state
from geostack.local_ca import LocalCA
from geostack.processes import ServiceProcess, python_entry
from service_kit.link_shape import LinkShape
from service_kit.regions import Regions, load_regions
from service_kit.wait import wait_until

log = logging.getLogger(__name__)

# the stack's Consul tokens: name -> (policies, description)
STACK_TOKENS: dict[str, tuple[tuple[str, ...], str]] = {
    "edge": (("edge",), "geoingest edges"),
    "mirror": (("mirror",), "geoingest mirror"),
    "georouter": (("georouter",), "geoingest geo router"),
    "kafka-registrar": (("kafka-registrar",), "geoingest kafka registrar"),
    "prometheus": (("prometheus",), "geoingest prometheus"),
}


@dataclass
class EdgeNode:
    """One edge of the stack and where it listens."""

    region: str
    node_id: str
    port: int
    metrics_port: int
    process: ServiceProcess


@dataclass
class LocalStack:
    """Start, inspect, break and stop the local geo topology."""

    workdir: Path
    fixed_ports: bool = False
    edges_per_region: int = 2
    acl: bool = True
    regions: Regions = field(default_factory=load_regions)
    prometheus_config: Path | None = None
    #: brokers per Kafka cluster: one number for every region, or region -> number (default: the
    #: regions file's ``local.brokers`` of each region, else 1)
    brokers: int | Mapping[str, int] | None = None
    #: the region -> centre links: ``regions`` (each edge region's ``wan:`` figures, emulated by
    #: its proxies) or ``off`` (loopback); default ``GEOINGEST_WAN``, else ``regions``
    wan_links: str = field(default_factory=lambda: os.environ.get("GEOINGEST_WAN") or "regions")
    kafka: dict[str, KafkaCluster] = field(default_factory=dict, init=False)
    wan: dict[str, TcpProxyGroup] = field(default_factory=dict, init=False)
    consul: dict[str, ConsulAgent] = field(default_factory=dict, init=False)
    tokens: dict[str, str] = field(default_factory=dict, init=False)
    edges: list[EdgeNode] = field(default_factory=list, init=False)
    mirror: ServiceProcess | None = field(default=None, init=False)
    extra_mirrors: list[ServiceProcess] = field(default_factory=list, init=False)
    central: ServiceProcess | None = field(default=None, init=False)
    router: ServiceProcess | None = field(default=None, init=False)
    prometheus: ServiceProcess | None = field(default=None, init=False)
    central_port: int = field(default=0, init=False)
    router_port: int = field(default=0, init=False)
    router_admin_port: int = field(default=0, init=False)
    router_http_port: int = field(default=0, init=False)
    ca: LocalCA | None = field(default=None, init=False)
    mirror_admin_port: int = field(default=0, init=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "LocalStack":
        """Start every component in dependency order and wait until the router has healthy edges."""
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as undo:
            undo.callback(self.stop)
            self.ca = LocalCA.load_or_create(self.workdir / "tls")
            self._start_kafka()
            self._start_consul()
            self._register_kafka()
            self._start_edges()
            self._start_mirror()
            self._start_central()
            self._start_router()
            self._start_prometheus()
            self.wait_routable()
            operator_state.write_state(self)  # <workdir>/geoctl.json, for geoctl
            undo.pop_all()
        return self

    def stop(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL), the front first; edges that ``geoctl edges
        add`` started first of all."""
        operator_state.stop_added_edges(self.workdir)
        for proc in [self.prometheus, self.router, self.central, *self.extra_mirrors,
                     self.mirror, *[e.process for e in self.edges]]:
            if proc is not None:
                proc.stop(timeout=20)
        for agent in self.consul.values():
            agent.stop()
        for cluster in self.kafka.values():
            cluster.stop()
        for proxy in self.wan.values():
            proxy.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def router_url(self) -> str:
        """The geo router's public HTTPS endpoint (trust ``client_ssl()``)."""
        return f"https://127.0.0.1:{self.router_port}"

    @property
    def router_http_url(self) -> str:
        """The geo router's plain-HTTP port, for clients of the original service."""
        return f"http://127.0.0.1:{self.router_http_port}"

    @property
    def ca_cert(self) -> Path:
        """The stack's CA certificate: what clients trust (``curl --cacert``)."""
        return Path(self.workdir) / "tls" / "ca.pem"

    def client_ssl(self) -> ssl.SSLContext:
        """A client TLS context trusting the stack's CA (for the router and the edges)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    @property
    def central_url(self) -> str:
        return f"http://127.0.0.1:{self.central_port}"

    @property
    def primary(self) -> ConsulAgent:
        return self.consul[self.regions.central.consul_datacenter]

    def urls(self) -> dict[str, str]:
        """The URLs an operator needs."""
        urls = {
            "events_https": f"{self.router_url}/post",
            "events_batch_https": f"{self.router_url}/v1/events",
            "ca_cert": str(self.ca_cert),
            "events": f"{self.router_http_url}/post",           # plain HTTP (the original service's clients)
            "events_batch": f"{self.router_http_url}/v1/events",
            "dashboard": f"{self.central_url}/",
            "central_api": f"{self.central_url}/api/summary",
            "consul_ui": f"{self.primary.url}/ui/",
            "router_metrics": f"http://127.0.0.1:{self.router_admin_port}/metrics",
            "geo_discovery": f"http://127.0.0.1:{self.router_admin_port}/v1/edges",
            "mirror_metrics": f"http://127.0.0.1:{self.mirror_admin_port}/metrics",
            "central_metrics": f"{self.central_url}/metrics",
        }
        for edge in self.edges:
            urls[f"edge_{edge.node_id}"] = f"https://127.0.0.1:{edge.port}/status"
            urls[f"edge_{edge.node_id}_metrics"] = f"http://127.0.0.1:{edge.metrics_port}/metrics"
        for region, cluster in self.kafka.items():
            for node in cluster.nodes:
                urls[f"kafka_{region}_{node.node_id}_metrics"] = node.metrics_url
        for dc, agent in self.consul.items():  # with the prometheus token (ACLs on)
            urls[f"consul_{dc}_metrics"] = f"{agent.url}/v1/agent/metrics?format=prometheus"
        if self.prometheus is not None:
            urls["prometheus"] = f"http://127.0.0.1:{self.prometheus_port}/targets"
        if self.acl:
            urls["consul_ui_token"] = self.primary.management_token
        return urls

    def edges_of(self, region: str) -> list[EdgeNode]:
        return [e for e in self.edges if e.region == region]

    def routable_edges(self) -> dict[str, list[str]]:
        """The geo discovery API's view: healthy edge ids per region."""
        doc = httpx.get(f"http://127.0.0.1:{self.router_admin_port}/v1/edges", timeout=2).json()
        return {region: [e["id"] for e in edges] for region, edges in doc.items()}

    def federated(self) -> bool:
        """Every datacenter answers a catalog query through every other: the WAN federation
        works (after a Consul outage or hang the primary says "No path to datacenter" until
        Serf's WAN reconnect, up to about a minute later, while datacenters still list it)."""
        try:
            for agent in self.consul.values():
                for dc in self.consul:
                    answer = agent.request("GET", "/v1/catalog/services", params={"dc": dc}, timeout=2.0)
                    if answer.status_code != 200:
                        return False
        except httpx.HTTPError:
            return False
        return True

    def wait_federated(self, timeout: float = 120.0) -> None:
        wait_until(self.federated, timeout, interval=0.5, what="every Consul datacenter reachable from every other")

    def wait_routable(self, expected: dict[str, int] | None = None, timeout: float = 90.0) -> None:
        """Wait until the router sees ``expected`` healthy edges per region (default: all)."""
        want = expected or {r.name: self.edges_per_region for r in self.regions.edge_regions}

        def ready() -> bool:
            try:
                seen = self.routable_edges()
            except httpx.HTTPError:
                return False
            return all(len(seen.get(region, [])) == n for region, n in want.items())

        wait_until(ready, timeout, interval=0.25, what=f"routable edges {want}")

    # -- components ------------------------------------------------------------------------------

    @property
    def prometheus_port(self) -> int:
        return int(self.regions.local.get("prometheus_port", 9090))

    def _port(self, fixed: int) -> int:
        return fixed if self.fixed_ports else free_port()

    def _start_kafka(self) -> None:
        """A cluster per region; an edge region's cluster also listens on a WAN port that the
        mirror reaches only through a cuttable proxy (the link from the region to the centre)."""
        regions = self.regions.regions
        clusters = []
        for r in regions:
            n = self.brokers_of(r.name)
            wan_ports = [free_port() for _ in range(n)] if r.role == "edge" else []
            if wan_ports:  # one proxy per broker (each broker advertises its own), one link for all
                shape = self.link_shape(r.name)
                self.wan[r.name] = TcpProxyGroup.to_ports(wan_ports, Link(shape) if shape else None).start()
            # fixed ports: the regions file's pair for node 1, the next pairs (+2, +4) for nodes 2, 3
            node_ports = [(r.local["kafka_port"] + 2 * i, r.local["kafka_controller_port"] + 2 * i)
                          for i in range(n)] if self.fixed_ports else []
            # each broker's JMX exporter (Prometheus job kafka): kafka_metrics_port + i - 1 for node i
            metrics_base = r.local.get("kafka_metrics_port") if self.fixed_ports else None
            metrics_ports = [metrics_base + i for i in range(n)] if metrics_base else [free_port() for _ in range(n)]
            clusters.append(KafkaCluster(
                self.workdir / "kafka" / r.name, brokers=n, node_ports=node_ports, metrics_ports=metrics_ports,
                heap="384m" if n == 1 else "320m", wan_ports=wan_ports,
                wan_advertised_all=self.wan[r.name].addresses if wan_ports else ()))
        self.kafka = {r.name: c for r, c in zip(regions, clusters)}
        for cluster in clusters:
            cluster.start(wait=False)
        for cluster in clusters:
            cluster.wait_ready()
        self._write_kafka_targets()

    def kafka_targets(self) -> list[dict[str, object]]:
        """Every broker's JMX exporter, as Prometheus file-based discovery reads them."""
        return [{"targets": [n.metrics_url.removeprefix("http://").removesuffix("/metrics")
                             for n in cluster.nodes if n.metrics_port],
                 "labels": {"region": region}} for region, cluster in self.kafka.items()]

    def _write_kafka_targets(self) -> None:
        """``workdir/prometheus/kafka-targets.json``, which observability/prometheus.yml's
        ``kafka`` job reads: one, or three brokers per cluster, whatever this start runs."""
        path = self.workdir / "prometheus" / "kafka-targets.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self.kafka_targets(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def brokers_of(self, region: str) -> int:
        if isinstance(self.brokers, int):
            return self.brokers
        if self.brokers is not None and region in self.brokers:
            return int(self.brokers[region])
        return int(self.regions[region].local.get("brokers", 1))

    def replication_of(self, region: str) -> int:
        """Replication factor of the topics the stack's services create in ``region``."""
        return min(3, self.brokers_of(region))

    def link_shape(self, region: str) -> LinkShape | None:
        """The shape of ``region``'s link to the centre that the stack emulates (None: loopback)."""
        if self.wan_links not in ("regions", "off"):
            raise ValueError(f"wan_links (GEOINGEST_WAN) must be regions or off, not {self.wan_links!r}")
        return self.regions[region].wan if self.wan_links == "regions" else None

    def link_shapes(self) -> dict[str, dict[str, float] | None]:
        """Every edge region's emulated link (None: loopback), for reports."""
        return {r.name: (s.as_dict() if (s := self.link_shape(r.name)) else None)
                for r in self.regions.edge_regions}

    def region_bootstrap(self, region: str) -> str:
        """How the centre reaches a region's Kafka: through its WAN link (edge regions)."""
        return self.wan[region].address if region in self.wan else self.kafka[region].bootstrap

    def _start_consul(self) -> None:
        central_dc = self.regions.central.consul_datacenter
        dcs = [central_dc] + [r.consul_datacenter for r in self.regions.edge_regions]
        ports = None
        if self.fixed_ports:
            base = int(self.regions.local.get("consul_http_port", 8500))
            ports = [ConsulPorts(http=base + i) for i in range(len(dcs))]
        acl_args: dict[str, str] = {}
        kept: dict[str, str] = {}
        if self.acl:
            saved = self._read_acl_tokens()
            kept = dict(saved.get("tokens") or {})
            # the same management token on every start: it is the secondaries' agent and
            # replication token, which they must find in their persisted, replicated ACL state
            acl_args["management_token"] = str(saved.get("management") or uuid.uuid4())
            self._write_acl_tokens(acl_args["management_token"], kept)
        # telemetry: /v1/agent/metrics?format=prometheus (Prometheus job consul)
        agents = start_agents(dcs, self.workdir / "consul", acl=self.acl, dev=False, ports=ports,
                              extra_config={"ui_config": {"enabled": True},
                                            "telemetry": {"prometheus_retention_time": "60s",
                                                          "disable_hostname": True}}, **acl_args)
        self.consul = {a.datacenter: a for a in agents}
        if self.acl:
            primary = self.consul[central_dc]
            primary.apply_policies()
            self.tokens = {name: self._stack_token(primary, kept.get(name), policies, description)
                           for name, (policies, description) in STACK_TOKENS.items()}
            self._write_acl_tokens(primary.management_token, self.tokens)
            self._wait_tokens_everywhere()
        # the token (agent:read) that observability/prometheus.yml's consul job reads; empty without ACLs
        fd = os.open(self.workdir / "consul" / "prometheus.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(self.tokens.get("prometheus", ""))

    @property
    def acl_tokens_path(self) -> Path:
        """Where the stack keeps its Consul ACL tokens between starts (mode 0600)."""
        return Path(self.workdir) / "consul" / "acl-tokens.json"

    def _read_acl_tokens(self) -> dict:
        try:
            doc = orjson.loads(self.acl_tokens_path.read_bytes())
        except FileNotFoundError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_acl_tokens(self, management: str, tokens: dict[str, str]) -> None:
        """Write the file readable by this user only, atomically (a half-written file would lose
        the management token of a persisted Consul state)."""
        path = self.acl_tokens_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # also when an older tmp file was wider
            out.write(orjson.dumps({"management": management, "tokens": tokens},
                                   option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _stack_token(primary: ConsulAgent, secret: str | None, policies: tuple[str, ...],
                     description: str) -> str:
        """The kept token when the primary still knows it with exactly ``policies``; else a new
        one (a kept token with other policies is deleted)."""
        if secret:
            answer = primary.request("GET", "/v1/acl/token/self", token=secret)
            if answer.status_code == 200:
                held = sorted(p.get("Name", "") for p in answer.json().get("Policies") or [])
                if held == sorted(policies):
                    return secret
                primary.delete_token(secret)
            log.info("stack Consul token %r not reusable (HTTP %s): creating a new one",
                     description, answer.status_code)
        return primary.create_token(list(policies), description)

    def _wait_tokens_everywhere(self, timeout: float = 60.0) -> None:
        """Wait until every datacenter resolves the stack's tokens: a new token reaches a
        secondary by ACL replication only (see the module docstring)."""
        secrets = [self.primary.management_token, *self.tokens.values()]

        def known() -> bool:
            try:
                return all(agent.request("GET", "/v1/acl/token/self", token=secret,
                                         timeout=2.0).status_code == 200
                           for agent in self.consul.values() for secret in secrets)
            except httpx.HTTPError:
                return False

        wait_until(known, timeout, interval=0.25, what="the stack's ACL tokens in every Consul datacenter")

    def _register_kafka(self) -> None:
        """Each Kafka broker becomes an instance of service ``kafka`` in its datacenter with a TCP
        check of its listener; the region and its (WAN) bootstrap list are in the meta. A
        one-broker cluster's instance is ``kafka-<region>``, a broker of several ``kafka-<region>-<id>``."""
        for region in self.regions.regions:
            cluster = self.kafka[region.name]
            agent = self.consul[region.consul_datacenter]
            for node in cluster.nodes:
                sid = f"kafka-{region.name}" if len(cluster.nodes) == 1 else f"kafka-{region.name}-{node.node_id}"
                body = {
                    "ID": sid, "Name": "kafka", "Address": "127.0.0.1",
                    "Port": node.port, "Tags": [f"region-{region.name}", region.role],
                    "Meta": {"region": region.name, "bootstrap": self.region_bootstrap(region.name),
                             "role": region.role, "broker_id": str(node.node_id)},
                    "Check": {"CheckID": f"{sid}-tcp", "Name": "kafka listener",
                              "TCP": node.bootstrap, "Interval": "1s", "Timeout": "1s"},
                }
                agent.request("PUT", "/v1/agent/service/register", json=body,
                              token=self.tokens.get("kafka-registrar"), check=True)

    def _start_edges(self) -> None:
        for region in self.regions.edge_regions:
            ports = region.local.get("edge_ports", [])
            metrics_ports = region.local.get("edge_metrics_ports", [])
            for i in range(self.edges_per_region):
                node_id = f"{region.name}-{i + 1}"
                assert self.ca is not None
                origin = self.ca.issue(f"edge-{node_id}", [f"{node_id}.edges.{self.regions.domain}",
                                                           "localhost", "127.0.0.1"])
                port = self._port(ports[i] if i < len(ports) else 0)
                metrics_port = self._port(metrics_ports[i] if i < len(metrics_ports) else 0)
                env = {
                    "GEO_EDGE_LISTEN": f"127.0.0.1:{port}",
                    "GEO_EDGE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                    "GEO_EDGE_KAFKA": self.kafka[region.name].bootstrap,
                    "GEO_EDGE_TOPIC_REPLICATION": str(self.replication_of(region.name)),
                    # several brokers: an acks=all produce waits out a leader's failover
                    # instead of answering 503 — a killed broker is fenced after its 6-s session,
                    # up to ~3 s more when it was the active controller (a new one is elected and
                    # its session clock starts again); the router waits 20 s for an edge
                    **({"GEO_EDGE_PRODUCE_TIMEOUT": "15"} if self.brokers_of(region.name) > 1 else {}),
                    "GEO_EDGE_REGION": region.name,
                    "GEO_EDGE_NODE_ID": node_id,
                    "GEO_EDGE_WORKERS": "1",
                    "GEO_EDGE_TRUSTED_PROXIES": "127.0.0.0/8",
                    "GEO_EDGE_DRAIN_DELAY": "0",
                    "GEO_EDGE_TLS_CERT": str(origin.cert),   # an origin certificate of the stack's CA
                    "GEO_EDGE_TLS_KEY": str(origin.key),
                    "GEO_EDGE_CONSUL_URL": self.consul[region.consul_datacenter].url,
                    **({"GEO_EDGE_CONSUL_TOKEN": self.tokens["edge"]} if self.acl else {}),
                }
                proc = ServiceProcess(f"edge-{node_id}", python_entry("edge.cli"), self.workdir / "logs",
                                      env=env, health_url=f"https://127.0.0.1:{port}/status",
                                      health_verify=self.client_ssl())
                self.edges.append(EdgeNode(region.name, node_id, port, metrics_port, proc))
        for edge in self.edges:
            edge.process.start()
        for edge in self.edges:
            edge.process.wait_healthy(90)

    def _start_mirror(self) -> None:
        central = self.regions.central
        self.mirror_admin_port = self._port(central.local.get("mirror_metrics_port", 0))
        self.mirror = self._mirror_process("mirror", self.mirror_admin_port)
        self.mirror.start().wait_healthy(90)

    def add_mirror(self) -> tuple[ServiceProcess, int]:
        """Start one more mirror worker (same source groups: the workers split the partitions);
        returns it and its admin port. ``stop()`` stops it with the rest."""
        port = free_port()
        proc = self._mirror_process(f"mirror-{len(self.extra_mirrors) + 2}", port)
        self.extra_mirrors.append(proc)
        proc.start().wait_healthy(90)
        return proc, port

    def _mirror_process(self, name: str, admin_port: int) -> ServiceProcess:
        env = {
            "GEO_MIRROR_CENTRAL": self.kafka[self.regions.central.name].bootstrap,
            "GEO_MIRROR_REPLICATION_FACTOR": str(self.replication_of(self.regions.central.name)),
            "GEO_MIRROR_ADMIN_HOST": "127.0.0.1",
            "GEO_MIRROR_ADMIN_PORT": str(admin_port),
            "GEO_MIRROR_CLIENT_ID": f"geo-{name}",
            "GEO_MIRROR_CONSUL_URL": self.primary.url,
            "GEO_MIRROR_CONSUL_DATACENTERS": ",".join(r.consul_datacenter for r in self.regions.edge_regions),
            **({"GEO_MIRROR_CONSUL_TOKEN": self.tokens["mirror"]} if self.acl else {}),
        }
        return ServiceProcess(name, python_entry("mirror.cli"), self.workdir / "logs", env=env,
                              health_url=f"http://127.0.0.1:{admin_port}/status")

    def _start_central(self) -> None:
        central = self.regions.central
        self.central_port = self._port(central.local.get("central_port", 0))
        env = {
            "GEO_CENTRAL_BOOTSTRAP": self.kafka[central.name].bootstrap,
            "GEO_CENTRAL_HOST": "127.0.0.1",
            "GEO_CENTRAL_PORT": str(self.central_port),
            "GEO_CENTRAL_DATA_DIR": str(self.workdir / "chdb"),
        }
        self.central = ServiceProcess("central", python_entry("central.cli"), self.workdir / "logs",
                                      env=env, health_url=f"{self.central_url}/status")
        self.central.start().wait_healthy(120)

    def _start_router(self) -> None:
        self.router_port = self._port(int(self.regions.local.get("router_port", 8080)))
        self.router_admin_port = self._port(int(self.regions.local.get("router_metrics_port", 9180)))
        self.router_http_port = self._port(int(self.regions.local.get("router_http_port", 8081)))
        assert self.ca is not None
        cert = self.ca.issue("router", ["localhost", "127.0.0.1", self.regions.domain])
        env = {
            "GEO_ROUTER_HOST": "127.0.0.1",
            "GEO_ROUTER_PORT": str(self.router_port),
            "GEO_ROUTER_TLS_CERT": str(cert.cert),
            "GEO_ROUTER_TLS_KEY": str(cert.key),
            "GEO_ROUTER_HTTP_PORT": str(self.router_http_port),
            "GEO_ROUTER_EDGE_CA_FILE": str(self.ca_cert),
            "GEO_ROUTER_TIMEOUT": "20",
            "GEO_ROUTER_ADMIN_PORT": str(self.router_admin_port),
            "GEO_ROUTER_CONSUL_URL": self.primary.url,
            **({"GEO_ROUTER_CONSUL_TOKEN": self.tokens["georouter"]} if self.acl else {}),
        }
        self.router = ServiceProcess("router", python_entry("geostack.router_cli"), self.workdir / "logs",
                                     env=env, health_url=None)
        self.router.start()

    def _start_prometheus(self) -> None:
        """Prometheus scraping every component (``observability/prometheus.yml``, regions.yaml's
        fixed ports), when a config is given and the binary is installed."""
        binary = shutil.which("prometheus")
        if self.prometheus_config is None or binary is None:
            return
        self.prometheus = ServiceProcess(
            "prometheus", [binary, f"--config.file={self.prometheus_config}",
                           f"--storage.tsdb.path={self.workdir / 'prometheus'}",
                           f"--web.listen-address=127.0.0.1:{self.prometheus_port}"],
            self.workdir / "logs", health_url=f"http://127.0.0.1:{self.prometheus_port}/-/ready")
        self.prometheus.start().wait_healthy(60)
