"""geoctl: its parsing and tables on real data structures, then the tool against one real local
stack (module-scoped): status and regions, a wrong token, a read-only production-style token, edges
added and drained under the fault suite's load (0 client-visible errors, nothing lost), and a
stopped regional Kafka in ``status --json`` and its recovery."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from fault_kit import Fault, run_fault
from geoctl import render
from geoctl.cli import options_parser
from geoctl.consul_source import ServiceInstance, instance_state
from geoctl.kafka_source import KafkaHealth, partition_figures
from geoctl.local import DEFAULT_STACK_DIR, listening_pids, next_node_ids
from geoctl.metrics_source import CentralView, MirrorRegion, MirrorView, add_mirror_samples, parse
from geoctl.topology import Limits, Region, Topology, judge
from geostack.stack import LocalStack
from service_kit.wait import wait_until
from test_mirror_helpers import metric_value

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- units on real data structures ---------------------------------------------------------------

def draining_check() -> dict[str, str]:
    # the output Consul keeps of an HTTP check on a draining edge's /status
    return {"Status": "critical", "ServiceID": "eu-1", "Output":
            'HTTP GET http://127.0.0.1:18081/status: 503 Service Unavailable Output: {"status":'
            '"unavailable","reasons":["draining"],"region":"eu","edge":"eu-1","draining":true}'}


def test_instance_state_tells_draining_from_critical() -> None:
    serf = {"Status": "passing", "ServiceID": "", "Output": "Agent alive and reachable"}
    assert instance_state([serf, {"Status": "passing", "ServiceID": "eu-1"}])[0] == "passing"
    assert instance_state([serf, draining_check()])[0] == "draining"
    crashed = {"Status": "critical", "ServiceID": "eu-1", "Output": "connection refused"}
    assert instance_state([serf, crashed]) == ("critical", "connection refused")
    assert instance_state([serf, {"Status": "warning", "ServiceID": "eu-1"}])[0] == "warning"


def test_partition_figures_count_under_replicated_and_offline() -> None:
    described = [{"topic": "events", "partitions": [
        {"partition": 0, "leader": 1, "replicas": [1, 2, 3], "isr": [1, 2, 3]},
        {"partition": 1, "leader": 2, "replicas": [1, 2, 3], "isr": [2, 3]},
        {"partition": 2, "leader": -1, "replicas": [1, 2, 3], "isr": []}]}]
    assert partition_figures(described) == (3, 2, 1)


def test_kafka_errors_read_in_one_short_line() -> None:
    from aiokafka.errors import KafkaConnectionError

    from geoctl.kafka_source import describe_error
    raw = KafkaConnectionError("KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 29092, "
                               "<AddressFamily.AF_INET: 2>)]")
    assert describe_error(raw) == "KafkaConnectionError: Unable to bootstrap from 127.0.0.1:29092"


def test_a_datacenter_that_does_not_answer_is_a_down_region() -> None:
    region = Region("us", "edge", "us", consul_error="Consul datacenter us did not answer (500 No path to datacenter)")
    region.kafka = KafkaHealth("127.0.0.1:29092", brokers=1)
    judge(region, Topology([region], MirrorView(), None), Limits())
    assert region.state == "down" and region.problems[0].startswith("Consul datacenter us did not answer")


def test_mirror_samples_joined_per_region() -> None:
    text = ("geo_mirror_region_up{region=\"eu\"} 1.0\ngeo_mirror_region_up{region=\"us\"} 0.0\n"
            "geo_mirror_records_behind{region=\"eu\",topic=\"events\",partition=\"0\"} 10.0\n"
            "geo_mirror_records_behind{region=\"eu\",topic=\"events\",partition=\"1\"} 5.0\n"
            "geo_mirror_last_heartbeat_timestamp_seconds{region=\"eu\"} 998.5\ngeo_mirror_central_up 1.0\n")
    view = MirrorView()
    add_mirror_samples(view, parse(text), now=1000.0)
    assert view.regions["eu"].up and view.regions["eu"].records_behind == 15
    assert view.regions["eu"].latency_s == pytest.approx(1.5)
    assert not view.regions["us"].up and view.central_up


def test_next_node_ids_follow_the_highest() -> None:
    assert next_node_ids("eu", {"eu-1", "eu-2", "us-7", "eu-x"}, 2) == ["eu-3", "eu-4"]
    assert next_node_ids("us", set(), 1) == ["us-1"]


def test_listening_pids_finds_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert os.getpid() in listening_pids(sock.getsockname()[1])


def sample_topology() -> Topology:
    """A topology as collect() builds it: eu healthy, us with its Kafka gone, a region that only
    Consul knows, the central one."""
    def edge(node: str, state: str) -> ServiceInstance:
        return ServiceInstance(node, node[:2], "n", "127.0.0.1", 18081, {"region": node[:2], "version": "0.1.0"}, state)
    mirror = MirrorView(workers=1, central_up=True)
    eu = Region("eu", "edge", "eu", in_consul=True, edges=[edge("eu-1", "passing"), edge("eu-2", "draining")],
                kafka=KafkaHealth("127.0.0.1:19092", brokers=3, partitions=12, under_replicated=1),
                mirror=MirrorRegion(up=True, records_behind=12_345, latency_s=0.8), freshness_s=1.9)
    us = Region("us", "edge", "us", in_consul=True, edges=[edge("us-1", "critical"), edge("us-2", "critical")],
                kafka=KafkaHealth("127.0.0.1:29092", error="KafkaConnectionError: Unable to bootstrap"),
                mirror=MirrorRegion(up=False), freshness_s=41.0)
    apac = Region("apac", "edge", "apac", in_regions_file=False, in_consul=True,
                  kafka=KafkaHealth("127.0.0.1:49092", brokers=1), mirror=MirrorRegion(up=True))
    ru = Region("ru", "central", "ru", in_consul=True, kafka=KafkaHealth("127.0.0.1:39092", brokers=1))
    topology = Topology([eu, us, apac, ru], mirror, CentralView("http://127.0.0.1:38080", healthy=True,
                                                                 backlog=1200, freshness_s={"eu": 1.9}))
    for region in topology.regions:
        judge(region, topology, Limits())
    return topology


def test_judgement_of_each_region() -> None:
    t = sample_topology()
    assert t.region("eu").state == "degraded"          # one under-replicated partition
    assert t.region("us").state == "down"
    assert any("unreachable" in p for p in t.region("us").problems)
    assert t.region("apac").state == "down"            # no passing edge
    assert t.region("ru").state == "ok"
    assert not t.healthy


@pytest.mark.parametrize("width", [80, 100])
def test_status_table_fits_the_terminal(width: int) -> None:
    lines = render.status_lines(sample_topology(), width=width, colour=False)
    assert all(len(line) <= width for line in lines), lines
    assert lines[0].split() == ["REGION", "STATE", "EDGES", "BROKERS", "URP", "OFFLINE", "BEHIND", "LATENCY", "FRESH"]
    assert [line.split()[0] for line in lines[1:5]] == ["eu", "us", "apac*", "ru"]
    assert lines[1].split()[:3] == ["eu", "degraded", "1/0/0/1"]
    assert lines[-1] == "UNHEALTHY"
    assert all(len(line) <= 80 for line in render.regions_lines(sample_topology(), 80))


def test_colour_only_when_asked_or_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    coloured = render.status_lines(sample_topology(), colour=True)
    assert "\x1b[31mdown\x1b[0m" in "\n".join(coloured)
    assert [ANSI.sub("", line) for line in coloured] == render.status_lines(sample_topology(), colour=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    with open(os.devnull, "w") as not_a_tty:
        assert not render.use_colour("auto", not_a_tty)
        assert render.use_colour("always", not_a_tty)
    controller, terminal = os.openpty()
    with os.fdopen(terminal, "w") as tty:
        assert render.use_colour("auto", tty)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not render.use_colour("auto", tty)
        assert not render.use_colour("never", tty)
    os.close(controller)


def test_flags_table_in_docs_is_current() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from gen_config_docs import table  # noqa: E402

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("GEOCTL_", "GEOINGEST_"))}
    try:
        expected = table("geoctl", options_parser()).replace(str(DEFAULT_STACK_DIR), "<repository>/var/stack")
    finally:
        os.environ.update(saved)
    assert expected in (REPO / "docs" / "geoctl.md").read_text(), expected


def geoctl(*args: str, stack_dir: Path | str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the console entry as an operator would, with COLUMNS=80 and no GEOCTL_* of ours."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GEOCTL_") and k != "CONSUL_HTTP_TOKEN"}
    full = {**base, "GEOCTL_STACK_DIR": str(stack_dir), "COLUMNS": "80", **(env or {})}
    return subprocess.run([sys.executable, "-m", "geoctl.cli", *args], env=full, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_without_a_stack_or_consul_one_clear_line(tmp_path: Path) -> None:
    done = geoctl("status", stack_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no local stack state" in done.stderr and "Traceback" not in done.stderr
    assert geoctl("edges", "add", stack_dir=tmp_path).returncode == 2


# -- against one real local stack ---------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("geoctl-stack")) as local:
        yield local


def status_json(stack: LocalStack) -> tuple[int, dict]:
    done = geoctl("status", "--json", stack_dir=stack.workdir)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, orjson.loads(done.stdout)


@pytest.mark.slow
def test_state_file_is_private_and_complete(stack: LocalStack) -> None:
    path = stack.workdir / "geoctl.json"
    assert path.stat().st_mode & 0o077 == 0
    doc = orjson.loads(path.read_bytes())
    assert doc["regions"]["eu"]["edge_env"]["GEO_EDGE_CONSUL_TOKEN"] == stack.tokens["edge"]
    assert "GEO_EDGE_LISTEN" not in doc["regions"]["eu"]["edge_env"]
    assert set(doc["consul"]["urls"]) == set(stack.consul)


@pytest.mark.slow
def test_status_healthy_and_readable_in_80_columns(stack: LocalStack) -> None:
    wait_until(lambda: status_json(stack)[0] == 0, 60, interval=1, what="geoctl status healthy")
    done = geoctl("status", stack_dir=stack.workdir)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert "\x1b[" not in done.stdout                         # not a terminal: no colour
    assert lines[0].split()[:3] == ["REGION", "STATE", "EDGES"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(rows) == {"eu", "us", "ru"}
    assert rows["eu"][1:3] == ["ok", "2/0/0/0"] and rows["ru"][2] == "(central)"
    assert lines[-1] == "healthy"
    coloured = geoctl("status", "--color", "always", stack_dir=stack.workdir)
    assert "\x1b[32mok\x1b[0m" in coloured.stdout
    on_a_terminal = in_a_terminal(["status"], stack.workdir, columns=80)
    assert "\x1b[32mok\x1b[0m" in on_a_terminal                  # auto: colour on a terminal
    visible = [ANSI.sub("", line) for line in on_a_terminal.replace("\r", "").splitlines()]
    assert visible[0].split()[:3] == ["REGION", "STATE", "EDGES"] and all(len(line) <= 80 for line in visible)


def in_a_terminal(args: list[str], stack_dir: Path, columns: int) -> str:
    """What geoctl writes to an 80-column terminal (a pty of that size; no COLUMNS variable)."""
    import fcntl
    import struct
    import termios

    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOCTL_") and k not in ("COLUMNS", "NO_COLOR")}
    proc = subprocess.Popen([sys.executable, "-m", "geoctl.cli", *args], stdin=terminal, stdout=terminal,
                            stderr=terminal, env={**env, "GEOCTL_STACK_DIR": str(stack_dir), "TERM": "xterm"},
                            cwd=REPO)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last writer exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(controller)
    return b"".join(chunks).decode()


@pytest.mark.slow
def test_regions_and_edges_listing(stack: LocalStack) -> None:
    done = geoctl("regions", "--json", stack_dir=stack.workdir)
    regions = {r["region"]: r for r in orjson.loads(done.stdout)["regions"]}
    assert set(regions) == {"eu", "us", "ru"} and all(r["in_consul"] for r in regions.values())
    table = geoctl("regions", stack_dir=stack.workdir).stdout.splitlines()
    assert table[0].split()[:3] == ["REGION", "ROLE", "DC"] and all(len(line) <= 80 for line in table)
    edges = orjson.loads(geoctl("edges", "eu", "--json", stack_dir=stack.workdir).stdout)
    assert sorted(e["node"] for e in edges) == ["eu-1", "eu-2"]
    eu1 = next(e for e in edges if e["node"] == "eu-1")
    assert eu1["address"] == f"127.0.0.1:{stack.edges_of('eu')[0].port}" and eu1["health"] == "passing"
    assert eu1["requests_per_s"] is not None and eu1["version"]
    unknown = geoctl("edges", "nowhere", stack_dir=stack.workdir)
    assert unknown.returncode == 2 and "unknown region 'nowhere'" in unknown.stderr


@pytest.mark.slow
def test_a_wrong_token_is_one_clear_line(stack: LocalStack) -> None:
    done = geoctl("status", stack_dir=stack.workdir, env={"GEOCTL_CONSUL_TOKEN": "00000000-0000-4000-8000-000000000000"})
    assert done.returncode == 2
    assert done.stderr.startswith("geoctl: Consul refused the token (403 ACL not found)"), done.stderr
    assert done.stderr.count("\n") == 1 and "00000000-0000-4000" not in done.stderr


@pytest.mark.slow
def test_production_flags_with_a_read_only_token(stack: LocalStack, tmp_path: Path) -> None:
    token = stack.primary.create_token(["geoctl"], "geoctl read only")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    done = geoctl("status", "--json", "--consul-url", stack.primary.url, "--consul-token-file", str(token_file),
                  "--mirror-url", f"http://127.0.0.1:{stack.mirror_admin_port}", "--central-url", stack.central_url,
                  stack_dir=tmp_path / "no-stack")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = orjson.loads(done.stdout)
    eu = next(r for r in doc["regions"] if r["region"] == "eu")
    assert eu["edges"]["passing"] == 2 and eu["kafka"]["reachable"] and token not in done.stdout
    refused = geoctl("edges", "add", "eu", "--consul-url", stack.primary.url, "--consul-token-file",
                     str(token_file), stack_dir=tmp_path / "no-stack")
    assert refused.returncode == 2 and "local stack only" in refused.stderr


@pytest.mark.slow
def test_edges_added_and_drained_under_load(stack: LocalStack) -> None:
    """``edges add eu --count 2`` while the fault suite's load runs: both take traffic within
    10 s once the command has returned (Consul passing); then ``edges drain`` of an old edge and of a new one: no
    client-visible error, every acknowledged event centrally exactly once (run_fault checks)."""
    seen: dict[str, object] = {}

    def add() -> None:
        started = time.monotonic()
        done = geoctl("edges", "add", "eu", "--count", "2", "--json", stack_dir=stack.workdir)
        assert done.returncode == 0, done.stderr
        records = orjson.loads(done.stdout)
        returned = time.monotonic()
        seen["nodes"] = [r["node"] for r in records]
        ports = [r["metrics_port"] for r in records]
        seen["add_command_s"] = round(returned - started, 1)   # until Consul said passing
        wait_until(lambda: all(metric_value(p, "geo_edge_events_accepted_total") > 0 for p in ports), 10,
                   interval=0.2, what="both new edges taking traffic through the router")
        seen["traffic_after_return_s"] = round(time.monotonic() - returned, 1)

    def drain() -> None:
        for node in ("eu-1", seen["nodes"][0]):  # type: ignore[index]
            done = geoctl("edges", "drain", node, "--json", stack_dir=stack.workdir)
            assert done.returncode == 0, done.stderr
            seen[f"drain_{node}_s"] = orjson.loads(done.stdout)["seconds_to_drained"]

    run_fault(stack, Fault("geoctl edges add eu --count 2, then drain eu-1 and one new", inject=add,
                           undo=drain, hold=5.0, zero_client_errors=True, load_seconds=50.0))
    print(orjson.dumps(seen).decode())
    assert sorted(stack.routable_edges()["eu"]) == sorted(["eu-2", seen["nodes"][1]])  # type: ignore[index]


@pytest.mark.slow
def test_status_reflects_a_stopped_regional_kafka_and_its_recovery(stack: LocalStack) -> None:
    stopped = time.monotonic()
    stack.kafka["us"].stop()
    try:
        def us_down() -> bool:
            code, doc = status_json(stack)
            us = next(r for r in doc["regions"] if r["region"] == "us")
            return code == 1 and us["state"] == "down" and not us["kafka"]["reachable"]
        wait_until(us_down, 60, interval=1, what="geoctl status showing us down")
        seen_down = time.monotonic() - stopped
        shown = geoctl("status", stack_dir=stack.workdir)
        print(shown.stdout)
        assert shown.returncode == 1 and shown.stdout.splitlines()[-1] == "UNHEALTHY"
        assert all(len(line) <= 80 for line in shown.stdout.splitlines())
    finally:
        started = time.monotonic()
        stack.kafka["us"].start()
    wait_until(lambda: status_json(stack)[0] == 0, 120, interval=1, what="geoctl status healthy again")
    code, doc = status_json(stack)
    assert code == 0 and doc["healthy"]
    print(orjson.dumps({"us_down_seen_after_s": round(seen_down, 1),
                        "healthy_after_restart_s": round(time.monotonic() - started, 1)}).decode())


@pytest.mark.slow
def test_a_region_registered_at_run_time_shows_up_and_its_dead_kafka_as_down(stack: LocalStack) -> None:
    """A ``kafka`` instance of a region the regions file does not have (last: the mirror tries it)."""
    agent = stack.consul["us"]
    token = stack.tokens["kafka-registrar"]
    agent.request("PUT", "/v1/agent/service/register", token=token, check=True, json={
        "ID": "kafka-apac", "Name": "kafka", "Address": "127.0.0.1", "Port": 1,
        "Meta": {"region": "apac", "bootstrap": "127.0.0.1:1", "role": "edge"},
        "Check": {"CheckID": "kafka-apac-tcp", "Name": "kafka listener", "TCP": "127.0.0.1:1",
                  "Interval": "1s", "Timeout": "1s"}})
    try:
        def apac() -> dict | None:
            done = geoctl("regions", "--json", stack_dir=stack.workdir)
            return next((r for r in orjson.loads(done.stdout)["regions"] if r["region"] == "apac"), None)
        wait_until(lambda: apac() is not None, 30, interval=1, what="apac in geoctl regions")
        row = apac()
        assert row is not None
        assert not row["in_regions_file"] and row["in_consul"] and row["state"] == "down"
        assert not row["kafka"]["reachable"]
        shown = geoctl("regions", stack_dir=stack.workdir)
        print(shown.stdout)
        assert shown.returncode == 1
        assert any(line.split()[:4] == ["apac", "edge", "us", "consul"] and "down" in line
                   for line in shown.stdout.splitlines())
    finally:
        agent.request("PUT", "/v1/agent/service/deregister/kafka-apac", token=token, check=True)
