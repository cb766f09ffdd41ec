"""The Consul harness: real agents start, enforce the ACL policies of consul/, restart on their
ports and federate over the WAN; the files in consul/ are valid for the real agent."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import consul
import hcl2
import httpx
import pytest
import yaml

from harness.consul import (AGENT_CONFIG_DIR, BUILD_SH, CONSUL_CONFIG_DIR, POLICIES, POLICY_DIR,
                            SERVICE_DIR, ConsulAgent, consul_binary, consul_version, start_agents)
from harness.ports import port_open
from service_kit.wait import wait_until

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def consul_factory(tmp_path: Path) -> Iterator[Callable[..., ConsulAgent]]:
    """Start agents that the test may stop, kill and restart; all stopped at teardown."""
    started: list[ConsulAgent] = []

    def start(datacenter: str = "eu", **kwargs: Any) -> ConsulAgent:
        agent = ConsulAgent(tmp_path / f"{datacenter}-{len(started)}", datacenter=datacenter,
                            **kwargs)
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agents_factory(tmp_path: Path) -> Iterator[Callable[..., list[ConsulAgent]]]:
    """``start_agents`` with teardown."""
    started: list[ConsulAgent] = []

    def start(datacenters: list[str], **kwargs: Any) -> list[ConsulAgent]:
        agents = start_agents(datacenters, tmp_path / f"set{len(started)}", **kwargs)
        started.extend(agents)
        return agents

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # py-consul lets CONSUL_HTTP_TOKEN / CONSUL_HTTP_ADDR override its arguments.
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("CONSUL_HTTP_ADDR", raising=False)


def _pinned_version() -> str:
    text = (BUILD_SH.parent / "go.mod").read_text()
    return re.search(r"^require github\.com/hashicorp/consul (v\S+)", text, re.M).group(1)


def _edge_check(agent: ConsulAgent) -> Any:
    # Any HTTP check will do: this one hits the agent itself and passes.
    return consul.Check.http(f"{agent.url}/v1/status/leader", interval="1s", timeout="1s",
                             deregister="1m")


# -- the binary ---------------------------------------------------------------------------------

def test_binary_is_the_pinned_build() -> None:
    path = consul_binary()
    assert os.access(path, os.X_OK)
    if path != _on_path():
        assert consul_version() == _pinned_version()
        assert Path(path).parent.name == f"consul-{_pinned_version().lstrip('v')}"


def _on_path() -> str | None:
    import shutil

    return shutil.which("consul")


# -- one agent ----------------------------------------------------------------------------------

def test_agent_starts_and_answers(consul_factory) -> None:
    agent = consul_factory("eu", node="edge-host-1")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", agent.http_addr)
    assert agent.url == f"http://{agent.http_addr}"
    leader = httpx.get(f"{agent.url}/v1/status/leader").json()
    assert leader == f"127.0.0.1:{agent.ports.server}"
    me = httpx.get(f"{agent.url}/v1/agent/self").json()
    assert me["Config"]["Datacenter"] == "eu"
    assert me["Config"]["NodeName"] == "edge-host-1"
    assert agent.datacenters() == ["eu"]
    # py-consul talks to it too.
    assert agent.client().status.leader() == leader
    # every port is its own and the DNS interface answers on TCP
    ports = vars(agent.ports)
    assert len(set(ports.values())) == len(ports)
    assert port_open("127.0.0.1", agent.ports.dns)


def test_two_agents_are_independent(consul_factory) -> None:
    a = consul_factory("eu")
    b = consul_factory("us")
    assert a.http_addr != b.http_addr
    a.request("PUT", "/v1/kv/only-in-a", content=b"1", check=True)
    assert b.request("GET", "/v1/kv/only-in-a").status_code == 404
    assert b.datacenters() == ["us"]


def test_stop_and_start_on_the_same_ports(consul_factory) -> None:
    agent = consul_factory("eu")
    addr, pid = agent.http_addr, agent.pid
    agent.stop()
    assert not agent.running
    assert not port_open("127.0.0.1", agent.ports.http)
    with pytest.raises(OSError):
        os.kill(pid, 0)  # reaped, not a zombie
    agent.start()
    assert agent.http_addr == addr and agent.pid != pid
    assert agent.leader() == f"127.0.0.1:{agent.ports.server}"
    # a crash (SIGKILL) and a start again
    agent.kill()
    assert not port_open("127.0.0.1", agent.ports.http)
    agent.start()
    assert agent.leader()


def test_persistent_server_keeps_its_state_across_a_restart(consul_factory) -> None:
    agent = consul_factory("ru", dev=False, acl=True)
    token = agent.create_token(["edge"])
    agent.request("PUT", "/v1/kv/geoingest/marker", content=b"kept", check=True)
    agent.kill()
    agent.start()
    assert agent.request("GET", "/v1/kv/geoingest/marker", params={"raw": "1"}).content == b"kept"
    assert agent.request("GET", "/v1/acl/token/self", token=token).status_code == 200


def test_context_manager_stops_the_agent(tmp_path: Path) -> None:
    with ConsulAgent(tmp_path / "cm", datacenter="us") as agent:
        assert agent.leader()
        port = agent.ports.http
    assert not agent.running
    assert not port_open("127.0.0.1", port)


# -- ACLs ---------------------------------------------------------------------------------------

def test_acl_deny_by_default_and_edge_token_registers_only_edge(consul_factory) -> None:
    agent = consul_factory("eu", acl=True)
    ids = agent.apply_policies()  # every policy file is accepted by the server
    assert set(ids) == set(POLICIES)
    anonymous = agent.request("PUT", "/v1/agent/service/register", token="",
                              json={"Name": "edge", "Port": 1})
    assert anonymous.status_code == 403

    edge = agent.client(token=agent.create_token(["edge"], description="edge eu-1"))
    assert edge.agent.service.register("edge", service_id="edge-eu-1", address="127.0.0.1",
                                       port=18081, meta={"region": "eu"},
                                       check=_edge_check(agent))
    with pytest.raises(consul.ACLPermissionDenied):
        edge.agent.service.register("kafka", service_id="kafka-eu-1", port=19092)
    with pytest.raises(consul.ACLPermissionDenied):
        edge.agent.service.register("edge-evil", port=1)

    # The geo router's read-only token sees the passing edge and cannot write.
    router = agent.client(token=agent.create_token(["georouter"]))
    wait_until(lambda: len(router.health.service("edge", passing=True)[1]) == 1, 30,
               what="edge-eu-1 to pass its check")
    (entry,) = router.health.service("edge", passing=True)[1]
    assert entry["Service"]["ID"] == "edge-eu-1" and entry["Service"]["Meta"] == {"region": "eu"}
    with pytest.raises(consul.ACLPermissionDenied):
        router.agent.service.register("edge", service_id="edge-router", port=1)

    # The edge deregisters itself on shutdown.
    assert edge.agent.service.deregister("edge-eu-1")
    assert router.health.service("edge")[1] == []


def test_kafka_registrar_registers_the_example_service_and_mirror_reads_it(consul_factory) -> None:
    agent = consul_factory("eu", acl=True)
    registrar = agent.create_token(["kafka-registrar"])
    edge = agent.create_token(["edge"])
    definition = str(SERVICE_DIR / "kafka.hcl")

    def cli(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONSUL_HTTP_ADDR": agent.http_addr, "CONSUL_HTTP_TOKEN": token}
        return subprocess.run([consul_binary(), *args], env=env, capture_output=True, text=True,
                              timeout=30)

    refused = cli(edge, "services", "register", definition)
    assert refused.returncode != 0 and "403" in refused.stderr + refused.stdout
    done = cli(registrar, "services", "register", definition)
    assert done.returncode == 0, done.stderr

    mirror = agent.client(token=agent.create_token(["mirror"]))
    _, nodes = mirror.health.service("kafka")
    (entry,) = nodes
    assert entry["Service"]["ID"] == "kafka-eu-1"
    assert entry["Service"]["Meta"]["bootstrap"] == "127.0.0.1:19092"
    # read only: the mirror cannot register, and cannot see services it has no rule for
    with pytest.raises(consul.ACLPermissionDenied):
        mirror.agent.service.register("kafka", service_id="kafka-mirror", port=1)
    agent.client().agent.service.register("edge", service_id="edge-x", port=1)
    assert mirror.health.service("edge")[1] == []


# -- datacenters --------------------------------------------------------------------------------

def test_two_datacenters_joined_over_the_wan(consul_factory) -> None:
    eu = consul_factory("eu")
    ru = consul_factory("ru")
    eu.join_wan(ru)
    assert sorted(eu.datacenters()) == ["eu", "ru"]
    assert sorted(ru.datacenters()) == ["eu", "ru"]
    # a request for the other datacenter is forwarded over the WAN
    ru.request("PUT", "/v1/kv/where", content=b"ru", check=True)
    got = eu.request("GET", "/v1/kv/where", params={"dc": "ru", "raw": "1"}, check=True)
    assert got.content == b"ru"


def test_federated_acls_primary_tokens_work_in_the_edge_datacenters(agents_factory) -> None:
    ru, eu, us = agents_factory(["ru", "eu", "us"], acl=True)
    assert all(sorted(a.datacenters()) == ["eu", "ru", "us"] for a in (ru, eu, us))
    edge_token = ru.create_token(["edge"])          # global: created in the primary
    router_token = ru.create_token(["georouter"])

    # an edge in "eu" registers with its local agent using the global token
    edge = eu.client(token=edge_token)
    wait_until(lambda: eu.request("GET", "/v1/acl/token/self", token=edge_token).status_code == 200,
               30, what="the edge token to resolve in eu")
    assert edge.agent.service.register("edge", service_id="edge-eu-1", port=18081,
                                       check=_edge_check(eu))
    with pytest.raises(consul.ACLPermissionDenied):
        edge.agent.service.register("kafka", port=19092)

    # the geo router asks its own agent about every edge datacenter
    router = ru.client(token=router_token)
    wait_until(lambda: [e["Service"]["ID"] for e in
                        router.health.service("edge", passing=True, dc="eu")[1]] == ["edge-eu-1"],
               30, what="the router to see edge-eu-1 through dc=eu")
    assert router.health.service("edge", passing=True, dc="us")[1] == []


# -- the configuration files --------------------------------------------------------------------

def test_agent_configuration_per_region_is_valid() -> None:
    regions = yaml.safe_load((REPO / "regions.yaml").read_text())["regions"]
    primaries = set()
    for region in regions:
        dc = region.get("consul_datacenter", region["name"])
        path = AGENT_CONFIG_DIR / f"{dc}.hcl"
        assert path.exists(), f"no agent configuration for datacenter {dc}"
        parsed = hcl2.loads(path.read_text())
        assert _unquote(parsed["datacenter"]) == dc
        primaries.add(_unquote(parsed["primary_datacenter"]))
        check = subprocess.run([consul_binary(), "validate", "-quiet",
                                str(AGENT_CONFIG_DIR / "common.hcl"), str(path),
                                str(SERVICE_DIR / "kafka.hcl")],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    central = [r.get("consul_datacenter", r["name"]) for r in regions if r["role"] == "central"]
    assert primaries == set(central)


def test_agent_configuration_files_run_a_real_server(consul_factory) -> None:
    # common.hcl + ru.hcl as given; the harness's flags set ports, bind, -bootstrap-expect=1.
    agent = consul_factory("ru", dev=False, acl=True,
                           config_files=[AGENT_CONFIG_DIR / "common.hcl", AGENT_CONFIG_DIR / "ru.hcl"])
    me = agent.request("GET", "/v1/agent/self", check=True).json()
    assert me["Config"]["Datacenter"] == "ru"
    assert {k: v for k, v in me["Meta"].items() if not k.startswith("consul-")} == \
        {"region": "ru", "role": "central"}
    assert agent.request("GET", "/v1/catalog/services", token="").json() == {}  # deny by default


def test_policy_files_and_no_python_package_in_consul_dir() -> None:
    assert {p.stem for p in POLICY_DIR.glob("*.hcl")} == set(POLICIES)
    for name in POLICIES:
        hcl2.loads((POLICY_DIR / f"{name}.hcl").read_text())
    assert not (CONSUL_CONFIG_DIR / "__init__.py").exists()
    # `import consul` must stay py-consul, never the configuration directory
    assert "site-packages" in (consul.__file__ or "")
    assert (CONSUL_CONFIG_DIR / "README.md").exists()


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value
