"""Terraform agrees with regions.yaml: the HCL parses, is formatted, and its geo steering —
evaluated by Terraform itself on the provider-free `modules/steering` — equals
`service_kit.steering.steering_pools`, the function the local geo router uses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from service_kit.regions import load_regions
from service_kit.steering import steering_pools

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
REGIONS_FILE = ROOT / "regions.yaml"
TERRAFORM = shutil.which("terraform") or ("/usr/local/bin/terraform"
                                          if Path("/usr/local/bin/terraform").exists() else None)
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform binary not installed")
TF_ENV = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted and expressions as ``${...}``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f)


def blocks(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """``resource``/``data`` blocks as {"type.name": body}; ``module``/``variable``/``output`` as {name: body}."""
    out: dict[str, dict[str, Any]] = {}
    for entry in doc.get(kind, []):
        for first, body in entry.items():
            if kind in ("resource", "data"):
                for name, inner in body.items():
                    out[f"{unquote(first)}.{unquote(name)}"] = inner
            else:
                out[unquote(first)] = body
    return out


def all_tf_files() -> list[Path]:
    return sorted(p for p in TF.rglob("*.tf") if ".terraform" not in p.parts)


def merged(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        out.update(blocks(parse(path), kind))
    return out


def locals_of(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("locals", []):
            out.update(entry)
    return out


# --- static structure -------------------------------------------------------------------------

def test_every_tf_file_parses_and_every_variable_and_output_is_described() -> None:
    files = all_tf_files()
    assert len(files) >= 20, files
    undocumented = []
    for path in files:
        doc = parse(path)
        for kind in ("variable", "output"):
            for name, body in blocks(doc, kind).items():
                if not unquote(body.get("description", "")):
                    undocumented.append(f"{path.relative_to(TF)}: {kind} {name}")
    assert not undocumented, undocumented


def test_regions_come_from_the_regions_file() -> None:
    local = locals_of(TF)
    expr = local["regions_doc"]
    assert "yamldecode(file(" in expr and "${path.module}/../regions.yaml" in expr
    assert (TF / ".." / "regions.yaml").resolve() == REGIONS_FILE
    assert "r.role == \"edge\"" in local["edge_regions"]
    steering = merged(TF, "module")["steering"]
    assert unquote(steering["source"]) == "./modules/steering"
    assert steering["regions"] == "${local.regions_doc}"
    # No region name, code or country is hard-coded in the root module.
    regions = load_regions()
    text = "\n".join(p.read_text() for p in TF.glob("*.tf"))
    for region in regions.regions:
        assert f'"{region.name}"' not in text, region.name
        for code in (*region.cloudflare_regions, *region.countries):
            assert f'"{code}"' not in text, code


def test_load_balancer_monitor_and_pools() -> None:
    resources = merged(TF, "resource")
    monitor = resources["cloudflare_load_balancer_monitor.edge_status"]
    assert unquote(monitor["path"]) == "/status"
    assert unquote(monitor["expected_codes"]) == "200"
    assert monitor["account_id"] == "${var.cloudflare_account_id}"
    assert "Host" in monitor["header"]
    for key in ("interval", "timeout", "retries", "type"):
        assert key in monitor, key

    pool = resources["cloudflare_load_balancer_pool.edge"]
    assert pool["for_each"] == "${local.edge_regions}"
    assert pool["account_id"] == "${var.cloudflare_account_id}"
    assert pool["monitor"] == "${cloudflare_load_balancer_monitor.edge_status.id}"
    assert "module.edge_region[each.key].edge_origins" in pool["origins"]
    assert "header = {host = [" in pool["origins"]  # v5: lowercase host on origins

    lb = resources["cloudflare_load_balancer.events"]
    assert lb["zone_id"] == "${var.cloudflare_zone_id}"
    assert lb["proxied"] is True
    assert unquote(lb["steering_policy"]) == "geo"
    for field in ("region_pools", "country_pools", "default_pools"):
        assert f"module.steering.{field}" in lb[field], field
        assert "local.pool_ids[n]" in lb[field], field
    # maps of lists (provider v5), not lists of objects
    assert lb["region_pools"].startswith("${{for code, names in")
    assert lb["fallback_pool"] == "${local.pool_ids[module.steering.fallback_pool]}"
    assert "cloudflare_load_balancer_pool.edge" in locals_of(TF)["pool_ids"]


def test_provider_versions_and_region_modules() -> None:
    versions = parse(TF / "versions.tf")["terraform"][0]["required_providers"][0]
    assert unquote(versions["cloudflare"]["source"]) == "cloudflare/cloudflare"
    assert unquote(versions["cloudflare"]["version"]).startswith("~> 5.")
    assert unquote(versions["yandex"]["source"]) == "yandex-cloud/yandex"
    modules = merged(TF, "module")
    assert modules["edge_region"]["for_each"] == "${local.edge_regions}"
    assert unquote(modules["edge_region"]["source"]) == "./modules/region"
    assert unquote(modules["central_region"]["source"]) == "./modules/region"
    region_modules = merged(TF / "modules" / "region", "module")
    assert {unquote(m["source"]) for m in region_modules.values()} == {
        "../yandex/network", "../yandex/kafka", "../yandex/consul", "../yandex/edge_group",
        "../yandex/central_host"}
    for name in ("network", "edge_group", "kafka", "consul", "central_host"):
        assert (TF / "modules" / "yandex" / name / "main.tf").exists(), name


def test_edge_group_autoscales_like_the_original_and_checks_status() -> None:
    group = merged(TF / "modules" / "yandex" / "edge_group", "resource")[
        "yandex_compute_instance_group.edges"]
    auto = group["scale_policy"][0]["auto_scale"][0]
    assert auto["min_zone_size"] == 1
    assert auto["initial_size"] == "${var.settings.min_size}"
    assert auto["max_size"] == "${var.settings.max_size}"
    assert auto["cpu_utilization_target"] == "${var.settings.cpu_target}"
    assert unquote(group["health_check"][0]["http_options"][0]["path"]) == "/status"
    edge_var = merged(TF, "variable")["edge"]
    defaults = edge_var["type"]
    for field, value in (("min_size", 3), ("max_size", 6), ("cpu_target", 60), ("cores", 2), ("memory_gb", 2)):
        assert f"{field} = optional(number, {value})" in defaults, field
    nlb = merged(TF / "modules" / "yandex" / "edge_group", "resource")[
        "yandex_lb_network_load_balancer.edges"]
    check = nlb["attached_target_group"][0]["healthcheck"][0]
    assert unquote(check["http_options"][0]["path"]) == "/status"
    kafka = merged(TF / "modules" / "yandex" / "kafka", "resource")
    assert "yandex_mdb_kafka_cluster.this" in kafka


def test_root_variables_are_validated_and_no_secrets_are_committed() -> None:
    variables = merged(TF, "variable")
    for name in ("cloudflare_account_id", "cloudflare_zone_id", "monitor", "image", "edge", "kafka",
                 "consul", "origin_mode", "yandex_folder_id"):
        assert "validation" in variables[name], name
    assert "default" not in variables["cloudflare_account_id"]
    tracked = subprocess.run(["git", "ls-files", "terraform"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert "terraform/terraform.tfvars.example" in tracked or (TF / "terraform.tfvars.example").exists()
    assert not [f for f in tracked if f.endswith((".tfvars", ".tfstate", ".auto.tfvars"))], tracked
    ignored = subprocess.run(["git", "check-ignore", "-q", "terraform/prod.auto.tfvars"], cwd=ROOT)
    assert ignored.returncode == 0, "*.auto.tfvars must be git-ignored"
    example = (TF / "terraform.tfvars.example").read_text()
    secrets = re.findall(r"(?im)^\s*\w*(?:token|password|secret|key_file)\w*\s*=", example)
    assert not secrets, secrets


@needs_terraform
def test_terraform_fmt_is_clean() -> None:
    result = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-no-color", str(TF)],
                            capture_output=True, text=True, env=TF_ENV, timeout=60)
    assert result.returncode == 0, f"unformatted: {result.stdout}{result.stderr}"


# --- the steering module, evaluated by Terraform ------------------------------------------------

def evaluate_steering(workdir: Path, regions_file: Path) -> subprocess.CompletedProcess[str]:
    """Apply modules/steering (no providers, no resources) on a regions file; outputs as JSON."""
    shutil.copytree(TF / "modules" / "steering", workdir / "steering")
    (workdir / "main.tf").write_text(
        'module "steering" {\n  source  = "./steering"\n'
        f'  regions = yamldecode(file("{regions_file}"))\n}}\n'
        'output "steering" {\n  value = module.steering\n}\n')
    for argv in (["init", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        result = subprocess.run([TERRAFORM, *argv], cwd=workdir, capture_output=True, text=True,
                                env=TF_ENV, timeout=120)
        if result.returncode != 0:
            return result
    return subprocess.run([TERRAFORM, "output", "-json", "-no-color", "steering"], cwd=workdir,
                          capture_output=True, text=True, env=TF_ENV, timeout=60)


def assert_same_steering(tmp_path: Path, regions_file: Path) -> dict[str, Any]:
    result = evaluate_steering(tmp_path, regions_file)
    assert result.returncode == 0, result.stderr
    terraform = json.loads(result.stdout)
    python = steering_pools(load_regions(regions_file))
    for key in ("region_pools", "country_pools", "default_pools", "fallback_pool"):
        assert terraform[key] == python[key], key
    return terraform


@needs_terraform
def test_terraform_steering_equals_python_steering_on_regions_yaml(tmp_path: Path) -> None:
    terraform = assert_same_steering(tmp_path, REGIONS_FILE)
    regions = load_regions()
    assert terraform["edge_regions"] == [r.name for r in regions.edge_regions]
    assert terraform["central_region"] == regions.central.name
    assert terraform["fallback_pool"] == regions.fallback_region
    # Every region's own codes lead to its own pool first, then its failover list, in order.
    for region in regions.edge_regions:
        order = [region.name, *region.failover]
        for code in region.cloudflare_regions:
            assert terraform["region_pools"][code] == order, code
        for country in region.countries:
            assert terraform["country_pools"][country] == order, country
    claimed = {c for r in regions.edge_regions for c in r.cloudflare_regions}
    assert set(terraform["region_pools"]) == claimed
    assert terraform["default_pools"][0] == regions.default_region
    assert sorted(terraform["default_pools"]) == sorted(r.name for r in regions.edge_regions)


@needs_terraform
def test_terraform_steering_equals_python_steering_with_three_edge_regions(tmp_path: Path) -> None:
    doc = yaml.safe_load(REGIONS_FILE.read_text())
    doc["default_region"] = "us"
    doc["fallback_region"] = "ap"
    doc["regions"] = [
        {"name": "eu", "role": "edge", "cloudflare_regions": ["WEU", "EEU"], "countries": ["DE"],
         "failover": ["ap", "us"]},
        {"name": "ru", "role": "central"},
        {"name": "us", "role": "edge", "cloudflare_regions": ["WNAM"], "countries": [], "failover": ["eu"]},
        {"name": "ap", "role": "edge", "cloudflare_regions": ["SEAS", "NEAS"], "countries": ["JP"],
         "failover": ["us", "eu"]},
    ]
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(doc))
    work = tmp_path / "tf"
    work.mkdir()
    terraform = assert_same_steering(work, path)
    assert terraform["region_pools"]["WEU"] == ["eu", "ap", "us"]
    assert terraform["region_pools"]["WNAM"] == ["us", "eu"]
    # default: the default region's order, then the remaining edge regions in file order
    assert terraform["default_pools"] == ["us", "eu", "ap"]
    assert terraform["fallback_pool"] == "ap"


@needs_terraform
@pytest.mark.parametrize("mutation, message", [
    (lambda r: r[1]["cloudflare_regions"].append("WEU"), "Duplicate object key"),
    (lambda r: r[0]["cloudflare_regions"].append("MARS"), "13 region codes"),
    (lambda r: r[0]["countries"].append("deu"), "alpha-2"),
])
def test_bad_steering_input_is_refused_by_both(tmp_path: Path, mutation: Any, message: str) -> None:
    doc = yaml.safe_load(REGIONS_FILE.read_text())
    mutation(doc["regions"])
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(doc))
    work = tmp_path / "tf"
    work.mkdir()
    result = evaluate_steering(work, path)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    with pytest.raises(ValueError):
        steering_pools(load_regions(path))


@needs_terraform
def test_vm_templates_render_to_valid_yaml(tmp_path: Path) -> None:
    """Terraform renders the VMs' docker-compose and cloud-init templates into parseable YAML."""
    y = TF / "modules" / "yandex"
    (tmp_path / "main.tf").write_text(f'''
output "central" {{
  value = templatefile("{y}/central_host/templates/central-compose.yaml.tftpl", {{
    image = "geoingest:0.1.0", region = "ru", kafka_bootstrap = "k:9092", mirror_username = "mirror",
    mirror_password = "p", central_username = "central", central_password = "q", mirror_port = 9200,
    http_port = 8000, consul_url = "http://c:8500",
    mirror_sources = {{ eu = {{ bootstrap = "a:9091,b:9091", username = "mirror", password = "x" }},
                        us = {{ bootstrap = "c:9091", username = "mirror", password = "y" }} }} }})
}}
output "edge" {{
  value = templatefile("{y}/edge_group/templates/edge-compose.yaml.tftpl", {{
    image = "geoingest:0.1.0", region = "eu", public_port = 8080, metrics_port = 9100, workers = 2,
    kafka_bootstrap = "k:9092", kafka_username = "edge", kafka_password = "p", consul_url = "http://c:8500" }})
}}
output "consul" {{
  value = templatefile("{y}/consul/templates/cloud-init.yaml.tftpl", {{
    ssh_public_key = "ssh-ed25519 AAAA", server_config = jsonencode({{ server = true, retry_join = ["10.0.0.10"] }}) }})
}}
''')
    for argv in (["init", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        result = subprocess.run([TERRAFORM, *argv], cwd=tmp_path, capture_output=True, text=True,
                                env=TF_ENV, timeout=120)
        assert result.returncode == 0, result.stderr
    out = json.loads(subprocess.run([TERRAFORM, "output", "-json", "-no-color"], cwd=tmp_path,
                                    capture_output=True, text=True, env=TF_ENV, timeout=60).stdout)
    central = yaml.safe_load(out["central"]["value"])["services"]
    assert central["geo-mirror"]["command"] == ["geo-mirror", "--region", "eu=a:9091,b:9091",
                                                "--region", "us=c:9091"]
    assert central["geo-central"]["environment"]["GEO_CENTRAL_BOOTSTRAP"] == "k:9092"
    edge = yaml.safe_load(out["edge"]["value"])["services"]["geo-edge"]["environment"]
    assert edge["GEO_EDGE_REGION"] == "eu" and edge["GEO_EDGE_LISTEN"] == "0.0.0.0:8080"
    cloud_init = yaml.safe_load(out["consul"]["value"])
    assert json.loads(cloud_init["write_files"][0]["content"])["retry_join"] == ["10.0.0.10"]
