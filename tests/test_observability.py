"""Prometheus configs and alert rules pass promtool (config, rules and the rules' unit tests), the
Grafana dashboard and provisioning parse, and every metric they query is one the components export:
geoingest's own (from the code), Kafka's (the JMX exporter rules, observability/kafka-jmx.yml) and
Consul's (CONSUL_METRICS, which tests/test_kafka_metrics.py finds in a real agent's scrape)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from service_kit.regions import load_regions

ROOT = Path(__file__).resolve().parent.parent
OBS = ROOT / "observability"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make system-deps)")
KNOWN_PREFIX = re.compile(r"^(geo_(edge|mirror|central|router)_[a-z0-9_]+|kafka_[a-z0-9_]+|consul_[a-zA-Z0-9_]+|up)$")
QUERIED = re.compile(r"^(geo|kafka|consul)_")
# what the dashboard and alerts read from Consul 1.14's /v1/agent/metrics?format=prometheus (with
# telemetry.disable_hostname); tests/test_kafka_metrics.py checks each in a real agent's answer
CONSUL_METRICS = frozenset({
    "consul_server_isLeader",             # every server, every 10 s: 1 on the raft leader
    "consul_autopilot_healthy",           # the leader's autopilot: 1 when every server is healthy
    "consul_autopilot_failure_tolerance",
})
DEFINED = re.compile(r"""["'](geo_(?:edge|mirror|central|router)_[a-z0-9_]+)["']""")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], cwd=OBS, capture_output=True, text=True, timeout=60)


def exported_metrics() -> set[str]:
    """Every sample name the components can expose (counters get _total, histograms _bucket...)."""
    names: set[str] = set()
    for package in ("edge", "mirror", "central", "geostack", "service_kit"):
        for path in (ROOT / package).rglob("*.py"):
            for name in DEFINED.findall(path.read_text()):
                base = name.removesuffix("_total")
                names.update({name, base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"})
    return names


def kafka_exported_metrics() -> set[str]:
    """The names the JMX exporter exports by observability/kafka-jmx.yml: each rule's ``name`` with
    ``$1`` replaced by every alternative of the pattern's first group; a COUNTER gets ``_total``."""
    doc = yaml.safe_load((OBS / "kafka-jmx.yml").read_text())
    names: set[str] = set()
    for rule in doc["rules"]:
        template = rule["name"]
        alternatives = re.findall(r"\(([^()]*)\)", rule["pattern"])[0].split("|") if "$1" in template else [""]
        for alternative in alternatives:
            name = template.replace("$1", alternative).lower()
            names.add(f"{name}_total" if rule["type"] == "COUNTER" else name)
    return names


def dashboard() -> dict[str, Any]:
    return json.loads((OBS / "grafana" / "geoingest.json").read_text())


def panel_exprs(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in doc["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((OBS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    cleaned = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    cleaned = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", cleaned)
    return {m for m in re.findall(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b", cleaned)  # Consul's are camelCase
            if QUERIED.match(m) or m == "up"}


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_check_config(name: str, tmp_path: Path) -> None:
    # promtool checks that a credentials_file exists: the local config's Consul token is written
    # by the running stack, so check a copy beside a stand-in token at the same relative path
    obs = tmp_path / "observability"
    obs.mkdir()
    for file in (name, "alerts.yml"):
        shutil.copy(OBS / file, obs / file)
    for job in yaml.safe_load((OBS / name).read_text())["scrape_configs"]:
        credentials = job.get("authorization", {}).get("credentials_file")
        if credentials:
            token = (obs / credentials).resolve()
            assert token.is_relative_to(tmp_path), credentials
            token.parent.mkdir(parents=True, exist_ok=True)
            token.write_text("00000000-0000-0000-0000-000000000000\n")
    result = subprocess.run([PROMTOOL, "check", "config", name], cwd=obs, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_promtool_check_rules_and_rule_unit_tests() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    for required in ("GeoEdgeDown", "GeoEdgeKafkaUnreachable", "GeoMirrorLagHigh", "GeoRegionSilent",
                     "GeoCentralQuarantineGrowing", "GeoMirrorRegionKafkaUnreachable",
                     "KafkaUnderReplicatedPartitions", "KafkaOfflinePartitions", "KafkaUnderMinIsrPartitions",
                     "KafkaNoActiveController", "ConsulNoLeader"):
        assert required in names, required
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_local_prometheus_scrapes_every_component_of_regions_file() -> None:
    regions = load_regions()
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
               for job in config["scrape_configs"]}
    expected_edges = {f"127.0.0.1:{p}" for r in regions.edge_regions for p in r.local["edge_metrics_ports"]}
    assert set(targets["geo-edge"]) == expected_edges
    edge_regions = {sc["labels"]["region"] for job in config["scrape_configs"] if job["job_name"] == "geo-edge"
                    for sc in job["static_configs"]}
    assert edge_regions == {r.name for r in regions.edge_regions}
    central = regions.central.local
    assert targets["geo-mirror"] == [f"127.0.0.1:{central['mirror_metrics_port']}"]
    assert targets["geo-central"] == [f"127.0.0.1:{central['central_port']}"]
    assert targets["geo-router"] == [f"127.0.0.1:{regions.local['router_metrics_port']}"]
    # the mirror's own `region` label (source region) must not be overwritten by a target label
    for job in config["scrape_configs"]:
        if job["job_name"] in ("geo-mirror", "geo-central"):
            assert all("region" not in sc.get("labels", {}) for sc in job["static_configs"])
    # every broker's JMX exporter: the file the stack writes with each node it started
    # (geostack.stack.LocalStack.kafka_targets, checked in tests/test_broker_faults.py)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["kafka"]["file_sd_configs"] == [{"files": ["../var/stack/prometheus/kafka-targets.json"],
                                                 "refresh_interval": "30s"}]
    # every datacenter's Consul agent, in geostack.stack's port order (the primary first)
    consul = jobs["consul"]
    assert consul["metrics_path"] == "/v1/agent/metrics" and consul["params"] == {"format": ["prometheus"]}
    ordered = [regions.central, *regions.edge_regions]
    assert [(sc["labels"]["datacenter"], sc["targets"]) for sc in consul["static_configs"]] == \
        [(r.consul_datacenter, [f"127.0.0.1:{regions.local['consul_http_port'] + i}"]) for i, r in enumerate(ordered)]
    # ACLs are on in the stack: the token it writes for Prometheus (make up's workdir var/stack)
    token = consul["authorization"]["credentials_file"]
    assert (OBS / token).resolve() == ROOT / "var" / "stack" / "consul" / "prometheus.token"


def test_compose_prometheus_targets_are_compose_services() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.geo.yml").read_text())["services"]
    config = yaml.safe_load((OBS / "prometheus.compose.yml").read_text())
    for job in config["scrape_configs"]:
        for sc in job["static_configs"]:
            for target in sc["targets"]:
                host = target.split(":")[0]
                assert host == "localhost" or host in services, (job["job_name"], target)


def test_consul_sd_example_relabels_edges_by_datacenter() -> None:
    config = yaml.safe_load((OBS / "prometheus.consul-sd.example.yml").read_text())
    edge = next(job for job in config["scrape_configs"] if job["job_name"] == "geo-edge")
    regions = load_regions()
    assert {sd["datacenter"] for sd in edge["consul_sd_configs"]} == \
        {r.consul_datacenter for r in regions.edge_regions}
    assert all(sd["services"] == ["edge"] for sd in edge["consul_sd_configs"])
    targets = {rule["target_label"] for rule in edge["relabel_configs"]}
    assert {"__address__", "region"} <= targets


def test_dashboard_parses_and_queries_known_metrics() -> None:
    doc = dashboard()
    assert doc["uid"] == "geoingest" and doc["title"]
    exprs = list(panel_exprs(doc))
    assert len(exprs) >= 12
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(title.lower() for title, _ in exprs)
    for topic in ("requests", "errors", "latency", "behind", "replication", "freshness", "quarantined",
                  "under-replicated", "offline", "isr", "produce request latency", "consul"):
        assert topic in titles, topic
    assert any(p["type"] == "row" and p["title"] == "Kafka & Consul" for p in doc["panels"])
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        for name in names:
            assert KNOWN_PREFIX.match(name), f"{title}: {name}"
    # every edge panel splits by region
    for title, expr in exprs:
        if "geo_edge_" in expr:
            assert "region" in expr, title


def test_dashboards_and_alerts_query_metrics_the_components_export() -> None:
    exported = exported_metrics() | kafka_exported_metrics() | CONSUL_METRICS | {"up"}
    missing: dict[str, set[str]] = {}
    sources = [(t, e) for t, e in panel_exprs(dashboard())] + [(r["alert"], r["expr"]) for r in alert_rules()]
    for where, expr in sources:
        unknown = {n for n in metric_names(expr) if n not in exported}
        if unknown:
            missing[where] = unknown
    assert not missing, f"queried but exported by no component: {missing}"


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    datasource = yaml.safe_load((OBS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    ds = datasource["datasources"][0]
    assert ds["type"] == "prometheus" and ds["uid"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((OBS / "grafana" / "provisioning" / "dashboards" / "geoingest.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    grafana = yaml.safe_load((ROOT / "docker-compose.geo.yml").read_text())["services"]["grafana"]
    assert any(v.endswith(f"{path}/geoingest.json:ro") for v in grafana["volumes"]), grafana["volumes"]
    templating = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert templating["datasource"]["current"]["value"] == ds["uid"]


def test_kafka_jmx_rules_are_a_small_allow_list() -> None:
    """The exporter reads only the MBeans it exports (a scrape stays cheap) and names each metric."""
    doc = yaml.safe_load((OBS / "kafka-jmx.yml").read_text())
    assert doc["lowercaseOutputName"] is True
    assert 0 < len(doc["includeObjectNames"]) <= 12
    for name in doc["includeObjectNames"]:
        domain, _, keys = name.partition(":")
        assert domain in ("kafka.server", "kafka.controller", "kafka.network") and "type=" in keys, name
    for rule in doc["rules"]:
        assert rule["type"] in ("GAUGE", "COUNTER") and rule["name"].startswith("kafka_"), rule
        assert rule.get("cache") is True, rule["name"]
    names = kafka_exported_metrics()
    for required in ("kafka_server_replicamanager_underreplicatedpartitions",
                     "kafka_server_replicamanager_underminisrpartitioncount",
                     "kafka_server_replicamanager_offlinereplicacount",
                     "kafka_controller_kafkacontroller_offlinepartitionscount",
                     "kafka_controller_kafkacontroller_activecontrollercount",
                     "kafka_server_replicamanager_isrshrinks_total", "kafka_server_replicamanager_isrexpands_total",
                     "kafka_server_brokertopicmetrics_bytesin_total", "kafka_server_brokertopicmetrics_bytesout_total",
                     "kafka_network_requestmetrics_totaltimems"):
        assert required in names, required
    # every exported name is listed in the file's header, where an operator looks for it
    header = (OBS / "kafka-jmx.yml").read_text()
    for name in names:
        assert f"#   {name} " in header, name


def test_agent_jvm_args_name_the_agent_port_and_rules() -> None:
    from harness import jmx_exporter

    (arg,) = jmx_exporter.agent_jvm_args(19190)
    assert arg.startswith("-javaagent:") and arg.endswith(f"=127.0.0.1:19190:{OBS / 'kafka-jmx.yml'}")
    jar = Path(arg.removeprefix("-javaagent:").split("=", 1)[0])
    assert jar.is_file() and jar.name == f"jmx_prometheus_javaagent-{jmx_exporter.JMX_EXPORTER_VERSION}.jar"
    with pytest.raises(ValueError):
        jmx_exporter.agent_jvm_args(0)
