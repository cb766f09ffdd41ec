"""Edges in a real Consul agent: registration, health, drain, crash, Consul outages, ACLs."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from edge.consul_registration import ConsulRegistrar, EdgeRegistration
from geostack.processes import ServiceProcess, python_entry
from harness.consul import ConsulAgent
from harness.kafka import KafkaCluster
from harness.ports import free_port
from service_kit.wait import wait_until, wait_until_async


@pytest.fixture
def consul_agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    with ConsulAgent(tmp_path / "consul", datacenter="eu") as agent:
        yield agent


@pytest.fixture
def acl_agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    with ConsulAgent(tmp_path / "consul-acl", datacenter="eu", acl=True) as agent:
        yield agent


def start_edge(tmp_path: Path, kafka: KafkaCluster, agent: ConsulAgent, node_id: str,
               token: str = "", deregister_after: str = "1m") -> ServiceProcess:
    port, metrics_port = free_port(), free_port()
    env = {"GEO_EDGE_LISTEN": f"127.0.0.1:{port}", "GEO_EDGE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
           "GEO_EDGE_KAFKA": kafka.bootstrap, "GEO_EDGE_REGION": "eu", "GEO_EDGE_NODE_ID": node_id,
           "GEO_EDGE_CONSUL_URL": agent.url, "GEO_EDGE_CONSUL_TOKEN": token,
           "GEO_EDGE_CONSUL_DEREGISTER_AFTER": deregister_after, "GEO_EDGE_PRODUCE_TIMEOUT": "2",
           "GEO_EDGE_KAFKA_CHECK_INTERVAL": "0.5"}
    proc = ServiceProcess(f"edge-{node_id}", python_entry("edge.cli"), tmp_path / "logs", env=env,
                          health_url=f"http://127.0.0.1:{port}/status")
    proc.port = port  # type: ignore[attr-defined]
    proc.metrics_port = metrics_port  # type: ignore[attr-defined]
    return proc.start()


def edge_health(agent: ConsulAgent) -> dict[str, str]:
    """service id -> aggregated check status of every registered `edge` instance."""
    entries = agent.request("GET", "/v1/health/service/edge", check=True).json()
    result = {}
    for entry in entries:
        statuses = {c["Status"] for c in entry["Checks"] if c.get("ServiceID")}
        result[entry["Service"]["ID"]] = "critical" if "critical" in statuses else (
            "passing" if statuses == {"passing"} else "warning")
    return result


def test_edge_registers_with_a_passing_check_and_meta(tmp_path, kafka, consul_agent) -> None:
    edge = start_edge(tmp_path, kafka, consul_agent, "eu-reg-1")
    try:
        edge.wait_healthy(60)
        wait_until(lambda: edge_health(consul_agent).get("eu-reg-1") == "passing", 30,
                   what="a passing edge check")
        service = consul_agent.request("GET", "/v1/agent/service/eu-reg-1", check=True).json()
        assert service["Service"] == "edge"
        assert service["Port"] == edge.port  # type: ignore[attr-defined]
        assert service["Meta"]["region"] == "eu" and service["Meta"]["version"]
        assert service["Meta"]["metrics"] == f"127.0.0.1:{edge.metrics_port}"  # type: ignore[attr-defined]
        assert "region-eu" in service["Tags"]
    finally:
        edge.stop()


@pytest.mark.slow
def test_edge_without_kafka_goes_critical_and_comes_back(tmp_path, kafka_factory, consul_agent) -> None:
    (cluster,) = kafka_factory(1)
    edge = start_edge(tmp_path, cluster, consul_agent, "eu-kafka-1")
    try:
        edge.wait_healthy(60)
        wait_until(lambda: edge_health(consul_agent).get("eu-kafka-1") == "passing", 30, what="passing")
        cluster.stop()
        wait_until(lambda: edge_health(consul_agent).get("eu-kafka-1") == "critical", 60,
                   what="critical after Kafka stopped")
        passing = consul_agent.request("GET", "/v1/health/service/edge", params={"passing": "1"}).json()
        assert [e["Service"]["ID"] for e in passing] == []
        cluster.start()
        wait_until(lambda: edge_health(consul_agent).get("eu-kafka-1") == "passing", 90,
                   what="passing again after Kafka returned")
    finally:
        edge.stop()


def test_sigterm_drains_before_deregistering(tmp_path, kafka, consul_agent) -> None:
    edge = start_edge(tmp_path, kafka, consul_agent, "eu-drain-1")
    edge.wait_healthy(60)
    wait_until(lambda: edge_health(consul_agent).get("eu-drain-1") == "passing", 30, what="passing")
    seen: list[str] = []
    edge.send(signal.SIGTERM)

    def gone() -> bool:  # records every state it passes through on the way
        state = edge_health(consul_agent).get("eu-drain-1", "gone")
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == "gone"

    try:
        wait_until(gone, 30, interval=0.05, what="the draining edge to deregister")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; states seen: {seen}") from None
    assert edge.wait(30) == 0
    assert seen[0] == "passing" and seen[-1] == "gone", seen
    assert "critical" in seen, f"deregistered without draining first: {seen}"


@pytest.mark.slow
def test_killed_edge_goes_critical_then_is_deregistered(tmp_path, kafka, consul_agent) -> None:
    edge = start_edge(tmp_path, kafka, consul_agent, "eu-kill-1", deregister_after="1s")
    edge.wait_healthy(60)
    wait_until(lambda: edge_health(consul_agent).get("eu-kill-1") == "passing", 30, what="passing")
    edge.kill()
    wait_until(lambda: edge_health(consul_agent).get("eu-kill-1") == "critical", 30, what="critical")
    # Consul's minimum for DeregisterCriticalServiceAfter is 1 minute, reaped every 30 s.
    wait_until(lambda: "eu-kill-1" not in edge_health(consul_agent), 150, interval=1,
               what="the reaper to deregister the killed edge")


@pytest.mark.slow
def test_edge_serves_while_consul_is_down_and_registers_again(tmp_path, kafka, consul_agent) -> None:
    edge = start_edge(tmp_path, kafka, consul_agent, "eu-outage-1")
    try:
        edge.wait_healthy(60)
        wait_until(lambda: "eu-outage-1" in edge_health(consul_agent), 30, what="registered")
        consul_agent.kill()  # a -dev agent: everything it knew is gone
        url = f"http://127.0.0.1:{edge.port}"  # type: ignore[attr-defined]
        for i in range(20):
            reply = httpx.post(f"{url}/post", json={"event": "view", "i": i}, timeout=10)
            assert reply.status_code == 200, reply.text
        consul_agent.start()
        wait_until(lambda: edge_health(consul_agent).get("eu-outage-1") == "passing", 60,
                   what="the edge registered again in the restarted agent")
    finally:
        edge.stop()


def test_edge_registers_with_its_acl_token_only(tmp_path, kafka, acl_agent) -> None:
    token = acl_agent.create_token(["edge"], "test edge")
    edge = start_edge(tmp_path, kafka, acl_agent, "eu-acl-1", token=token)
    try:
        edge.wait_healthy(60)
        wait_until(lambda: "eu-acl-1" in edge_health(acl_agent), 30, what="registered with ACLs")
        denied = acl_agent.request("PUT", "/v1/agent/service/register", token=token,
                                   json={"ID": "impostor", "Name": "kafka", "Port": 1})
        assert denied.status_code == 403
        without = start_edge(tmp_path, kafka, acl_agent, "eu-acl-2", token="")
        try:
            without.wait_healthy(60)
            wait_until(lambda: "consul registration failed" in without.log_path.read_text(), 30,
                       what="the token-less edge to be refused")
            assert "eu-acl-2" not in edge_health(acl_agent)
            assert without.running  # refused by Consul, still serving
        finally:
            without.stop()
    finally:
        edge.stop()


def connections_to(port: int) -> int:
    """Established TCP connections of this process to 127.0.0.1:``port`` (from /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and remote_port == port and fields[9] in inodes:
            count += 1
    return count


async def test_the_registrar_keeps_no_connection_open_between_its_calls(consul_agent) -> None:
    """Each resync is a Consul call; with the garbage collector as lazy as the edge's, unclosed
    clients once piled up ~100 connections per edge until the agent answered 429 to everyone."""
    port = int(consul_agent.http_addr.rsplit(":", 1)[1])
    registrar = ConsulRegistrar(consul_agent.url, EdgeRegistration(
        service_id="leak-1", address="127.0.0.1", port=free_port(), region="eu", version="t",
        check_url="http://127.0.0.1:1/status"), resync_interval=0.02)
    gc.disable()
    try:
        registrar.start()
        await wait_until_async(lambda: registrar.registered, 30, what="registered")
        await asyncio.sleep(1.0)  # ~40 resyncs (one call to the agent each); nothing to await instead
        assert connections_to(port) <= 2
    finally:
        gc.enable()
        await registrar.drain_and_deregister(critical_timeout=1, linger=0)
