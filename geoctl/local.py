"""The local stack as ``geoctl`` sees it: the state ``make up`` writes (``<stack dir>/geoctl.json``,
see ``geostack/operator_state.py``), and adding and draining edges of the running stack.

``edges add`` starts ``geo-edge`` processes detached (own session, no parent-death signal: they
outlive geoctl; logs in ``<stack dir>/logs/edge-<node>.log``) with the region's launch environment
from the state file and free ports, records them in ``<stack dir>/geoctl-edges.json`` (the stack
stops them with itself), and waits until Consul says their check passes. ``edges drain`` sends the
edge SIGTERM — the drain every edge does (``/status`` 503, Consul sees the check critical,
deregistration, in-flight requests finish) — and waits until Consul no longer lists it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoctl.consul_source import Consul, ServiceInstance
from geoctl.errors import GeoctlError
from geostack import operator_state
from geostack.up import REPO
from harness.ports import free_port
from service_kit.wait import wait_until

#: where ``make up`` keeps its work directory (geostack/up.py's --workdir default)
DEFAULT_STACK_DIR = REPO / "var" / "stack"


@dataclass
class StackState:
    """The parsed ``geoctl.json`` of a stack's work directory."""

    path: Path
    doc: dict[str, Any]

    @property
    def workdir(self) -> Path:
        return self.path.parent

    @property
    def consul_urls(self) -> dict[str, str]:
        return dict(self.doc["consul"]["urls"])

    @property
    def primary_consul_url(self) -> str:
        consul = self.doc["consul"]
        return consul["urls"][consul["primary"]]

    @property
    def consul_token(self) -> str:
        return str(self.doc["consul"].get("token") or "")

    def region(self, name: str) -> dict[str, Any]:
        try:
            return self.doc["regions"][name]
        except KeyError:
            known = ", ".join(sorted(self.doc["regions"]))
            raise GeoctlError(f"unknown region {name!r} (the local stack has {known})") from None

    @property
    def kafka_bootstraps(self) -> dict[str, str]:
        return {name: r["kafka"] for name, r in self.doc["regions"].items() if r.get("kafka")}


def load_state(stack_dir: str | Path, required: bool = True) -> StackState | None:
    """The state file of ``stack_dir``; ``None`` (or a GeoctlError when ``required``) without one."""
    path = operator_state.state_path(stack_dir)
    try:
        doc = operator_state.read_json(path, None)
    except (OSError, ValueError) as exc:
        raise GeoctlError(f"cannot read {path}: {exc}") from None
    if doc is None:
        if required:
            raise GeoctlError(f"no local stack state at {path}: is `make up` running? "
                              f"(--stack-dir / GEOCTL_STACK_DIR name its work directory)")
        return None
    if doc.get("version") != operator_state.STATE_VERSION:
        raise GeoctlError(f"{path} has state version {doc.get('version')}, geoctl reads "
                          f"{operator_state.STATE_VERSION}: restart the stack with this checkout")
    return StackState(path, doc)


# -- add ---------------------------------------------------------------------------------------

def next_node_ids(region: str, taken: set[str], count: int) -> list[str]:
    """``<region>-N`` ids after the highest N taken."""
    numbers = [int(m.group(1)) for t in taken if (m := re.fullmatch(rf"{re.escape(region)}-(\d+)", t))]
    start = max(numbers, default=0) + 1
    return [f"{region}-{n}" for n in range(start, start + count)]


