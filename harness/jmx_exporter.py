"""The Prometheus JMX exporter Java agent for the harness's Kafka nodes.

    KafkaCluster(workdir, brokers=3, metrics_ports=[free_port() for _ in range(3)])
    # each node's JVM gets agent_jvm_args(port): GET node.metrics_url -> Prometheus text

The agent jar (``io.prometheus.jmx:jmx_prometheus_javaagent``) is fetched from Maven Central by
``mvn dependency:copy`` into ``$GEOINGEST_CACHE/jmx_prometheus_javaagent-<version>/`` the first
time (a file lock makes concurrent first uses safe across processes); ``geo-kafka fetch`` (and so
``make kafka``) fetches it too. Which MBeans it reads and the metric names it exports are in
``observability/kafka-jmx.yml``: a small allow-list, so a scrape reads a few dozen MBeans, not
Kafka's thousands.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

from harness.kafka import POM, cache_dir

#: the newest 1.x that Maven Central serves here (1.1.0 and later are not served)
JMX_EXPORTER_VERSION = "1.0.1"
ARTIFACT = f"io.prometheus.jmx:jmx_prometheus_javaagent:{JMX_EXPORTER_VERSION}"
RULES = Path(__file__).resolve().parent.parent / "observability" / "kafka-jmx.yml"


def agent_dir() -> Path:
    return cache_dir() / f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}"


def agent_jar() -> Path:
    """The agent jar; fetched with Maven the first time (safe across processes)."""
    directory = agent_dir()
    jar = directory / f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
    done = directory / ".complete"
    if done.exists() and jar.exists():
        return jar
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (done.exists() and jar.exists()):
            staging = directory / "download"
            shutil.rmtree(staging, ignore_errors=True)
            # -f: a pom of ours, so a pom.xml in the caller's working directory is never used
            subprocess.run(
                ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy", f"-Dartifact={ARTIFACT}",
                 f"-DoutputDirectory={staging}"],
                check=True,
            )
            (staging / jar.name).replace(jar)
            shutil.rmtree(staging, ignore_errors=True)
            done.touch()
    return jar


def agent_jvm_args(port: int, rules: Path = RULES, host: str = "127.0.0.1") -> list[str]:
    """The JVM argument that runs the exporter on ``host:port`` (``/metrics``) with ``rules``."""
    if not 0 < port < 65536:
        raise ValueError(f"metrics port {port} is not a TCP port")
    if not Path(rules).is_file():
        raise FileNotFoundError(f"JMX exporter rules {rules} missing")
    return [f"-javaagent:{agent_jar()}={host}:{port}:{Path(rules).resolve()}"]


if __name__ == "__main__":
    print(agent_jar())
    sys.exit(0)
