"""Terraform agrees with regions.yaml: the HCL parses, is formatted, and its geo steering —
evaluated by Terraform itself on the provider-free `modules/steering` — equals
`service_kit.steering.steering_pools`, the function the local geo router uses."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
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


# --- Kafka security: Terraform's outputs and templates feed the components' settings --------------

COMPONENTS = {"GEO_EDGE_": "edge.cli", "GEO_MIRROR_": "mirror.cli", "GEO_CENTRAL_": "central.cli"}
#: read from the environment (never a flag, so not an ``[env: ...]`` of --help)
PASSWORD_VARIABLES = {"GEO_EDGE_KAFKA_PASSWORD", "GEO_MIRROR_CENTRAL_PASSWORD", "GEO_MIRROR_SOURCE_PASSWORD",
                      "GEO_CENTRAL_KAFKA_PASSWORD"}
PER_REGION_SETTINGS = ("USERNAME", "PASSWORD", "PASSWORD_FILE", "SECURITY_PROTOCOL", "SASL_MECHANISM", "CA_FILE")
SAMPLE_REGION = "eu-west"
TEMPLATES = sorted(TF.rglob("*.tftpl"))


def region_env(name: str) -> str:
    """A region's part of a variable name, as ``service_kit.kafka_security.for_name`` builds it."""
    return name.upper().replace("-", "_")


@lru_cache(maxsize=None)
def component_help(module: str) -> str:
    """``python -m <module> --help``, unwrapped (wide COLUMNS: a name is never split over lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_")}
    env["COLUMNS"] = "1000"
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    return result.stdout


def component_of(name: str) -> str:
    return next(module for prefix, module in COMPONENTS.items() if name.startswith(prefix))


def accepted(name: str, regions: set[str]) -> bool:
    """Whether a component reads the environment variable ``name``: an ``[env: NAME]`` of its
    --help, a password variable, or the mirror's per-region settings of one of ``regions``."""
    if name in PASSWORD_VARIABLES:
        return True
    if any(name.startswith(prefix) for prefix in COMPONENTS) and \
            f"[env: {name}]" in component_help(component_of(name)):
        return True
    per_region = re.fullmatch(rf"GEO_MIRROR_SOURCE_([A-Z0-9_]+?)_({'|'.join(PER_REGION_SETTINGS)})", name)
    return per_region is not None and per_region.group(1) in {region_env(r) for r in regions}


def template_env_names() -> dict[str, set[str]]:
    """Every GEO_* name in the VM templates, by template; ``${...}`` in a name (the mirror's
    ``GEO_MIRROR_SOURCE_${upper(replace(name, "-", "_"))}_USERNAME``) becomes SAMPLE_REGION's part."""
    out: dict[str, set[str]] = {}
    for path in TEMPLATES:
        text = re.sub(r"(?m)^\s*#.*$", "", path.read_text())  # YAML comments name no variable
        names = re.findall(r"\bGEO_(?:[A-Z0-9_]|\$\{[^}]*\})+", text)
        out[str(path.relative_to(TF))] = {re.sub(r"\$\{[^}]*\}", region_env(SAMPLE_REGION), n) for n in names}
    return out


def test_the_documented_password_variables_are_the_components_own() -> None:
    for name in PASSWORD_VARIABLES:
        assert f"or set {name};" in component_help(component_of(name)), name
    assert "GEO_MIRROR_SOURCE_<REGION>_USERNAME" in component_help("mirror.cli")


