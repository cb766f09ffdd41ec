"""docker-compose.geo.yml and the Dockerfile agree with regions.yaml (no Docker engine here, so
the file's structure is checked: services per region, healthchecks, pinned images, unique host
ports, valid depends_on, declared volumes) and the committed file is what the generator writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service_kit.regions import load_regions

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.geo.yml"
sys.path.insert(0, str(ROOT / "scripts"))
import gen_compose  # noqa: E402


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def host_port(mapping: str) -> int:
    """``[IP:]HOST:CONTAINER`` -> HOST."""
    parts = mapping.split(":")
    assert len(parts) in (2, 3), mapping
    return int(parts[-2])


def test_committed_files_equal_the_generated_ones() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_compose.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_generator_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "docker-compose.geo.yml"
    stale.write_text(COMPOSE.read_text().replace("kafka-eu", "kafka-xx", 1))
    monkeypatch.setattr(gen_compose, "COMPOSE_FILE", stale)
    monkeypatch.setattr(gen_compose, "ROOT", tmp_path.parent)
    assert gen_compose.main(["--check"]) == 1


def test_every_region_has_its_services(compose: dict[str, Any]) -> None:
    regions = load_regions()
    services = compose["services"]
    for region in regions.regions:
        assert services[f"kafka-{region.name}"]["image"] == "apache/kafka:4.1.1"
        # the Consul the tests run (built from harness/consul_build/go.mod), not another line
        assert services[f"consul-{region.name}"]["image"] == f"hashicorp/consul:{consul_version_under_test()}"
        assert f"-datacenter={region.consul_datacenter}" in services[f"consul-{region.name}"]["command"]
    for region in regions.edge_regions:
        edges = [name for name in services if name.startswith(f"edge-{region.name}-")]
        assert len(edges) == len(region.local["edge_ports"]) >= 2, edges
        for name in edges:
            env = services[name]["environment"]
            assert env["GEO_EDGE_REGION"] == region.name
            assert env["GEO_EDGE_KAFKA"] == f"kafka-{region.name}:9092"
            assert env["GEO_EDGE_NODE_ID"] == name
            assert services[name]["command"][0] == "geo-edge"
    assert {"mirror", "central", "router", "prometheus", "grafana"} <= set(services)
    assert compose["services"]["central"]["environment"]["GEO_CENTRAL_BOOTSTRAP"] == \
        f"kafka-{regions.central.name}:9092"
    mirror_command = " ".join(services["mirror"]["command"])
    for region in regions.edge_regions:
        assert f"{region.name}=kafka-{region.name}:9092" in mirror_command


def test_healthchecks_images_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} is not pinned"
        assert not image.endswith(":latest"), f"{name}: {image}"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert dependency != name
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, spec)
    app = [n for n, s in services.items() if s["image"].startswith("geoingest:")]
    assert len(app) >= 7
    assert all(services[n]["build"]["dockerfile"] == "Dockerfile" for n in app)
    # every edge waits for its region's Kafka and Consul to be healthy
    for name in app:
        if name.startswith("edge-"):
            region = name.split("-")[1]
            assert set(services[name]["depends_on"]) == {f"kafka-{region}", f"consul-{region}"}


def test_dependency_graph_has_no_cycle(compose: dict[str, Any]) -> None:
    services = compose["services"]
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, f"depends_on cycle: {' -> '.join(path + (name,))}"
        state[name] = 1
        for dependency in services[name].get("depends_on", {}):
            visit(dependency, path + (name,))
        state[name] = 2

    for name in services:
        visit(name, ())


def test_host_ports_are_unique_and_from_regions_file(compose: dict[str, Any]) -> None:
    regions = load_regions()
    ports = [host_port(p) for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports)), sorted(ports)
    expected = {regions.local["router_port"], regions.local["router_metrics_port"],
                regions.local["consul_http_port"], regions.local["prometheus_port"]}
    for region in regions.regions:
        expected.add(region.local["kafka_port"])
        expected.update(region.local.get("edge_ports", []))
        expected.update(region.local.get("edge_metrics_ports", []))
    expected.update({regions.central.local["mirror_metrics_port"], regions.central.local["central_port"]})
    assert expected <= set(ports), expected - set(ports)
    # published on loopback only
    for service in compose["services"].values():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), mapping


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    regions = load_regions()
    for region in regions.regions:
        assert f"kafka-{region.name}-data" in used and f"consul-{region.name}-data" in used
    assert "chdb-data" in used
    assert used == declared


def test_dockerfile_is_multi_stage_pinned_and_serves_every_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    images = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert images and re.fullmatch(r"python:3\.11\.\d+-slim-\S+", images[0]), images
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    assert "pip wheel" in text and "--no-index" in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "COPY regions.yaml" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    commands = {s["command"][0] for s in yaml.safe_load(COMPOSE.read_text())["services"].values()
                if s["image"].startswith("geoingest:")}
    for command in commands:
        assert re.search(rf"^{command} = ", pyproject, re.M), f"{command} is not a console script"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "var", "*.tfstate*"):
        assert entry in ignored, entry


def test_every_setting_is_accepted_by_its_command(compose: dict[str, Any]) -> None:
    """Every GEO_* variable and --flag compose passes appears in the command's --help."""
    helps: dict[str, str] = {}
    for name, service in compose["services"].items():
        if not service["image"].startswith("geoingest:"):
            continue
        command = service["command"][0]
        if command not in helps:
            result = subprocess.run([str(Path(sys.executable).parent / command), "--help"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{command} --help: {result.stderr}"
            helps[command] = result.stdout
        text = helps[command]
        for variable in service.get("environment", {}):
            if variable.startswith("GEO_"):
                assert variable in text, f"{name}: {command} does not know {variable}"
        for flag in (t for t in service["command"][1:] if t.startswith("--")):
            assert flag in text, f"{name}: {command} does not know {flag}"


def consul_version_under_test() -> str:
    """The Consul version every test runs: the one harness/consul_build/go.mod requires."""
    go_mod = (Path(__file__).resolve().parent.parent / "harness" / "consul_build" / "go.mod").read_text()
    match = re.search(r"^require github\.com/hashicorp/consul v(\S+)$", go_mod, re.M)
    assert match, "no consul requirement in harness/consul_build/go.mod"
    return match.group(1)
