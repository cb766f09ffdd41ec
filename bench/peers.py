"""The systems ``bench/edge.py`` measures side by side, each started on demand against one Kafka:

* ``geo-edge`` — this project's edge, with its defaults (a worker per core, acks=all, idempotent, lz4);
* ``go`` — ``bench/goref``: the original design in Go (net/http, sarama SyncProducer, acks=1, snappy,
  one Kafka round trip per request), serving TLS through Go's standard library;
* ``benthos`` — ``bench/benthos``: Benthos v4.27.0, ``http_server`` → ``kafka_franz``
  (``bench/benthos/config.yaml``), replying once Kafka acknowledged the event.

Each writes to its own topic so that its Kafka record count proves its answers. The Go binaries are
built once and cached (``bench/gobuild.py``). ``make_tls`` issues a throw-away CA and a certificate
for 127.0.0.1 (trustme) that all three serve HTTPS with.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Callable

import httpx
import trustme

from bench.gobuild import build
from bench.procfs import tree_pids
from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env
from harness.ports import free_port
from harness.process import spawn, terminate
from service_kit.wait import wait_until

HERE = Path(__file__).parent
BENTHOS_CONFIG = HERE / "benthos" / "config.yaml"
PEERS = ("go", "benthos")


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    cert: Path  # key + certificate chain PEM (what every server loads)
    key: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(directory: Path) -> TlsFiles:
    """A new CA and a server certificate for 127.0.0.1/localhost, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


@dataclasses.dataclass
class Server:
    """One running system: its process, its base URL and how it stops."""

    name: str
    proc: subprocess.Popen[bytes]
    base: str
    tls: TlsFiles | None
    metrics_url: str = ""

    def pids(self) -> list[int]:
        """The server's process tree (workers included)."""
        return tree_pids(self.proc.pid)

    def verify(self) -> ssl.SSLContext | bool:
        return self.tls.client_context() if self.tls else True

    def tls_version(self) -> str:
        """The protocol version a default client negotiates with this server ("" over plain HTTP)."""
        if not self.tls:
            return ""
        host, port = self.base.split("//", 1)[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with self.tls.client_context().wrap_socket(raw, server_hostname=host) as conn:
                return conn.version() or ""

    def stop(self) -> int:
        return terminate(self.proc, 30)


def _wait_answers(server: Server, body: bytes, log: Path, timeout: float = 90) -> None:
    """Until ``POST /post`` answers 200 (the system is up *and* reaches Kafka)."""

    def answers() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}); log {log}:\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            return httpx.post(server.base + "/post", content=body, timeout=5,
                              headers={"Content-Type": "application/json"},
                              verify=server.verify()).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, interval=0.25, what=f"{server.name} to answer POST /post with 200")


def _go_env() -> dict[str, str]:
    """The environment of a Go peer: GOMAXPROCS left to its default (every core, like the edge's workers)."""
    env = dict(os.environ)
    env.pop("GOMAXPROCS", None)
    return env


@dataclasses.dataclass
class System:
    """A system under test: its name, its topic and how to start it (plain HTTP or HTTPS)."""

    name: str
    topic: str
    describe: str
    launch: Callable[[Path, str, TlsFiles | None, int], tuple[subprocess.Popen[bytes], str]]

    def start(self, work: Path, tls: TlsFiles | None, body: bytes) -> Server:
        port = free_port()
        log = work / f"{self.name}{'-tls' if tls else ''}.log"
        proc, metrics_url = self.launch(log, f"127.0.0.1:{port}", tls, port)
        server = Server(self.name, proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", tls, metrics_url)
        try:
            _wait_answers(server, body, log)
        except BaseException:
            server.stop()
            raise
        return server


def geo_edge(bootstrap: str, topic: str, **config: object) -> System:
    """geo-edge with its defaults plus ``config`` (EdgeConfig fields)."""

    def launch(log: Path, listen: str, tls: TlsFiles | None, port: int) -> tuple[subprocess.Popen[bytes], str]:
        cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                         kafka=bootstrap, topic=topic, tls_cert=str(tls.cert) if tls else "",
                         tls_key=str(tls.key) if tls else "", **config)  # type: ignore[arg-type]
        return spawn(edge_argv(cfg), log, env=edge_env()), f"http://127.0.0.1:{cfg.metrics_port}/metrics"

    return System("geo-edge", topic, "geo-edge (Starlette/uvicorn, aiokafka; acks=all, idempotent, lz4)", launch)


def go_reference(bootstrap: str, topic: str, jobs: int | None = None) -> System:
    """bench/goref, built (or taken from the cache) now."""
    binary = build(HERE / "goref", jobs=jobs)

    def launch(log: Path, listen: str, tls: TlsFiles | None, port: int) -> tuple[subprocess.Popen[bytes], str]:
        argv = [str(binary), "--listen", listen, "--brokers", bootstrap, "--topic", topic]
        if tls:
            argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        return spawn(argv, log, env=_go_env()), f"{'https' if tls else 'http'}://{listen}/metrics"

    return System("go", topic, "Go net/http + sarama SyncProducer (acks=1, snappy), one round trip per request",
                  launch)


def benthos(bootstrap: str, topic: str, max_in_flight: int, jobs: int | None = None) -> System:
    """bench/benthos with bench/benthos/config.yaml, built (or taken from the cache) now."""
    binary = build(HERE / "benthos", jobs=jobs)

    def launch(log: Path, listen: str, tls: TlsFiles | None, port: int) -> tuple[subprocess.Popen[bytes], str]:
        env = {**_go_env(), "BENTHOS_ADDRESS": listen, "BENTHOS_BROKERS": bootstrap, "BENTHOS_TOPIC": topic,
               "BENTHOS_ADMIN_ADDRESS": f"127.0.0.1:{free_port()}", "BENTHOS_MAX_IN_FLIGHT": str(max_in_flight),
               "BENTHOS_CERT_FILE": str(tls.cert) if tls else "", "BENTHOS_KEY_FILE": str(tls.key) if tls else ""}
        return spawn([str(binary), "-c", str(BENTHOS_CONFIG)], log, env=env), f"http://{env['BENTHOS_ADMIN_ADDRESS']}/stats"

    return System("benthos", topic, "Benthos v4.27.0 http_server -> kafka_franz (defaults: idempotent, acks=all)",
                  launch)
