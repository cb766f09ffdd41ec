"""Tables a person reads in an 80-column terminal, with colour only where it helps: on a TTY
(``--color auto``, unless ``NO_COLOR`` is set) or with ``--color always``."""

from __future__ import annotations

import os
import shutil
import textwrap
from dataclasses import dataclass
from typing import IO, Sequence

from geoctl.metrics_source import EdgeTraffic
from geoctl.consul_source import ServiceInstance
from geoctl.topology import Topology

COLOURS = {"green": "32", "yellow": "33", "red": "31", "bold": "1", "dim": "2"}
STATE_COLOUR = {"ok": "green", "passing": "green", "degraded": "yellow", "warning": "yellow",
                "draining": "yellow", "down": "red", "critical": "red"}


def use_colour(mode: str, stream: IO[str]) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def terminal_width() -> int:
    """``COLUMNS`` or the terminal's width, 80 when neither is known."""
    return shutil.get_terminal_size((80, 24)).columns


@dataclass(frozen=True)
class Cell:
    text: str
    colour: str | None = None


def paint(text: str, colour: str | None, on: bool) -> str:
    return f"\x1b[{COLOURS[colour]}m{text}\x1b[0m" if on and colour else text


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], width: int = 80,
          colour: bool = False, flexible: int = 0) -> list[str]:
    """Left-aligned columns two spaces apart; when wider than ``width``, column ``flexible`` is
    cut (with ``…``) until the lines fit."""
    cells = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i].text) for r in cells]) for i, h in enumerate(headers)]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    if excess > 0:
        widths[flexible] = max(len(headers[flexible]), widths[flexible] - excess, 3)

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    def line(values: Sequence[Cell], bold: bool = False) -> str:
        parts = []
        for i, (cell, w) in enumerate(zip(values, widths)):
            text = fit(cell.text, w)
            pad = "" if i == len(widths) - 1 else " " * (w - len(text))
            parts.append(paint(text, "bold" if bold else cell.colour, colour) + pad)
        return "  ".join(parts).rstrip()

    return [line([Cell(h) for h in headers], bold=True)] + [line(r) for r in cells]


def number(value: float | None) -> str:
    """Short figures: 950, 12.3k, 4.1M; ``-`` when unknown."""
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.0f}k"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 100 else f"{value / 60:.0f}m"


def state_cell(state: str) -> Cell:
    return Cell(state, STATE_COLOUR.get(state))


def status_lines(topology: Topology, width: int = 80, colour: bool = False) -> list[str]:
    """``geoctl status``: one row per region, then what is wrong, in words."""
    rows = []
    for r in topology.regions:
        c = r.edge_counts
        edges = f"({r.role})" if r.role != "edge" else f"{c['passing']}/{c['warning']}/{c['critical']}/{c['draining']}"
        k = r.kafka
        edges_colour = None if r.role != "edge" else (
            "red" if c["passing"] == 0 else "yellow" if c["warning"] or c["critical"] else None)
        m = r.mirror
        rows.append([
            Cell(r.name + ("" if r.in_regions_file else "*"), "bold"), state_cell(r.state),
            Cell(edges, edges_colour),
            Cell(str(k.brokers) if k and k.reachable else "-", None if k and k.reachable else "red"),
            Cell(str(k.under_replicated) if k and k.reachable else "-",
                 "yellow" if k and k.under_replicated else None),
            Cell(str(k.offline) if k and k.reachable else "-", "red" if k and k.offline else None),
            Cell(number(m.records_behind) if m and m.up else "-"),
            Cell(seconds(m.latency_s) if m else "-"),
            Cell(seconds(r.freshness_s)),
        ])
    out = table(["REGION", "STATE", "EDGES", "BROKERS", "URP", "OFFLINE", "BEHIND", "LATENCY", "FRESH"],
                rows, width, colour)
    out.append(paint("EDGES passing/warning/critical/draining, URP under-replicated partitions,", "dim", colour))
    out.append(paint("BEHIND mirror records behind, LATENCY replication, FRESH central data age", "dim", colour))
    if any(not r.in_regions_file for r in topology.regions):
        out.append(paint("* registered in Consul, not in the regions file", "dim", colour))
    central = topology.central
    if central is not None:
        loader = central.status.get("loader") or {}
        word = "ok" if central.healthy else "down"
        out.append(f"central: geo-central {paint(word, STATE_COLOUR[word], colour)}, "
                   f"loader backlog {number(central.backlog)} records"
                   + (f", loader {'running' if loader.get('running') else 'stopped'}" if loader else ""))
    out.append(f"mirror: {topology.mirror.workers} worker(s)"
               + ("" if topology.mirror.central_up is None
                  else f", central Kafka {'up' if topology.mirror.central_up else 'down'}"))
    problems = [f"{r.name}: {p}" for r in topology.regions for p in r.problems] + topology.problems
    if problems:
        out.append(paint("problems:", "red", colour))
        for p in problems:
            out.extend(textwrap.wrap(p, width, initial_indent="  ", subsequent_indent="    "))
    verdict = "healthy" if topology.healthy else "UNHEALTHY"
    out.append(paint(verdict, "green" if topology.healthy else "red", colour))
    return out


def regions_lines(topology: Topology, width: int = 80, colour: bool = False) -> list[str]:
    """``geoctl regions``: the regions file joined with Consul and the mirror."""
    rows = []
    for r in topology.regions:
        source = "+".join(s for s, on in (("file", r.in_regions_file), ("consul", r.in_consul)) if on)
        passing = sum(i.state == "passing" for i in r.kafka_instances)
        k = r.kafka
        kafka = ("up" if k and k.reachable else "down") + f" {passing}/{len(r.kafka_instances)}"
        m = r.mirror
        mirror = "-" if r.role != "edge" else ("none" if m is None else
                                               f"{number(m.records_behind)} behind" if m.up else "down")
        rows.append([Cell(r.name, "bold"), Cell(r.role), Cell(r.datacenter), Cell(source or "-"),
                     Cell(kafka, None if k and k.reachable else "red"),
                     Cell(mirror, "red" if mirror in ("down", "none") else None), state_cell(r.state),
                     Cell(k.bootstrap if k else "-")])
    lines = table(["REGION", "ROLE", "DC", "SOURCE", "KAFKA", "MIRROR", "STATE", "BOOTSTRAP"], rows, width,
                  colour, flexible=7)
    lines.append(paint("KAFKA: admin API answers, passing/registered kafka instances in Consul", "dim", colour))
    return lines


def edges_lines(edges: Sequence[ServiceInstance], traffic: dict[str, EdgeTraffic], width: int = 80,
                colour: bool = False) -> list[str]:
    """``geoctl edges REGION``: one row per edge."""
    rows = []
    for e in edges:
        t = traffic.get(e.id) or EdgeTraffic()
        rows.append([Cell(e.id, "bold"), Cell(f"{e.address}:{e.port}"), Cell(e.meta.get("version", "-")),
                     state_cell(e.state),
                     Cell("-" if t.requests_per_s is None else f"{t.requests_per_s:.1f}"),
                     Cell("-" if t.errors_503_per_s is None else f"{t.errors_503_per_s:.1f}",
                          "red" if t.errors_503_per_s else None)])
    return table(["NODE", "ADDRESS", "VERSION", "HEALTH", "REQ/S", "503/S"], rows, width, colour, flexible=1)


