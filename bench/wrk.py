"""wrk runs for the HTTP benchmarks: a Lua script that POSTs one fixed body, and one run's figures
(rate, completed requests, p50/p99, non-2xx answers, socket errors, wrk's own CPU)."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

_DONE = ('done = function(summary, latency, requests)\n'
         '  local e = summary.errors\n'
         '  io.write(string.format("P50 %d\\nP99 %d\\nNON2XX %d\\nREQUESTS %d\\n'
         'ERRORS %d %d %d %d\\n", latency:percentile(50), latency:percentile(99), e.status,'
         ' summary.requests, e.connect, e.read, e.write, e.timeout))\nend\n')


def lua_post(path: Path, route: str, body: bytes, ctype: str, close: bool = False) -> Path:
    """A wrk script POSTing ``body`` to ``route``; ``close`` adds ``Connection: close`` (wrk then
    opens a new connection, and with HTTPS does a new handshake, for every request)."""
    body_lua = body.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    headers = f'wrk.headers["Content-Type"] = "{ctype}"\n'
    if close:
        headers += 'wrk.headers["Connection"] = "close"\n'
    path.write_text(f'wrk.method = "POST"\nwrk.path = "{route}"\nwrk.body = "{body_lua}"\n{headers}{_DONE}')
    return path


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    """One wrk run (one thread): rate, completed requests, latency percentiles, errors, wrk's cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = int(re.search(r"^P50 (\d+)", out, re.M).group(1)) / 1000
    p99 = int(re.search(r"^P99 (\d+)", out, re.M).group(1)) / 1000
    non2xx = int(re.search(r"^NON2XX (\d+)", out, re.M).group(1))
    requests = int(re.search(r"^REQUESTS (\d+)", out, re.M).group(1))
    connect, read, write, timeout = (int(x) for x in re.search(r"^ERRORS (\d+) (\d+) (\d+) (\d+)", out, re.M).groups())
    errors = re.search(r"Socket errors: (.*)", out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / duration
    return {"rps": rps, "requests": requests, "wrk_cores": round(wrk_cores, 2), "p50_ms": p50, "p99_ms": p99,
            "non_2xx": non2xx, "socket_errors": errors.group(1) if errors else "",
            "errors": {"connect": connect, "read": read, "write": write, "timeout": timeout}}
