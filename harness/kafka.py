"""Apache Kafka clusters in KRaft mode (one node, or N nodes that are each broker and controller),
from jars that Maven fetches into a cache.

    with KafkaCluster(workdir / "eu") as eu:       # formats, starts, waits for a produce
        producer = AIOKafkaProducer(bootstrap_servers=eu.bootstrap)
        eu.stop(); eu.start()                      # same ports, same data: a broker restart

    eu = KafkaCluster(workdir / "eu", brokers=3).start()   # replication factor 3, min ISR 2
    eu.nodes[1].kill(); eu.nodes[1].start(); eu.wait_in_sync()

    secure = KafkaCluster(workdir / "s", security=BrokerSecurity.generate(workdir / "tls",
                          users={"edge": "secret"}))        # a SASL_SSL (SCRAM) client listener

``start_clusters(n, workdir)`` starts several at once. Jars: ``harness/pom.xml`` resolved by
``mvn dependency:copy-dependencies`` into ``$GEOINGEST_CACHE/kafka-<version>/libs``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.ports import free_port, port_open
from harness.kafka_security import BrokerSecurity
from harness.managed import ManagedProcess
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


#: what Kafka's own scripts give a JVM (``bin/kafka-run-class.sh``'s KAFKA_JVM_PERFORMANCE_OPTS):
#: how Kafka's users run its tools, MirrorMaker 2 included
KAFKA_SCRIPT_JVM_OPTS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                         "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                         "-XX:MaxInlineLevel=15")


def java_command(main_class: str, *args: str, heap: str | tuple[str, str] = "384m",
                 log_config: Path | None = None, jvm_args: Sequence[str] = (),
                 jvm_opts: Sequence[str] | None = None) -> list[str]:
    """The java argv that runs ``main_class`` with Kafka's jars on the classpath. ``heap`` is one
    size (-Xms = -Xmx) or (initial, maximum); JVM options ``jvm_opts``, else ``$GEO_KAFKA_JVM_OPTS``
    (default: C1 only, serial collector: brokers on a crowded 2-core box)."""
    opts = list(jvm_opts) if jvm_opts is not None else os.environ.get(JVM_OPTS_ENV, DEFAULT_JVM_OPTS).split()
    initial, maximum = (heap, heap) if isinstance(heap, str) else heap
    argv = ["java", f"-Xms{initial}", f"-Xmx{maximum}", *opts, "-Djava.awt.headless=true",
            "-cp", f"{kafka_libs()}/*"]
    if log_config is not None:
        argv.append(f"-Dlog4j2.configurationFile={log_config}")
    return [*argv, *jvm_args, main_class, *args]


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



@dataclass(eq=False)
class KafkaNode(ManagedProcess):
    """One Kafka process of a cluster, broker and KRaft controller at once.

    ``port`` is its client listener; ``internal_port`` the plaintext listener between brokers
    (and for the harness's own readiness checks) when the client listener is secured;
    ``wan_port`` a second client listener advertised as ``wan_advertised`` (a ``TcpProxy``).
    """

    cluster: "KafkaCluster" = field(repr=False)
    node_id: int
    workdir: Path
    port: int = 0
    controller_port: int = 0
    internal_port: int = 0
    wan_port: int = 0
    wan_advertised: str = ""
    #: Prometheus JMX exporter agent on this port (0: none), see harness.jmx_exporter
    metrics_port: int = 0

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.cluster.security is not None:
            self.internal_port = self.internal_port or free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def internal_bootstrap(self) -> str:
        return f"127.0.0.1:{self.internal_port or self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "stdout.log"

    def log_files(self) -> list[Path]:
        return [self.workdir / "kafka.log", self.log_path]

    def prepare(self) -> None:
        config = self._write_config()
        if not (self.workdir / "data" / "meta.properties").exists():
            scram = self.cluster.security.format_arguments() if self.cluster.security else []
            subprocess.run(
                java_command("kafka.tools.StorageTool", "format", "--config", str(config),
                             f"--cluster-id={self.cluster.cluster_id}", "--ignore-formatted", *scram,
                             heap="128m", log_config=self.workdir / "log4j2.properties"),
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else ""

    def command(self) -> list[str]:
        extra = self.cluster.jvm_args_for(self)
        if self.metrics_port:
            from harness.jmx_exporter import agent_jvm_args

            extra = [*extra, *agent_jvm_args(self.metrics_port)]
        return java_command("kafka.Kafka", str(self.workdir / "server.properties"),
                            heap=self.cluster.heap, log_config=self.workdir / "log4j2.properties",
                            jvm_args=extra)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the node listens and the cluster lists it as a live broker."""
        try:
            wait_until(lambda: self.dead_or(port_open("127.0.0.1", self.port)
                                            and port_open("127.0.0.1", self.internal_port or self.port)),
                       timeout, what=f"kafka node {self.node_id} to listen")
            self.check_alive(f"kafka node {self.node_id}")
            asyncio.run(asyncio.wait_for(_wait_registered(self), timeout))
        except Exception as exc:
            raise RuntimeError(f"kafka node {self.node_id} at {self.bootstrap} not ready: {exc}\n"
                               f"{self.log_tail()}") from exc

    def _write_config(self) -> Path:
        c = self.cluster
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.workdir / "kafka.log", level=c.log_level))
        secured = c.security is not None
        client = "CLIENT" if secured else "PLAINTEXT"
        listeners = [f"{client}://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        advertised = [f"{client}://127.0.0.1:{self.port}"]
        protocols = [f"{client}:{c.security.protocol if c.security else 'PLAINTEXT'}", "CONTROLLER:PLAINTEXT"]
        if secured:
            listeners.append(f"INTERNAL://127.0.0.1:{self.internal_port}")
            advertised.append(f"INTERNAL://127.0.0.1:{self.internal_port}")
            protocols.append("INTERNAL:PLAINTEXT")
        if self.wan_port:
            listeners.append(f"WAN://127.0.0.1:{self.wan_port}")
            advertised.append(f"WAN://{self.wan_advertised or f'127.0.0.1:{self.wan_port}'}")
            protocols.append(f"WAN:{c.security.protocol if c.security else 'PLAINTEXT'}")
        n = len(c.nodes)
        replicas = min(3, n)
        min_isr = 2 if n >= 3 else 1
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in c.nodes),
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL" if secured else "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": str(c.partitions),
            "auto.create.topics.enable": "true",
            # what a production cluster of n brokers runs: every partition on up to 3 brokers, an
            # acks=all write needs 2 of them, and no out-of-sync replica ever becomes leader
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min_isr),
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(8 * 1024 * 1024),
            "replica.fetch.max.bytes": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4" if n == 1 else "2",
            "num.replica.fetchers": "1",
            "log.segment.bytes": str(64 * 1024 * 1024),
            # one broker: a starved 2-core machine must not get it fenced by its own controller;
            # several: a dead broker's partitions move after this session (clients wait it out)
            "broker.session.timeout.ms": "30000" if n == 1 else "6000",
            "broker.heartbeat.interval.ms": "2000" if n == 1 else "1000",
            # a follower that falls this far behind leaves the ISR (default 30 s)
            "replica.lag.time.max.ms": "10000",
            "controlled.shutdown.enable": "true",
        }
        if c.security is not None:
            props.update(c.security.listener_properties("client"))
            if self.wan_port:
                props.update(c.security.listener_properties("wan"))
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path


