"""The floor under any Python edge on this machine: a bare asyncio protocol (httptools parser, one
fixed answer, nothing else) in two processes on SO_REUSEPORT sockets, measured with the same wrk
script as ``bench.edge``: keep-alive, ``Connection: close``, and both over TLS (a throw-away
certificate, as ``bench.edge`` makes it).

    python -m bench.floor [--duration 8] [--loop uvloop|asyncio]

It prints, per scenario, the rate and the server's CPU time per request (user + system of its
processes over the requests wrk completed). Not the edge: no Kafka, no validation, no ASGI. What
it tells is where the runtime itself stops — e.g. whether a per-request or per-connection cost
measured in ``bench.edge`` is the edge's own or the interpreter's, event loop's and TLS library's.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httptools

ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'
ANSWER_CLOSE = (b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n'
                b'connection: close\r\n\r\n{"status":"ok"}')


class FixedAnswer(asyncio.Protocol):
    """Every request gets the same 200; ``Connection: close`` (or HTTP/1.0) closes after it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.parser.should_keep_alive():
            self.transport.write(ANSWER)  # type: ignore[attr-defined]
        else:
            self.transport.write(ANSWER_CLOSE)  # type: ignore[attr-defined]
            self.transport.close()


def serve(port: int, loop_kind: str, cert: str | None, key: str | None) -> None:
    if loop_kind == "uvloop":
        import uvloop
        uvloop.install()

    async def main() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(4096)
        context = None
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        await asyncio.get_running_loop().create_server(FixedAnswer, sock=sock, ssl=context)
        await asyncio.Event().wait()  # until killed

    asyncio.run(main())


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from bench import peers
    from bench.edge import EVENT
    from bench.procfs import cpu_seconds, tree_pids
    from bench.wrk import lua_post, run_wrk
    from harness.ports import free_port
    from service_kit.wait import wait_until

    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    tls = peers.make_tls(work / "tls")
    scripts = {"keepalive": lua_post(work / "single.lua", "/post", EVENT, "application/json"),
               "close": lua_post(work / "close.lua", "/post", EVENT, "application/json", close=True)}
    result: dict[str, dict[str, float]] = {}
    for use_tls in (False, True):
        port = free_port()
        procs = [subprocess.Popen([sys.executable, "-m", "bench.floor", "--serve", str(port), "--loop", args.loop,
                                   *([str(tls.cert), str(tls.key)] if use_tls else [])])
                 for _ in range(args.workers)]

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        try:
            wait_until(listening, 30, what="the floor server listening")
            base = f"{'https' if use_tls else 'http'}://127.0.0.1:{port}"
            for scenario, connections in (("keepalive", args.connections), ("close", args.close_connections)):
                run_wrk(base, scripts[scenario], 2, connections)  # warm-up, not counted
                pids = [p for proc in procs for p in tree_pids(proc.pid)]
                before = cpu_seconds(pids)
                r = run_wrk(base, scripts[scenario], args.duration, connections)
                cpu = cpu_seconds(pids) - before
                name = f"{'tls_' if use_tls else ''}{scenario}"
                result[name] = {"rps": round(r["rps"]), "cpu_us_per_request": round(cpu / max(1, r["requests"]) * 1e6, 1),
                                "non_2xx": r["non_2xx"], "connections": connections}
                print(f"floor {name:14} {result[name]['rps']:>7} req/s  {result[name]['cpu_us_per_request']:6.1f} us "
                      f"CPU/request  non-2xx {r['non_2xx']}  socket errors {r['errors']}", flush=True)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8, help="seconds per counted wrk run")
    ap.add_argument("--connections", type=int, default=256, help="keep-alive connections (bench.edge's)")
    ap.add_argument("--close-connections", type=int, default=64, help="Connection: close connections")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("tls", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        cert, key = (args.tls + [None, None])[:2]
        serve(args.serve, args.loop, cert, key)
        return 0
    print(json.dumps({"loop": args.loop, "workers": args.workers, "scenarios": measure(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