def start_edge(state: StackState, region: str, node_id: str) -> dict[str, Any]:
    """Start one detached ``geo-edge``; returns its record (node, pid, ports, log)."""
    settings = state.region(region)
    if not settings.get("edge_env"):
        raise GeoctlError(f"region {region!r} has no edge settings in {state.path} (not an edge region?)")
    port, metrics_port = free_port(), free_port()
    log_path = state.workdir / "logs" / f"edge-{node_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings["edge_env"], "GEO_EDGE_LISTEN": f"127.0.0.1:{port}",
           "GEO_EDGE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}", "GEO_EDGE_NODE_ID": node_id,
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([state.doc.get("python") or "python3", "-m", "edge.cli"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(REPO), start_new_session=True)
    return {"node": node_id, "region": region, "pid": proc.pid, "port": port, "metrics_port": metrics_port,
            "log": str(log_path), "started_at": time.time()}


def add_edges(state: StackState, consul: Consul, region: str, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
    """Start ``count`` edges in ``region`` and wait until Consul has them passing."""
    if count < 1:
        raise GeoctlError("--count must be at least 1")
    datacenter = state.region(region)["datacenter"]
    added = operator_state.read_added_edges(state.workdir)
    taken = {e.id for e in consul.edges(datacenter)} | set(added)
    records = [start_edge(state, region, node) for node in next_node_ids(region, taken, count)]
    for record in records:
        added[record["node"]] = record
    operator_state.write_added_edges(state.workdir, added)
    started = time.monotonic()

    def passing() -> bool:
        for record in records:
            if not operator_state.pid_alive(record["pid"]):
                raise GeoctlError(f"edge {record['node']} exited at start; its log: {record['log']}")
        states = {e.id: e.state for e in consul.edges(datacenter)}
        return all(states.get(r["node"]) == "passing" for r in records)

    try:
        wait_until(passing, timeout, interval=0.25, what=f"edges {[r['node'] for r in records]} passing in Consul")
    except TimeoutError as exc:
        raise GeoctlError(f"{exc} (logs in {state.workdir / 'logs'})") from None
    for record in records:
        record["seconds_to_passing"] = round(time.monotonic() - started, 1)
    return records


# -- drain -------------------------------------------------------------------------------------

def listening_pids(port: int) -> list[int]:
    """Pids of this machine's processes holding a TCP socket that listens on ``port`` (/proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    if not inodes:
        return pids
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return sorted(pids)


def edge_pid(edge: ServiceInstance, workdir: Path | None) -> int:
    """The pid to signal: the record of an edge geoctl started, else the process listening on
    the edge's registered port here (the stack's own edges; the parent when workers share it)."""
    if workdir is not None:
        record = operator_state.read_added_edges(workdir).get(edge.id)
        if record and record.get("port") == edge.port and operator_state.pid_alive(int(record["pid"])):
            return int(record["pid"])
    if edge.address not in ("127.0.0.1", "localhost", "::1"):
        raise GeoctlError(f"edge {edge.id} runs at {edge.address}, not on this machine: send it SIGTERM "
                          f"where it runs (systemctl stop, kill -TERM)")
    pids = listening_pids(edge.port)
    if not pids:
        raise GeoctlError(f"no process of yours listens on port {edge.port} of edge {edge.id}")
    return pids[0]


def find_edge(consul: Consul, node: str) -> ServiceInstance:
    for dc in consul.datacenters():
        for edge in consul.edges(dc):
            if edge.id == node:
                return edge
    raise GeoctlError(f"no edge {node!r} registered in Consul")


def drain_edge(consul: Consul, node: str, workdir: Path | None, timeout: float = 60.0) -> dict[str, Any]:
    """SIGTERM the edge and wait until Consul no longer lists it and the process is gone."""
    edge = find_edge(consul, node)
    pid = edge_pid(edge, workdir)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    if "edge" not in cmdline:
        raise GeoctlError(f"pid {pid} on port {edge.port} is not an edge ({cmdline.strip()[:80]!r})")
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise GeoctlError(f"edge {node} (pid {pid}) exited before the drain") from None

    def gone() -> bool:
        return (all(e.id != node for e in consul.edges(edge.datacenter))
                and not operator_state.pid_alive(pid))

    try:
        wait_until(gone, timeout, interval=0.25, what=f"edge {node} (pid {pid}) to drain and exit")
    except TimeoutError as exc:
        raise GeoctlError(str(exc)) from None
    if workdir is not None:
        added = operator_state.read_added_edges(workdir)
        if added.pop(node, None) is not None:
            operator_state.write_added_edges(workdir, added)
    return {"node": node, "pid": pid, "datacenter": edge.datacenter,
            "seconds_to_drained": round(time.monotonic() - started, 1)}
