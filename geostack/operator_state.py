"""What an operator's tool needs to know about a running local stack, in one file.

``LocalStack.start()`` writes ``<workdir>/geoctl.json`` (mode 0600: it holds Consul tokens):
the Consul agents per datacenter and a read token, per region its role, datacenter, Kafka
bootstrap and the environment its edges are launched with (minus the per-edge ports and node id),
the mirror's admin URL, geo-central's URL and the router's. ``geoctl`` reads it (``geoctl/local.py``).

Edges that ``geoctl edges add`` starts are recorded in ``<workdir>/geoctl-edges.json``; the stack
stops them with its own processes (``stop_added_edges``), so that no edge outlives its Kafka.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from service_kit.wait import wait_until

if TYPE_CHECKING:  # pragma: no cover
    from geostack.stack import LocalStack

STATE_FILE = "geoctl.json"
ADDED_EDGES_FILE = "geoctl-edges.json"
STATE_VERSION = 1
PER_EDGE = ("GEO_EDGE_LISTEN", "GEO_EDGE_METRICS_LISTEN", "GEO_EDGE_NODE_ID")


def state_path(workdir: str | Path) -> Path:
    return Path(workdir) / STATE_FILE


def added_edges_path(workdir: str | Path) -> Path:
    return Path(workdir) / ADDED_EDGES_FILE


def stack_state(stack: "LocalStack") -> dict[str, Any]:
    """The state document of a started stack."""
    regions = {}
    for region in stack.regions.regions:
        doc: dict[str, Any] = {"role": region.role, "datacenter": region.consul_datacenter,
                               "kafka": stack.kafka[region.name].bootstrap}
        edges = stack.edges_of(region.name)
        if edges:  # what the stack's own edges run with (a token among it), but their own ports/id
            doc["edge_env"] = {k: v for k, v in edges[0].process.env.items() if k not in PER_EDGE}
        regions[region.name] = doc
    return {
        "version": STATE_VERSION,
        "workdir": str(Path(stack.workdir).resolve()),
        "python": sys.executable,  # what geoctl starts new edges with
        "consul": {"primary": stack.regions.central.consul_datacenter,
                   "urls": {dc: agent.url for dc, agent in stack.consul.items()},
                   # read everything (the management token: the local stack's operator is its owner)
                   "token": stack.primary.management_token if stack.acl else ""},
        "regions": regions,
        "mirror_urls": [f"http://127.0.0.1:{stack.mirror_admin_port}"],
        "central_url": stack.central_url,
        "router_url": stack.router_url,
        "router_admin_url": f"http://127.0.0.1:{stack.router_admin_port}",
        "logs": str(Path(stack.workdir).resolve() / "logs"),
    }


def write_private_json(path: Path, doc: Any) -> None:
    """Write ``doc`` readable by this user only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, path)


def write_state(stack: "LocalStack") -> Path:
    path = state_path(stack.workdir)
    write_private_json(path, stack_state(stack))
    return path


def read_json(path: Path, default: Any) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return default


def read_added_edges(workdir: str | Path) -> dict[str, dict[str, Any]]:
    doc = read_json(added_edges_path(workdir), {})
    return doc if isinstance(doc, dict) else {}


def write_added_edges(workdir: str | Path, edges: dict[str, dict[str, Any]]) -> None:
    write_private_json(added_edges_path(workdir), edges)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def stop_added_edges(workdir: str | Path, timeout: float = 20.0) -> None:
    """SIGTERM every edge geoctl started in this work directory, SIGKILL what is left after
    ``timeout`` (the stack is stopping: its Kafka goes next)."""
    edges = read_added_edges(workdir)
    pids = [int(e["pid"]) for e in edges.values() if e.get("pid") and pid_alive(int(e["pid"]))]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)  # each runs in its own session
        except ProcessLookupError:
            pass
    try:  # not children of this process: nothing to wait on but their /proc entries
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, interval=0.2,
                   what="the edges geoctl started to exit")
    except TimeoutError:
        pass
    for pid in pids:
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if edges:
        write_added_edges(workdir, {})
