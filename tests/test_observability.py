"""Prometheus configs and alert rules pass promtool (config, rules and the rules' unit tests), the
Grafana dashboard and provisioning parse, and every metric they query is one the components export."""

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
KNOWN_PREFIX = re.compile(r"^(geo_(edge|mirror|central|router)_[a-z0-9_]+|up)$")
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
    return {m for m in re.findall(r"\b[a-z_][a-z0-9_]*\b", cleaned)
            if m.startswith("geo_") or m == "up"}


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_check_config(name: str) -> None:
    result = promtool("check", "config", name)
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
                     "GeoCentralQuarantineGrowing", "GeoMirrorRegionKafkaUnreachable"):
        assert required in names, required
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_local_prometheus_scrapes_every_component_of_regions_file() -> None:
    regions = load_regions()
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
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
    for topic in ("requests", "errors", "latency", "behind", "replication", "freshness", "quarantined"):
        assert topic in titles, topic
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
    exported = exported_metrics() | {"up"}
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
