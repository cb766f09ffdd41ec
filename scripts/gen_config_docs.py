"""Writes the configuration tables of README.md from the services' own argument parsers, so the
docs cannot drift from ``--help``. ``--check`` exits 1 when README.md is out of date."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
SERVICES = [("geo-edge", "edge.config"), ("geo-mirror", "mirror.cli"),
            ("geo-central", "central.cli"), ("geo-router", "geostack.router_cli")]
BEGIN, END = "<!-- config-tables:begin -->", "<!-- config-tables:end -->"
ENV = re.compile(r"\s*\[env: ([A-Z0-9_]+)\]")


def table(prog: str, parser: argparse.ArgumentParser) -> str:
    rows = [f"#### `{prog}`", "", "| flag | environment | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        text = action.help or ""
        env = ENV.search(text)
        text = ENV.sub("", text).replace("|", "\\|").replace("\n", " ").strip()
        default = action.default
        default_s = "" if default in (None, "", [], argparse.SUPPRESS) else f"`{default}`"
        flag = ", ".join(f"`{o}`" for o in action.option_strings)
        rows.append(f"| {flag} | {f'`{env.group(1)}`' if env else ''} | {default_s} | {text} |")
    return "\n".join(rows) + "\n"


def render() -> str:
    import os

    saved = {k: v for k, v in os.environ.items() if k.startswith(("GEO_", "GEOINGEST_"))}
    for key in saved:
        del os.environ[key]
    try:
        parts = [table(prog, importlib.import_module(mod).build_parser()) for prog, mod in SERVICES]
    finally:
        os.environ.update(saved)
    return "\n".join(parts)


def main() -> int:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + render() + text[end:]
    if "--check" in sys.argv:
        if new != text:
            print("README.md configuration tables are stale: run python scripts/gen_config_docs.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
