"""The one shape of every process the harness and the local stack run: a Kafka node, a Consul
agent, a service of the stack.

    class Thing(ManagedProcess):
        def command(self) -> list[str]: ...          # what to run
        @property
        def log_path(self) -> Path: ...               # where its stdout and stderr go
        def wait_ready(self, timeout: float) -> None: ...   # optional: when it is usable

    thing.start()      # spawn (own process group, dies with the harness) and wait_ready
    thing.hang(); thing.resume()    # SIGSTOP / SIGCONT of its process group: a GC pause, a frozen VM
    thing.stop()       # SIGTERM, SIGKILL after a timeout; returns the exit code
    thing.kill()       # SIGKILL: a crash
    thing.start()      # again, same command line (same ports, same data)

``pid`` is the live process's pid and ``None`` once it has exited or been stopped, whatever the
subclass; ``returncode`` keeps the last exit code.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from harness.process import hang, kill, resume, spawn, terminate


class ManagedProcess:
    """Base of a restartable child process; subclasses say what to run and when it is ready."""

    _proc: subprocess.Popen[bytes] | None = None
    _returncode: int | None = None
    stop_timeout: float = 30.0

    # -- what subclasses provide ----------------------------------------------------------------

    @property
    def log_path(self) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def command(self) -> Sequence[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        """The child's environment (``None``: this process's)."""
        return None

    def working_directory(self) -> Path | None:
        return None

    def prepare(self) -> None:
        """Runs before every start (write configuration, format storage...)."""

    def wait_ready(self, timeout: float) -> None:
        """Block until the process is usable; raise with ``log_tail()`` otherwise."""

    def log_files(self) -> Sequence[Path]:
        """The files ``log_tail`` reads, in order."""
        return (self.log_path,)

    default_ready_timeout: float = 60.0

    # -- state ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the live process; ``None`` when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last run (``None`` while running or never started)."""
        if self._proc is not None:
            return self._proc.poll()
        return self._returncode

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float | None = None):  # type: ignore[no-untyped-def]
        """Spawn the process (a no-op while it runs) and, by default, wait until it is ready."""
        if not self.running:
            self.prepare()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._proc = spawn(self.command(), self.log_path, env=self.environment(),
                               cwd=self.working_directory())
        if wait:
            self.wait_ready(self.default_ready_timeout if timeout is None else timeout)
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``timeout``; the exit code (``None`` if
        it never ran). A hung (stopped) process is resumed first so that it can exit cleanly."""
        if self._proc is None:
            return self._returncode
        if self._proc.poll() is None:
            try:
                resume(self._proc.pid)
            except ProcessLookupError:
                pass
        return self._finish(terminate(self._proc, self.stop_timeout if timeout is None else timeout))

    def kill(self) -> int | None:
        """SIGKILL to the process group at once: a crash."""
        if self._proc is None:
            return self._returncode
        return self._finish(kill(self._proc))

    def hang(self) -> None:
        """SIGSTOP the process group: it keeps its sockets and wakes up with ``resume`` believing
        nothing happened."""
        hang(self.pid)

    def resume(self) -> None:
        resume(self.pid)

    def send(self, sig: int) -> None:
        """Send ``sig`` to the process group without waiting (e.g. SIGTERM, then watch a drain)."""
        if self.pid is None:
            raise RuntimeError("no process to signal")
        os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit; its exit code."""
        if self._proc is None:
            return self._returncode
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"still running after {timeout} s") from None
        return self.returncode

    def restart(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        self.stop()
        return self.start(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        out: list[str] = []
        for path in self.log_files():
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for subclasses' wait_ready -------------------------------------------------------------

    def dead_or(self, ok: bool) -> bool:
        """``ok``, or True when the process has exited (so that a wait ends at once)."""
        return ok or not self.running

    def check_alive(self, what: str = "process") -> None:
        if not self.running:
            raise RuntimeError(f"{what} exited with code {self.returncode}")

    def _finish(self, code: int | None) -> int | None:
        self._returncode = code
        self._proc = None
        return code