def test_every_env_name_in_the_vm_templates_is_one_the_components_accept() -> None:
    by_template = template_env_names()
    assert set(by_template) >= {"modules/yandex/edge_group/templates/edge-compose.yaml.tftpl",
                                "modules/yandex/central_host/templates/central-compose.yaml.tftpl"}
    unknown = {t: sorted(n for n in names if not accepted(n, {SAMPLE_REGION})) for t, names in by_template.items()}
    assert not any(unknown.values()), unknown
    names = set().union(*by_template.values())
    sample = region_env(SAMPLE_REGION)
    for needed in ("GEO_EDGE_KAFKA", "GEO_EDGE_KAFKA_USERNAME", "GEO_EDGE_KAFKA_PASSWORD", "GEO_EDGE_KAFKA_CA_FILE",
                   "GEO_MIRROR_CENTRAL", "GEO_MIRROR_CENTRAL_USERNAME", "GEO_MIRROR_CENTRAL_PASSWORD",
                   "GEO_MIRROR_SOURCE_CA_FILE", f"GEO_MIRROR_SOURCE_{sample}_USERNAME",
                   f"GEO_MIRROR_SOURCE_{sample}_PASSWORD", "GEO_CENTRAL_BOOTSTRAP", "GEO_CENTRAL_KAFKA_USERNAME",
                   "GEO_CENTRAL_KAFKA_PASSWORD"):
        assert needed in names, needed
    # every connection names its SASL mechanism next to its protocol (Yandex: SCRAM-SHA-512)
    protocols = {n for n in names if n.endswith("_SECURITY_PROTOCOL")}
    assert len(protocols) >= 5, protocols
    for name in protocols:
        assert name.replace("_SECURITY_PROTOCOL", "_SASL_MECHANISM") in names, name
    # the name check rejects what no component reads
    for wrong in ("GEO_EDGE_KAFKA_SASL_PASSWORD", "GEO_MIRROR_CENTRAL_CA", "GEO_MIRROR_SOURCE_MARS_USERNAME",
                  "GEO_CENTRAL_CONSUL_URL", "GEO_CENTRAL_KAFKA_CA"):
        assert not accepted(wrong, {SAMPLE_REGION}), wrong


def test_kafka_outputs_carry_bootstrap_users_passwords_and_ca() -> None:
    outputs = merged(TF, "output")
    for name in ("kafka_bootstrap", "kafka_public_bootstrap", "kafka_security", "kafka_usernames",
                 "kafka_passwords", "kafka_ca_pem"):
        assert name in outputs, name
        assert unquote(outputs[name].get("description", "")), name
    assert outputs["kafka_passwords"].get("sensitive") is True
    for name in ("kafka_bootstrap", "kafka_public_bootstrap", "kafka_security", "kafka_usernames", "kafka_ca_pem"):
        assert outputs[name].get("sensitive") is not True, f"{name} is not a secret"
    for name in ("kafka_bootstrap", "kafka_security", "kafka_usernames", "kafka_passwords"):
        value = outputs[name]["value"]  # every region: the edge regions and the central one
        assert f"region.{name}" in value and f"module.central_region.{name}" in value, name
    assert "region.kafka_public_bootstrap" in outputs["kafka_public_bootstrap"]["value"]
    assert outputs["kafka_ca_pem"]["value"] == "${var.kafka_ca_pem}"

    region = merged(TF / "modules" / "region", "output")
    assert region["kafka_passwords"].get("sensitive") is True
    assert region["kafka_mirror_password"].get("sensitive") is True
    assert region["kafka_usernames"]["value"] == "${module.kafka.usernames}"
    kafka = merged(TF / "modules" / "yandex" / "kafka", "output")
    assert kafka["passwords"].get("sensitive") is True
    assert unquote(kafka["sasl_mechanism"]["value"]) == "SCRAM-SHA-512"
    assert unquote(kafka["security_protocol"]["value"]) == "SASL_PLAINTEXT"
    assert unquote(kafka["public_security_protocol"]["value"]) == "SASL_SSL"
    assert "yandex_mdb_kafka_user.user" in kafka["usernames"]["value"]

    variable = merged(TF, "variable")["kafka_ca_pem"]
    assert variable["type"] == "string" and variable["default"] is None
    assert "https://storage.yandexcloud.net/cloud-certs/CA.pem" in variable["description"]
    assert "BEGIN CERTIFICATE" in variable["validation"][0]["condition"]
    for module in ("edge_region", "central_region"):
        assert merged(TF, "module")[module]["kafka_ca_pem"] == "${var.kafka_ca_pem}", module