#: how long a node still shutting down may go on once its controller quorum has exited
QUORUMLESS_GRACE_S = 15.0


@dataclass(eq=False)
class KafkaCluster:
    """``brokers`` Kafka nodes (each broker and KRaft controller) on loopback ports.

    ``workdir`` keeps each node's data, config and logs (one node: in ``workdir`` itself; several:
    ``workdir/node-<id>``), so a stopped cluster starts again with its topics and offsets.
    Several brokers: replication factor 3, ``min.insync.replicas`` 2, no unclean leader election.
    ``port``/``controller_port``/``wan_port`` are the first node's (``node_ports``: every
    node's (client, controller) pair, free ports for the rest); ``wan_ports``/
    ``wan_advertised_all`` give every node's WAN listener (one proxy per broker).
    ``security``: a ``harness.kafka_security.BrokerSecurity`` secures the client (and WAN)
    listeners with TLS and/or SASL; brokers then talk to each other on a plaintext loopback listener.
    ``jvm_args``: extra JVM arguments for every node (e.g. a Java agent); ``{node}`` in them is
    replaced by the node id.
    """

    workdir: Path
    port: int = 0
    controller_port: int = 0
    partitions: int = 3
    heap: str = "384m"
    log_level: str = "WARN"
    wan_port: int = 0
    wan_advertised: str = ""
    brokers: int = 1
    wan_ports: Sequence[int] = ()
    wan_advertised_all: Sequence[str] = ()
    security: BrokerSecurity | None = None
    jvm_args: Sequence[str] = ()
    node_ports: Sequence[tuple[int, int]] = ()
    #: one Prometheus JMX exporter port per node (empty: no exporter)
    metrics_ports: Sequence[int] = ()
    cluster_id: str = field(default_factory=lambda: _cluster_id())
    nodes: list[KafkaNode] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if self.brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        single = (self.workdir / "data" / "meta.properties").exists()
        several = (self.workdir / "node-1" / "data" / "meta.properties").exists()
        if (self.brokers > 1 and single) or (self.brokers == 1 and several):
            raise ValueError(f"{self.workdir} holds a cluster of {'one broker' if single else 'several brokers'}, "
                             f"not {self.brokers}: use another directory (or remove this one)")
        self.cluster_id = self._persisted_cluster_id() or self.cluster_id
        wan_ports = list(self.wan_ports) or ([self.wan_port] if self.wan_port else [])
        wan_adv = list(self.wan_advertised_all) or ([self.wan_advertised] if self.wan_advertised else [])
        pairs = list(self.node_ports) or [(self.port, self.controller_port)]
        for i in range(self.brokers):
            port, controller_port = pairs[i] if i < len(pairs) else (0, 0)
            self.nodes.append(KafkaNode(
                self, node_id=i + 1,
                workdir=self.workdir if self.brokers == 1 else self.workdir / f"node-{i + 1}",
                port=port, controller_port=controller_port,
                wan_port=wan_ports[i] if i < len(wan_ports) else 0,
                metrics_port=self.metrics_ports[i] if i < len(self.metrics_ports) else 0,
                wan_advertised=wan_adv[i] if i < len(wan_adv) else ""))
        self.port = self.nodes[0].port
        self.controller_port = self.nodes[0].controller_port

    # -- addresses -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every node's client listener."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def internal_bootstrap(self) -> str:
        """The brokers' plaintext listener (the client listener itself when it is plaintext)."""
        return ",".join(n.internal_bootstrap for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    # -- state -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Every node runs."""
        return all(n.running for n in self.nodes)

    @property
    def pid(self) -> int | None:
        """The pid of a one-node cluster's process (``None`` when stopped); use ``pids`` or
        ``nodes`` for several."""
        if self.brokers != 1:
            raise ValueError("a cluster of several brokers has several pids: use .pids or .nodes")
        return self.nodes[0].pid

    @property
    def pids(self) -> list[int]:
        return [pid for pid in (n.pid for n in self.nodes) if pid is not None]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 90.0) -> "KafkaCluster":
        """Format each node's storage on first use, start every node that is not running and (by
        default) wait until the cluster acknowledges a produce."""
        for node in self.nodes:
            node.start(wait=False)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until every node listens and the cluster acknowledges an ``acks=all`` produce."""
        try:
            for node in self.nodes:
                wait_until(lambda: node.dead_or(port_open("127.0.0.1", node.port)), timeout,
                           what=f"kafka node {node.node_id} to listen")
                node.check_alive(f"kafka node {node.node_id}")
            # wait_for also bounds a single produce attempt that hangs past the deadline
            asyncio.run(asyncio.wait_for(_produce_once(self.internal_bootstrap, timeout), timeout))
        except Exception as exc:
            raise RuntimeError(f"kafka at {self.bootstrap} not ready: {exc}\n{self.log_tail()}") from exc

    def wait_in_sync(self, timeout: float = 90.0) -> None:
        """Block until no partition of any topic is under-replicated (every replica in the ISR)."""
        asyncio.run(asyncio.wait_for(_wait_in_sync(self.internal_bootstrap, timeout), timeout))

    def under_replicated(self) -> list[tuple[str, int]]:
        """(topic, partition) of every partition whose ISR is smaller than its replica set."""
        return asyncio.run(_under_replicated(self.internal_bootstrap))

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading ``topic``/``partition``."""
        return asyncio.run(_leader(self.internal_bootstrap, topic, partition))

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """Controlled shutdown (SIGTERM) of every node at once; returns each node's exit code
        (143: it shut down on the SIGTERM, -9: it had to be killed).

        Every node is a controller voter too, and a broker's controlled shutdown waits for an
        active controller. Stopped one after another, the last node waited for a quorum that could
        not come back until its SIGKILL after ``timeout`` (30 s per three-node cluster at every
        teardown). All at once, two nodes exit within a second and the last about 5 s later, by
        itself. A node still shutting down long after a majority has exited (seen in CI after
        that node's restart: [143, -9, 143] after the full 30 s) is given ``QUORUMLESS_GRACE_S``
        and then SIGKILL, which Kafka's log recovery at the next start handles like a crash."""
        if len(self.nodes) == 1:
            return [self.nodes[0].stop(timeout)]
        for node in self.nodes:
            if node.pid is not None:
                node.resume()   # a hung node must see its SIGTERM
                node.send(signal.SIGTERM)
        majority = len(self.nodes) // 2 + 1
        quorum_gone_at: float | None = None

        def settled() -> bool:
            nonlocal quorum_gone_at
            alive = sum(node.pid is not None for node in self.nodes)
            if alive == 0:
                return True
            if len(self.nodes) - alive < majority:
                return False
            quorum_gone_at = quorum_gone_at or time.monotonic()
            return time.monotonic() - quorum_gone_at >= QUORUMLESS_GRACE_S

        try:
            wait_until(settled, timeout, what="the cluster's nodes to shut down")
        except TimeoutError:
            pass   # what is left is killed below
        return [node.stop(0) for node in self.nodes]

    def kill(self) -> None:
        """SIGKILL every node: a crashed cluster."""
        for node in self.nodes:
            node.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"-- node {n.node_id}\n{n.log_tail(lines)}" if len(self.nodes) > 1
                         else n.log_tail(lines) for n in self.nodes)

    def jvm_args_for(self, node: KafkaNode) -> list[str]:
        return [a.replace("{node}", str(node.node_id)) for a in self.jvm_args]

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _persisted_cluster_id(self) -> str:
        """A formatted cluster keeps its id (a restart with a new KafkaCluster object)."""
        meta = (self.workdir if self.brokers == 1 else self.workdir / "node-1") / "data" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        return ""


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
            undo.callback(cluster.stop)
            cluster.start(wait=False)
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


