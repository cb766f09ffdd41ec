"""The mirror finds its regions in a real Consul agent: a region registered at run time starts
flowing, a deregistered one stops, and a Consul outage changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from harness.consul import ConsulAgent
from harness.process import terminate
from service_kit.wait import wait_until
from test_mirror_helpers import ids_of, produce, read_all, start_mirror


def register_kafka(agent: ConsulAgent, region: str, bootstrap: str) -> None:
    agent.request("PUT", "/v1/agent/service/register", check=True, json={
        "ID": f"kafka-{region}", "Name": "kafka", "Address": "127.0.0.1",
        "Port": int(bootstrap.rsplit(":", 1)[1]), "Meta": {"region": region, "bootstrap": bootstrap}})


def mirrored_regions(port: int) -> set[str]:
    try:
        doc = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return set()
    return set(doc.get("regions", {}))


def test_regions_come_and_go_with_their_kafka_service(tmp_path: Path, kafka_factory) -> None:
    eu, us, central = kafka_factory(3, names=["eu", "us", "central"])
    with ConsulAgent(tmp_path / "consul", datacenter="eu") as agent:
        register_kafka(agent, "eu", eu.bootstrap)
        proc, port = start_mirror(tmp_path / "mirror.log", central.bootstrap, {},
                                  "--consul-url", agent.url, "--consul-datacenters", "eu",
                                  "--consul-token", agent.management_token or "")
        try:
            wait_until(lambda: mirrored_regions(port) == {"eu"}, 60, what="region eu from Consul")
            asyncio.run(produce(eu.bootstrap, "events", "eu", range(200)))
            got = asyncio.run(read_all(central.bootstrap, "eu.events", 200))
            assert sorted(ids_of(got)) == sorted(f"eu-{i}" for i in range(200))

            register_kafka(agent, "us", us.bootstrap)  # a region appears at run time
            wait_until(lambda: mirrored_regions(port) == {"eu", "us"}, 30, what="region us picked up")
            asyncio.run(produce(us.bootstrap, "events", "us", range(100)))
            got = asyncio.run(read_all(central.bootstrap, "us.events", 100))
            assert sorted(ids_of(got)) == sorted(f"us-{i}" for i in range(100))

            agent.kill()  # Consul down: the last known regions keep flowing
            asyncio.run(produce(eu.bootstrap, "events", "eu", range(200, 300)))
            got = asyncio.run(read_all(central.bootstrap, "eu.events", 300))
            assert len(set(ids_of(got))) == len(got) == 300
            assert mirrored_regions(port) == {"eu", "us"}
            agent.start()  # a -dev agent comes back empty: both regions were removed
            register_kafka(agent, "eu", eu.bootstrap)
            wait_until(lambda: mirrored_regions(port) == {"eu"}, 30, what="region us dropped")
        finally:
            assert terminate(proc, 30) == 0
