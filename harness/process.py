"""Child processes that never outlive the harness: own process group, parent-death signal, reaping."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from service_kit.wait import wait_until  # noqa: F401 - re-exported: the shared helper lives in service_kit.wait

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_live: set[subprocess.Popen[bytes]] = set()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the harness process dies (Linux), and
    unblock the signals a parent waiting in ``sigwait`` may have blocked."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def name_this_thread(name: str) -> None:
    """Give the calling thread an OS name (``/proc/<pid>/task/<tid>/comm``, 15 bytes), so that
    its CPU time can be told apart from the rest of the process (benchmarks)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15])
    except OSError:
        pass


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    _live.add(proc)
    return proc


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the process group, SIGKILL it after ``timeout`` seconds; return the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    _live.discard(proc)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the process group at once (a crash) and reap it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
    proc.wait()
    _live.discard(proc)
    return proc.returncode


def hang(pid: int | None) -> None:
    """SIGSTOP the process group led by ``pid``: the process hangs (a GC pause, a frozen VM)
    and wakes up with ``resume`` believing nothing happened."""
    _signal_pid_group(pid, signal.SIGSTOP)


def resume(pid: int | None) -> None:
    """SIGCONT the process group that ``hang`` stopped."""
    _signal_pid_group(pid, signal.SIGCONT)


def _signal_pid_group(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        raise RuntimeError("no process to signal")
    os.killpg(pid, sig)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        kill(proc)
