"""Single-node Apache Kafka clusters in KRaft mode, from jars that Maven fetches into a cache.

    with KafkaCluster(workdir / "eu") as eu:       # formats, starts, waits for a produce
        producer = AIOKafkaProducer(bootstrap_servers=eu.bootstrap)
        eu.stop(); eu.start()                      # same ports, same data: a broker restart

``start_clusters(n, workdir)`` starts several at once. Jars: ``harness/pom.xml`` resolved by
``mvn dependency:copy-dependencies`` into ``$GEOINGEST_CACHE/kafka-<version>/libs``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.ports import free_port, port_open
from harness.process import kill, spawn, terminate
from service_kit.wait import wait_until, wait_until_async

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("pom.xml")
READY_TOPIC = "__harness_ready"


def cache_dir() -> Path:
    """Where fetched artefacts live, outside git (``GEOINGEST_CACHE``, default ``~/.cache/geoingest``)."""
    return Path(os.environ.get("GEOINGEST_CACHE", Path.home() / ".cache" / "geoingest"))


def kafka_libs() -> Path:
    """Directory of Kafka's jars; fetches them with Maven the first time (safe across processes)."""
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(libs, ignore_errors=True)
            subprocess.run(
                ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 f"-DoutputDirectory={libs}", f"-Dkafka.version={KAFKA_VERSION}"],
                check=True,
            )
            done.touch()
    return libs


JVM_OPTS_ENV = "GEO_KAFKA_JVM_OPTS"
# C1 only and the serial collector: on a small machine running several brokers beside the services,
# C2 compilation and G1 background threads cost more CPU than their faster code saves.
DEFAULT_JVM_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def java_command(main_class: str, *args: str, heap: str = "384m",
                 log_config: Path | None = None) -> list[str]:
    """The java argv that runs ``main_class`` with Kafka's jars on the classpath; JVM options from
    ``$GEO_KAFKA_JVM_OPTS`` (default: C1 only, serial collector)."""
    opts = os.environ.get(JVM_OPTS_ENV, DEFAULT_JVM_OPTS).split()
    argv = ["java", f"-Xms{heap}", f"-Xmx{heap}", *opts, "-Djava.awt.headless=true", "-cp", f"{kafka_libs()}/*"]
    if log_config is not None:
        argv.append(f"-Dlog4j2.configurationFile={log_config}")
    return [*argv, main_class, *args]


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.org.name = org.apache.kafka
logger.org.level = {level}
"""


@dataclass
class KafkaCluster:
    """One Kafka process acting as broker and KRaft controller on loopback ports.

    ``workdir`` keeps the data (``data/``), the config and the logs (``kafka.log``, ``stdout.log``),
    so a stopped cluster starts again with its topics and offsets. ``wan_port`` adds a second
    listener advertised as ``wan_advertised`` (e.g. a ``TcpProxy`` in front of it), so that remote
    clients such as the mirror reach the cluster only through that address.
    """

    workdir: Path
    port: int = 0
    controller_port: int = 0
    partitions: int = 3
    heap: str = "384m"
    log_level: str = "WARN"
    wan_port: int = 0
    wan_advertised: str = ""
    cluster_id: str = field(default_factory=lambda: _cluster_id())
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self, wait: bool = True, timeout: float = 90.0) -> "KafkaCluster":
        """Format storage on first use, start the process and (by default) wait for a produce."""
        if self.running:
            return self
        config = self._write_config()
        if not (self.workdir / "data" / "meta.properties").exists():
            subprocess.run(
                java_command("kafka.tools.StorageTool", "format", "--config", str(config),
                             f"--cluster-id={self.cluster_id}", "--ignore-formatted",
                             heap="128m", log_config=self.workdir / "log4j2.properties"),
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        self._proc = spawn(
            java_command("kafka.Kafka", str(config), heap=self.heap,
                         log_config=self.workdir / "log4j2.properties"),
            self.workdir / "stdout.log",
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the broker acknowledges a produce (raises with the log tail otherwise)."""
        try:
            wait_until(lambda: self._dead_or(port_open("127.0.0.1", self.port)), timeout,
                       what=f"kafka {self.bootstrap} to listen")
            self._check_alive()
            # wait_for also bounds a single produce attempt that hangs past the deadline
            asyncio.run(asyncio.wait_for(_produce_once(self.bootstrap, timeout), timeout))
        except Exception as exc:
            raise RuntimeError(f"kafka at {self.bootstrap} not ready: {exc}\n{self.log_tail()}") from exc

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout``."""
        if self._proc is not None:
            terminate(self._proc, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL: a crashed broker."""
        if self._proc is not None:
            kill(self._proc)
            self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("kafka.log", "stdout.log"):
            path = self.workdir / name
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dead_or(self, ok: bool) -> bool:
        return ok or not self.running

    def _check_alive(self) -> None:
        if not self.running:
            raise RuntimeError("kafka process exited")

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.workdir / "kafka.log", level=self.log_level))
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised = f"PLAINTEXT://127.0.0.1:{self.port}"
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if self.wan_port:
            listeners += f",WAN://127.0.0.1:{self.wan_port}"
            advertised += f",WAN://{self.wan_advertised or f'127.0.0.1:{self.wan_port}'}"
            protocols += ",WAN:PLAINTEXT"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(64 * 1024 * 1024),
            # a starved 2-core machine must not get the single broker fenced by its own controller
            "broker.session.timeout.ms": "30000",
            "broker.heartbeat.interval.ms": "2000",
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path


def start_clusters(count: int, workdir: Path, names: Sequence[str] | None = None,
                   ports: Sequence[tuple[int, int]] | None = None, **kwargs: object) -> list[KafkaCluster]:
    """Start ``count`` independent clusters in parallel and wait until each accepts a produce.

    ``ports``: (client, controller) port pairs, one per cluster; free ports when omitted.
    """
    names = list(names or [f"kafka{i}" for i in range(count)])
    pairs = list(ports or [(0, 0)] * len(names))
    kafka_libs()
    clusters = [KafkaCluster(Path(workdir) / name, port=p, controller_port=c, **kwargs)  # type: ignore[arg-type]
                for name, (p, c) in zip(names, pairs)]
    with ExitStack() as undo:
        for cluster in clusters:
            cluster.start(wait=False)
            undo.callback(cluster.stop)
        for cluster in clusters:
            cluster.wait_ready()
        undo.pop_all()
    return clusters


async def _produce_once(bootstrap: str, timeout: float) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    async def acknowledged() -> bool:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await producer.start()
            await producer.send_and_wait(READY_TOPIC, b"ready")
            return True
        except KafkaError:
            return False
        finally:
            await producer.stop()

    await wait_until_async(acknowledged, timeout, interval=0.2,
                           what=f"kafka {bootstrap} to acknowledge a produce")


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
