"""Build a Go module of ``bench/`` once and cache the binary outside git.

    python -m bench.gobuild bench/goref [--jobs 1]     # prints the binary's path

The binary goes to ``$GEOINGEST_CACHE/bin/<name>-<hash>``, the hash taken over the module's
``go.mod``, ``go.sum`` and ``*.go`` files: a changed source builds anew, an unchanged one is reused.
Modules resolve through the Go module proxy (``GOFLAGS=-mod=mod``, the default ``GOPROXY``). Go is
looked up on ``PATH``, then in ``/usr/local/go/bin``. Safe to run concurrently (a lock per binary).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.kafka import cache_dir


class GoMissing(RuntimeError):
    """No Go toolchain to build with."""


def go_binary() -> str:
    """Path of the ``go`` command (PATH, then /usr/local/go/bin), or :class:`GoMissing`."""
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if not found:
        raise GoMissing("no Go toolchain: install Go (https://go.dev/dl) and put `go` on PATH "
                        "(or /usr/local/go/bin) to build the benchmark peers")
    return found


def source_hash(module: Path) -> str:
    """Hash of go.mod, go.sum and the *.go files of ``module`` (names and contents)."""
    h = hashlib.sha256()
    files = [module / "go.mod", module / "go.sum", *sorted(module.glob("*.go"))]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cached_path(module: Path, name: str | None = None) -> Path:
    """Where the binary of ``module`` at its current sources lives (built or not)."""
    return cache_dir() / "bin" / f"{name or module.name}-{source_hash(module)}"


def build(module: Path, name: str | None = None, jobs: int | None = None) -> Path:
    """The cached binary of ``module``, built first if missing (``jobs``: ``go build -p``)."""
    module = module.resolve()
    out = cached_path(module, name)
    if out.is_file():
        return out
    go = go_binary()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        tmp = out.with_suffix(".tmp")
        argv = [go, "build", "-trimpath", "-o", str(tmp)] + (["-p", str(jobs)] if jobs else []) + ["."]
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        proc = subprocess.run(argv, cwd=module, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"go build of {module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        tmp.rename(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", type=Path, help="directory of the Go module (go.mod)")
    ap.add_argument("--name", help="binary name (default: the directory's name)")
    ap.add_argument("--jobs", type=int, help="go build -p: packages built in parallel")
    args = ap.parse_args()
    try:
        print(build(args.module, args.name, args.jobs))
    except (GoMissing, RuntimeError) as exc:
        print(f"gobuild: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
