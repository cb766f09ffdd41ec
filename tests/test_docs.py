"""The docs describe what exists: README's configuration tables are generated from the parsers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_configuration_tables_are_current() -> None:
    done = subprocess.run([sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_names_the_two_commands_and_every_console_script() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make up" in readme and "make test" in readme
    for script in ("geo-edge", "geo-mirror", "geo-central", "geo-router"):
        assert f"`{script}`" in readme, script
