"""What /proc says about a set of processes: their tree, CPU seconds and resident memory.
Shared by the benchmarks."""

from __future__ import annotations

import collections
import os
from pathlib import Path


def tree_pids(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children[ppid].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_ticks(stat: Path) -> int:
    """User + system clock ticks from a ``/proc/.../stat`` file (0 when it vanished)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (vanished processes count 0)."""
    return sum(_cpu_ticks(Path(f"/proc/{pid}/stat")) for pid in pids) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, comm: str) -> float:
    """User + system CPU seconds so far of the threads of ``pid`` whose OS name is ``comm``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == comm:
                total += _cpu_ticks(task / "stat")
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pids: list[int]) -> float:
    """Resident memory of ``pids`` summed, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024
