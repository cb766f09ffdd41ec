"""A named service process of the local stack that can be started, stopped (SIGTERM), killed
(SIGKILL), hung (SIGSTOP) and started again with the same command line, and whose health URL can
be awaited. The lifecycle is ``harness.managed.ManagedProcess``'s, like Kafka's and Consul's."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx

from harness.managed import ManagedProcess
from service_kit.wait import wait_until


@dataclass(eq=False)
class ServiceProcess(ManagedProcess):
    """One process of the stack; logs go to ``<workdir>/<name>.log``. ``start()`` does not wait;
    ``wait_healthy()`` waits for ``health_url`` to answer 200."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    #: how an https ``health_url`` is verified (httpx's ``verify``: an SSLContext trusting the CA)
    health_verify: Any = True

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> Sequence[str]:
        return self.argv

    def environment(self) -> Mapping[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    def start(self, wait: bool = False, timeout: float | None = None) -> "ServiceProcess":
        return super().start(wait=wait, timeout=timeout)

    def wait_ready(self, timeout: float) -> None:
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until ``health_url`` answers 200 (raises with the log tail if the process died)."""
        if self.health_url is None:
            return

        def ok() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                return httpx.get(self.health_url, timeout=1.0, verify=self.health_verify).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ok, timeout, interval=0.2, what=f"{self.name} healthy at {self.health_url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        return super().log_tail(lines)


def python_entry(module: str) -> list[str]:
    """argv running ``python -m module`` with this interpreter (console scripts need not be on PATH)."""
    return [sys.executable, "-m", module]
