"""A named service process of the local stack that can be started, stopped (SIGTERM), killed
(SIGKILL) and started again with the same command line, and whose health URL can be awaited."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import httpx

from harness.process import kill, spawn, terminate
from service_kit.wait import wait_until


@dataclass
class ServiceProcess:
    """One process of the stack; logs go to ``<workdir>/<name>.log``."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "ServiceProcess":
        if not self.running:
            env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
            self._proc = spawn(self.argv, self.log_path, env=env)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until ``health_url`` answers 200 (raises with the log tail if the process died)."""
        if self.health_url is None:
            return

        def ok() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                return httpx.get(self.health_url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ok, timeout, interval=0.2, what=f"{self.name} healthy at {self.health_url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self._proc is None:
            return None
        code = terminate(self._proc, timeout)
        return code

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self._proc is not None:
            kill(self._proc)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def python_entry(module: str) -> list[str]:
    """argv running ``python -m module`` with this interpreter (console scripts need not be on PATH)."""
    return [sys.executable, "-m", module]