async def _admin(bootstrap: str):  # type: ignore[no-untyped-def]
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    return admin


async def _wait_registered(node: KafkaNode) -> None:
    from aiokafka.errors import KafkaError

    async def listed() -> bool:
        if not node.running:
            raise RuntimeError(f"kafka node {node.node_id} exited")
        try:
            admin = await _admin(node.internal_bootstrap)
        except KafkaError:
            return False
        try:
            cluster = await admin.describe_cluster()
            return any(b["node_id"] == node.node_id for b in cluster["brokers"])
        except KafkaError:
            return False
        finally:
            await admin.close()

    await wait_until_async(listed, 90.0, interval=0.3,
                           what=f"kafka node {node.node_id} to be a live broker")


async def _topic_partitions(bootstrap: str) -> list[dict]:
    admin = await _admin(bootstrap)
    try:
        topics = await admin.list_topics()
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [{"topic": t["topic"], **p} for t in described for p in t["partitions"]]


async def _under_replicated(bootstrap: str) -> list[tuple[str, int]]:
    return sorted((p["topic"], p["partition"]) for p in await _topic_partitions(bootstrap)
                  if len(p["isr"]) < len(p["replicas"]))


async def _wait_in_sync(bootstrap: str, timeout: float) -> None:
    from aiokafka.errors import KafkaError

    async def in_sync() -> bool:
        try:
            return not await _under_replicated(bootstrap)
        except KafkaError:
            return False

    await wait_until_async(in_sync, timeout, interval=0.5, what="every replica back in the ISR")


async def _leader(bootstrap: str, topic: str, partition: int) -> int:
    for p in await _topic_partitions(bootstrap):
        if p["topic"] == topic and p["partition"] == partition:
            return int(p["leader"])
    raise KeyError(f"{topic}/{partition}")
