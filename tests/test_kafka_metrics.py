"""Kafka's and Consul's Prometheus endpoints, as the local stack's Prometheus scrapes them, from
real processes: three brokers with the JMX exporter agent (observability/kafka-jmx.yml), whose
under-replicated count follows a killed and restarted broker; a Consul agent with telemetry whose
/v1/agent/metrics?format=prometheus answers a token of policy ``prometheus`` and refuses others."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.consul import ConsulAgent
from harness.kafka import KafkaCluster
from harness.ports import free_port
from service_kit.wait import wait_until
from test_observability import CONSUL_METRICS, alert_rules, dashboard, kafka_exported_metrics, metric_names, panel_exprs

UNDER_REPLICATED = "kafka_server_replicamanager_underreplicatedpartitions"
# what geostack.stack gives its Consul agents (extra_config) and docker-compose.geo.yml (-hcl)
TELEMETRY = {"telemetry": {"prometheus_retention_time": "60s", "disable_hostname": True}}


def scrape(url: str, **kwargs: object) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of every sample at ``url``."""
    answer = httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
    answer.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(url: str, name: str) -> float:
    """The one unlabelled sample ``name`` at ``url`` (NaN when the endpoint cannot be read)."""
    try:
        ((_, v),) = scrape(url)[name]
    except (httpx.HTTPError, KeyError):
        return float("nan")
    return v


def queried(prefix: str) -> set[str]:
    """Every metric with ``prefix`` that a dashboard panel or an alert rule queries."""
    exprs = [e for _, e in panel_exprs(dashboard())] + [r["expr"] for r in alert_rules()]
    return {n for e in exprs for n in metric_names(e) if n.startswith(prefix)}


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, str(i).encode())
    finally:
        await producer.stop()


def test_broker_exporters_follow_a_killed_and_restarted_broker(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    with KafkaCluster(tmp_path / "k", brokers=3, metrics_ports=ports) as cluster:
        urls = [node.metrics_url for node in cluster.nodes]
        assert urls == [f"http://127.0.0.1:{p}/metrics" for p in ports]
        topic = f"metrics-{uuid.uuid4().hex[:8]}"
        asyncio.run(_produce(cluster.bootstrap, topic, 20))
        cluster.wait_in_sync()
        wait_until(lambda: all(value(u, UNDER_REPLICATED) == 0 for u in urls), 30,
                   what="no under-replicated partition on any broker's exporter")

        # every name the rules file defines (and the dashboard and alerts query) is really exported
        samples = [scrape(u) for u in urls]
        assert kafka_exported_metrics() <= set(samples[0]), kafka_exported_metrics() - set(samples[0])
        assert queried("kafka_") <= kafka_exported_metrics()
        active = sum(v for s in samples for _, v in s["kafka_controller_kafkacontroller_activecontrollercount"])
        assert active == 1
        quantiles = {(labels["request"], labels["quantile"]) for s in samples
                     for labels, _ in s["kafka_network_requestmetrics_totaltimems"]}
        assert {(r, q) for r in ("Produce", "FetchConsumer", "FetchFollower") for q in ("0.50", "0.99", "0.999")} \
            <= quantiles
        assert sum(v for s in samples for _, v in s["kafka_server_brokertopicmetrics_bytesin_total"]) > 0

        # kill broker 3: the partitions it replicated leave the ISR on their leaders, 1 and 2. (In
        # KRaft the controller drops a fenced broker from the ISR after its 6-s session, before the
        # leaders' own 10-s lag check would: that is no leader-side IsrShrinks, only expands later.)
        cluster.node(3).kill()
        survivors = urls[:2]
        wait_until(lambda: sum(value(u, UNDER_REPLICATED) for u in survivors) > 0, 60,
                   what="the surviving brokers' exporters to count under-replicated partitions")
        # two of three replicas are left: no partition is offline, and a controller is active (the
        # ISR change came from one)
        assert sum(value(u, "kafka_controller_kafkacontroller_offlinepartitionscount") for u in survivors) == 0
        wait_until(lambda: sum(value(u, "kafka_controller_kafkacontroller_activecontrollercount")
                               for u in survivors) == 1, 30, what="one active controller among the survivors")

        # back: it catches up, rejoins every ISR, and every exporter counts 0 again
        cluster.node(3).start()
        cluster.wait_in_sync()
        wait_until(lambda: all(value(u, UNDER_REPLICATED) == 0 for u in urls), 60,
                   what="no under-replicated partition after the restart")
        # the leaders took broker 3 back into their ISRs themselves: counted as expands
        assert sum(value(u, "kafka_server_replicamanager_isrexpands_total") for u in urls) > 0


def test_consul_prometheus_endpoint_answers_the_prometheus_policy_only(tmp_path: Path) -> None:
    # a server with state on disk and ACLs on, as geostack.stack runs each datacenter's
    agent = ConsulAgent(tmp_path / "eu", datacenter="eu", acl=True, dev=False, extra_config=TELEMETRY).start()
    try:
        agent.apply_policies(["prometheus", "edge"])
        token = agent.create_token(["prometheus"], "prometheus scrape")
        url = f"{agent.url}/v1/agent/metrics"
        params = {"format": "prometheus"}

        def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
            return scrape(url, params=params, headers={"Authorization": f"Bearer {token}"})

        # Prometheus sends credentials_file's token as a bearer token: Consul accepts that form
        wait_until(lambda: CONSUL_METRICS <= set(scraped()), 30,
                   what="every Consul metric the dashboard and alerts use in the agent's answer")
        assert queried("consul_") <= CONSUL_METRICS
        # the gauges start at 0 and are set every 10 s: the single server leads, autopilot healthy
        wait_until(lambda: [v for _, v in scraped()["consul_server_isLeader"]] == [1] and
                   [v for _, v in scraped()["consul_autopilot_healthy"]] == [1], 30,
                   what="consul_server_isLeader and consul_autopilot_healthy to be 1")
        host = re.sub(r"[^a-zA-Z0-9_]", "_", socket.gethostname())
        assert not [n for n in scraped() if n.startswith(f"consul_{host}_")]  # disable_hostname

        anonymous = httpx.get(url, params=params, timeout=5)
        assert anonymous.status_code == 403, anonymous.text
        edge = agent.create_token(["edge"], "no agent:read")
        refused = httpx.get(url, params=params, headers={"X-Consul-Token": edge}, timeout=5)
        assert refused.status_code == 403, refused.text
    finally:
        agent.stop()


def test_consul_without_telemetry_has_no_prometheus_endpoint(tmp_path: Path) -> None:
    """Why the stack and compose configure telemetry: without a retention time Consul 1.14 answers
    200 with an empty page (Prometheus would see the target up, with no metric)."""
    agent = ConsulAgent(tmp_path / "plain", datacenter="eu", dev=False).start()  # -dev turns it on
    try:
        answer = httpx.get(f"{agent.url}/v1/agent/metrics", params={"format": "prometheus"}, timeout=5)
        assert "consul_" not in answer.text, answer.text[:500]
    finally:
        agent.stop()
