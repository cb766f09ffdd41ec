"""Server CPU per TLS handshake, by TLS library, on this machine.

    python -m bench.tls_handshake [--seconds 8] [--granian-path DIR]

``openssl s_time -new`` (TLS 1.3, one connection after the other, a full handshake each, no
request) against servers that only complete handshakes, all with the same ECDSA P-256
certificate (trustme, as ``bench.edge``'s HTTPS scenarios):

- ``openssl s_server`` — OpenSSL in C, the library CPython's ``ssl`` module is built on here;
- ``python-uvloop`` — an asyncio protocol on uvloop with an ``ssl.SSLContext`` (the edge's TLS);
- ``go-crypto-tls`` — Go's standard library (``bench/tlshs``, the Go reference's TLS);
- ``granian`` — granian's ASGI server (TLS by rustls), when importable (``--granian-path``: a
  directory to import it from, e.g. after ``pip install --target DIR granian``).

Per server: handshakes completed and its process tree's CPU time (user + system) per handshake,
which includes the kernel's work for the connection. The client's work is not counted. Last line:
one JSON object. A figure of the libraries, not of geo-edge: why the edge's new-TLS-connection
scenario is where it is (docs/edge.md).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench import gobuild
from bench.peers import make_tls
from bench.procfs import cpu_seconds, tree_pids
from harness.ports import free_port, port_open
from service_kit.wait import wait_until

_SERVE = """
import asyncio, ssl, sys, uvloop
class P(asyncio.Protocol):
    def data_received(self, data): pass
async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), ssl=ctx, backlog=1024)
    await asyncio.Event().wait()
uvloop.run(main())
"""

_GRANIAN_APP = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
"""


def measure(name: str, argv: Callable[[int], list[str]], seconds: int,
            env: dict[str, str] | None = None) -> dict[str, object]:
    """Start ``argv(port)`` on a free port, time ``s_time`` against it, stop it."""
    port = free_port()
    proc = subprocess.Popen(argv(port), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        try:
            wait_until(lambda: port_open("127.0.0.1", port), 20, what=f"{name} listening")
        except TimeoutError:
            return {"error": "did not listen"}
        time.sleep(1.0)  # not a condition: a server's worker processes (granian) start after it listens
        pids = tree_pids(proc.pid)
        before = cpu_seconds(pids)
        out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-tls1_3",
                              "-time", str(seconds)], capture_output=True, text=True).stdout
        used = cpu_seconds(pids) - before
    finally:
        proc.kill()
        proc.wait()
    done = next((int(line.split()[0]) for line in out.splitlines()
                 if "connections in" in line and "real seconds" in line), 0)
    if not done:
        return {"error": "no handshake completed"}
    result = {"handshakes": done, "handshakes_per_s": round(done / seconds), "server_cpu_us_per_handshake": round(used * 1e6 / done)}
    print(f"{name:16} {done:7} handshakes in {seconds} s   server CPU {result['server_cpu_us_per_handshake']} us/handshake", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.tls_handshake", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8, help="s_time run per server")
    ap.add_argument("--granian-path", default="", help="a directory to import granian from (else: the environment's)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tlshs-"))
    tls = make_tls(work)
    cert, key = str(tls.cert), str(tls.key)
    results: dict[str, object] = {"openssl": ssl.OPENSSL_VERSION}
    results["openssl-s_server"] = measure("openssl s_server", lambda port: [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert, "-key", key, "-tls1_3",
        "-quiet", "-naccept", "1000000000"], args.seconds)
    results["python-uvloop"] = measure("python-uvloop", lambda port: [
        sys.executable, "-c", _SERVE, str(port), cert, key], args.seconds)
    try:
        tlshs = gobuild.build(Path(__file__).with_name("tlshs"))
    except gobuild.GoMissing as exc:
        results["go-crypto-tls"] = {"error": str(exc)}
    else:
        results["go-crypto-tls"] = measure("go-crypto-tls", lambda port: [str(tlshs), str(port), cert, key],
                                           args.seconds)
    env = dict(os.environ)
    if args.granian_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.granian_path, env.get("PYTHONPATH", "")]))
    probe = subprocess.run([sys.executable, "-c", "import granian; print(granian.__version__)"], env=env,
                           capture_output=True, text=True)
    if probe.returncode == 0:
        (work / "granian_app.py").write_text(_GRANIAN_APP)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work), env.get("PYTHONPATH", "")]))
        results["granian"] = {"version": probe.stdout.strip(), **measure("granian (rustls)", lambda port: [
            sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--runtime-threads", "1", "--ssl-certificate", cert, "--ssl-keyfile", key,
            "granian_app:app"], args.seconds, env)}
    else:
        results["granian"] = {"error": "granian not importable (pip install --target DIR granian; --granian-path DIR)"}
        print("granian          not importable: skipped", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