def test_deploy_doc_maps_every_kafka_output_to_its_variables() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc[doc.index("## Kafka security: from Terraform to the components"):]
    section = section[:section.index("\n## ", 1)]
    for output in ("kafka_bootstrap", "kafka_public_bootstrap", "kafka_security", "kafka_usernames",
                   "kafka_passwords", "kafka_ca_pem"):
        assert f"`{output}" in section, output
    documented = set(re.findall(r"`(GEO_[A-Z0-9_<>]+)`", section))
    assert len(documented) >= 20, documented
    for name in documented:
        assert accepted(name.replace("<R>", region_env(SAMPLE_REGION)), {SAMPLE_REGION}), name
    example = section[section.index("```sh"):]
    example = example[:example.index("```", 5)]
    assert "PASSWORD_FILE" in example and "terraform output -json" in example
    assert "GEO_EDGE_KAFKA_PASSWORD=" not in example and "--kafka-password" not in example
    assert "components do not read Kafka security settings" not in doc


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


FAKE_PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2E=\nZmFrZSBidXQgd2VsbC1mb3JtZWQ=\n"
            "-----END CERTIFICATE-----\n")


@needs_terraform
def test_kafka_ca_pem_must_look_like_pem_certificates(tmp_path: Path) -> None:
    """The root variables (variables.tf alone needs no provider) with kafka_ca_pem set and not."""
    shutil.copy(TF / "variables.tf", tmp_path / "variables.tf")
    result = subprocess.run([TERRAFORM, "init", "-no-color"], cwd=tmp_path, capture_output=True, text=True,
                            env=TF_ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    required = {"cloudflare_account_id": "0" * 32, "cloudflare_zone_id": "f" * 32,
                "yandex_folder_id": "b1gexamplefolder0000", "image": "geoingest:0.1.0"}

    def plan(**extra: Any) -> subprocess.CompletedProcess[str]:
        (tmp_path / "case.tfvars.json").write_text(json.dumps({**required, **extra}))
        return subprocess.run([TERRAFORM, "plan", "-no-color", "-input=false", "-var-file=case.tfvars.json"],
                              cwd=tmp_path, capture_output=True, text=True, env=TF_ENV, timeout=120)

    for good in (None, FAKE_PEM, FAKE_PEM.replace("\n", "\r\n"), FAKE_PEM + "\n" + FAKE_PEM):
        result = plan() if good is None else plan(kafka_ca_pem=good)
        assert result.returncode == 0, (good, result.stderr)
    key = FAKE_PEM.replace("CERTIFICATE", "PRIVATE KEY")
    for bad in ("", "not a certificate", key, FAKE_PEM.replace("-----END CERTIFICATE-----\n", ""),
                FAKE_PEM + "and then some text"):
        result = plan(kafka_ca_pem=bad)
        assert result.returncode != 0, bad
        assert "kafka_ca_pem must be one or more PEM certificates" in " ".join(result.stderr.split()), result.stderr


def render_templates(workdir: Path, edge_protocol: str, edge_ca_file: str, ca: str | None) -> dict[str, Any]:
    """Terraform renders the VM templates with these variables (the CA, if any, for the mirror's
    SASL_SSL sources; for the edge when ``edge_ca_file``); outputs as {name: text}."""
    y = TF / "modules" / "yandex"
    ca_hcl = "null" if ca is None else json.dumps(ca)
    edge_ca_hcl = ca_hcl if edge_ca_file else "null"
    source_ca_file = "" if ca is None else "/etc/geoingest/kafka-ca.pem"
    (workdir / "main.tf").write_text(f'''
output "central" {{
  value = templatefile("{y}/central_host/templates/central-compose.yaml.tftpl", {{
    image = "geoingest:0.1.0", region = "ru", kafka_bootstrap = "k:9092", mirror_username = "mirror",
    mirror_password = "p", central_username = "central", central_password = "q", mirror_port = 9200,
    http_port = 8000, kafka_protocol = "SASL_PLAINTEXT", kafka_mechanism = "SCRAM-SHA-512", central_ca_file = "",
    source_protocol = "SASL_SSL", source_mechanism = "SCRAM-SHA-512", source_ca_file = "{source_ca_file}",
    mirror_sources = {{
      eu-west = {{ bootstrap = "a:9091,b:9091", security_protocol = "SASL_SSL", sasl_mechanism = "SCRAM-SHA-512",
                   username = "mirror", password = "x" }},
      us = {{ bootstrap = "c:9091", security_protocol = "SASL_SSL", sasl_mechanism = "SCRAM-SHA-256",
              username = "mirror-us", password = "y" }} }} }})
}}
output "central_init" {{
  value = templatefile("{y}/central_host/templates/cloud-init.yaml.tftpl", {{
    ssh_public_key = null, kafka_ca_pem = {ca_hcl}, kafka_ca_file = "/etc/geoingest/kafka-ca.pem" }})
}}
output "edge" {{
  value = templatefile("{y}/edge_group/templates/edge-compose.yaml.tftpl", {{
    image = "geoingest:0.1.0", region = "eu", public_port = 8080, metrics_port = 9100, workers = 2,
    kafka_bootstrap = "k:9092", kafka_protocol = "{edge_protocol}", kafka_mechanism = "SCRAM-SHA-512",
    kafka_username = "edge", kafka_password = "p", kafka_ca_file = "{edge_ca_file}", consul_url = "http://c:8500" }})
}}
output "edge_init" {{
  value = templatefile("{y}/edge_group/templates/cloud-init.yaml.tftpl", {{
    ssh_public_key = "ssh-ed25519 AAAA", kafka_ca_pem = {edge_ca_hcl}, kafka_ca_file = "{edge_ca_file}" }})
}}
output "consul" {{
  value = templatefile("{y}/consul/templates/cloud-init.yaml.tftpl", {{
    ssh_public_key = "ssh-ed25519 AAAA", server_config = jsonencode({{ server = true, retry_join = ["10.0.0.10"] }}) }})
}}
''')
    for argv in (["init", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        result = subprocess.run([TERRAFORM, *argv], cwd=workdir, capture_output=True, text=True,
                                env=TF_ENV, timeout=120)
        assert result.returncode == 0, result.stderr
    out = json.loads(subprocess.run([TERRAFORM, "output", "-json", "-no-color"], cwd=workdir,
                                    capture_output=True, text=True, env=TF_ENV, timeout=60).stdout)
    return {name: o["value"] for name, o in out.items()}


@needs_terraform
def test_vm_templates_render_to_valid_yaml(tmp_path: Path) -> None:
    """Terraform renders the VMs' docker-compose and cloud-init templates into parseable YAML whose
    Kafka settings are the components' own names, the CA file written where SASL_SSL is used."""
    out = render_templates(tmp_path, "SASL_PLAINTEXT", "", FAKE_PEM)
    central = yaml.safe_load(out["central"])["services"]
    assert central["geo-mirror"]["command"] == ["geo-mirror", "--region", "eu-west=a:9091,b:9091",
                                                "--region", "us=c:9091"]
    mirror = central["geo-mirror"]["environment"]
    assert mirror["GEO_MIRROR_CENTRAL_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert mirror["GEO_MIRROR_CENTRAL_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "GEO_MIRROR_CENTRAL_CA_FILE" not in mirror
    assert mirror["GEO_MIRROR_SOURCE_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert mirror["GEO_MIRROR_SOURCE_CA_FILE"] == "/etc/geoingest/kafka-ca.pem"
    assert mirror["GEO_MIRROR_SOURCE_EU_WEST_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert mirror["GEO_MIRROR_SOURCE_EU_WEST_USERNAME"] == "mirror"
    assert mirror["GEO_MIRROR_SOURCE_EU_WEST_PASSWORD"] == "x"
    assert mirror["GEO_MIRROR_SOURCE_US_USERNAME"] == "mirror-us"
    assert mirror["GEO_MIRROR_SOURCE_US_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert central["geo-mirror"]["volumes"] == ["/etc/geoingest:/etc/geoingest:ro"]
    assert not {"p", "x", "y"} & set(central["geo-mirror"]["command"])  # passwords never in argv
    geo_central = central["geo-central"]["environment"]
    assert geo_central["GEO_CENTRAL_BOOTSTRAP"] == "k:9092"
    assert geo_central["GEO_CENTRAL_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert geo_central["GEO_CENTRAL_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert geo_central["GEO_CENTRAL_KAFKA_USERNAME"] == "central"
    assert geo_central["GEO_CENTRAL_KAFKA_PASSWORD"] == "q"
    assert "GEO_CENTRAL_KAFKA_CA_FILE" not in geo_central
    assert central["geo-central"]["volumes"] == ["/var/lib/geoingest:/data"]
    central_init = yaml.safe_load(out["central_init"])
    assert central_init["mounts"][0][1] == "/var/lib/geoingest"
    (ca_file,) = central_init["write_files"]
    assert ca_file["path"] == "/etc/geoingest/kafka-ca.pem" and ca_file["encoding"] == "b64"
    assert base64.b64decode(ca_file["content"]).decode() == FAKE_PEM

    edge_service = yaml.safe_load(out["edge"])["services"]["geo-edge"]
    edge = edge_service["environment"]
    assert edge["GEO_EDGE_REGION"] == "eu" and edge["GEO_EDGE_LISTEN"] == "0.0.0.0:8080"
    assert edge["GEO_EDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert edge["GEO_EDGE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert edge["GEO_EDGE_KAFKA_USERNAME"] == "edge" and edge["GEO_EDGE_KAFKA_PASSWORD"] == "p"
    assert "GEO_EDGE_KAFKA_CA_FILE" not in edge and "volumes" not in edge_service
    assert "write_files" not in yaml.safe_load(out["edge_init"])
    cloud_init = yaml.safe_load(out["consul"])
    assert json.loads(cloud_init["write_files"][0]["content"])["retry_join"] == ["10.0.0.10"]

    # every rendered name is one the components read (the regions: the rendered ones)
    unknown = [n for n in {**mirror, **geo_central, **edge} if not accepted(n, {"eu-west", "us"})]
    assert not unknown, unknown


@needs_terraform
def test_templates_give_an_edge_on_sasl_ssl_the_ca_and_nobody_a_ca_file_without_a_ca(tmp_path: Path) -> None:
    out = render_templates(tmp_path, "SASL_SSL", "/etc/geoingest/kafka-ca.pem", FAKE_PEM)
    edge_service = yaml.safe_load(out["edge"])["services"]["geo-edge"]
    assert edge_service["environment"]["GEO_EDGE_KAFKA_CA_FILE"] == "/etc/geoingest/kafka-ca.pem"
    assert edge_service["volumes"] == ["/etc/geoingest:/etc/geoingest:ro"]
    (ca_file,) = yaml.safe_load(out["edge_init"])["write_files"]
    assert base64.b64decode(ca_file["content"]).decode() == FAKE_PEM

    work = tmp_path / "no-ca"
    work.mkdir()
    out = render_templates(work, "SASL_PLAINTEXT", "", None)
    mirror_service = yaml.safe_load(out["central"])["services"]["geo-mirror"]
    assert "GEO_MIRROR_SOURCE_CA_FILE" not in mirror_service["environment"]
    assert "volumes" not in mirror_service
    assert "write_files" not in yaml.safe_load(out["central_init"])


def test_module_calls_match_the_modules_variables_and_outputs() -> None:
    """What `terraform validate` would say about the wiring (it cannot run here: no provider
    downloads): every module call sets only its module's variables and all the required ones,
    and every `module.<name>.<output>` it reads is an output of that module."""
    meta = {"source", "count", "for_each", "depends_on", "providers"}
    problems = []
    for directory in sorted({p.parent for p in all_tf_files()}):
        text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
        calls = merged(directory, "module")
        for name, call in calls.items():
            target = (directory / unquote(call["source"])).resolve()
            variables = merged(target, "variable")
            args = {a for a in call if not a.startswith("__")} - meta
            problems += [f"{directory.relative_to(TF)}: module.{name} sets unknown {a}" for a in args - set(variables)]
            problems += [f"{directory.relative_to(TF)}: module.{name} misses {v}"
                         for v, body in variables.items() if "default" not in body and v not in args]
            outputs = set(merged(target, "output"))
            used = set(re.findall(rf"\bmodule\.{name}(?:\[[^\]]*\])?\.([a-z_][a-z0-9_]*)", text))
            # the root reads module.edge_region's instances in for-expressions: `for name, region in ...`
            if f"region in module.{name}" in text:
                used |= set(re.findall(r"(?<![\w.])region\.([a-z_][a-z0-9_]*)", text))
            problems += [f"{directory.relative_to(TF)}: module.{name}.{o} is no output" for o in used - outputs]
    assert not problems, problems
