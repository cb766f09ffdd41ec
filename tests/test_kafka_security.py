"""Kafka with TLS and SASL/SCRAM, as a managed cluster runs it: the edge, the mirror and the
loader connect with the settings every component takes; a wrong password is a clear error at
start-up and in /status, never a hang; the password is never in argv, a log line or a repr."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from geostack.processes import ServiceProcess, python_entry
from harness.kafka import KafkaCluster
from harness.kafka_security import BrokerSecurity
from harness.ports import free_port
from service_kit import kafka_security
from service_kit.config import EnvArgumentParser
from service_kit.kafka_security import KafkaSecurity, KafkaSettingsError, Secret, environment
from service_kit.wait import wait_until

PASSWORDS = {"edge": "edge-" + uuid.uuid4().hex, "mirror": "mirror-" + uuid.uuid4().hex,
             "central": "central-" + uuid.uuid4().hex}


# -- the settings themselves ---------------------------------------------------------------------

def test_a_secret_never_shows_itself() -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "edge", Secret("hunter2"))
    assert "hunter2" not in repr(security) and "hunter2" not in str(security)
    assert "hunter2" not in str(security.describe())
    assert security.client_kwargs()["sasl_plain_password"] == "hunter2"


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "TLS"}, "security protocol 'TLS' is not one of"),
    ({"protocol": "SASL_SSL", "username": "u"}, "needs a user name and a password"),
    ({"protocol": "SASL_SSL", "username": "u", "password": Secret("p"), "mechanism": "GSSAPI"},
     "SASL mechanism 'GSSAPI' is not one of"),
    ({"protocol": "SSL", "ca_file": "/nonexistent/ca.pem"}, "CA file /nonexistent/ca.pem does not exist"),
])
def test_unusable_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(KafkaSettingsError, match=message):
        KafkaSecurity(**kwargs)


def test_the_password_comes_from_a_file_or_the_environment_never_a_flag(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("T_KAFKA_PASSWORD", "from-env")
    parser = EnvArgumentParser(prog="t")
    kafka_security.add_arguments(parser, "kafka", "T_KAFKA", "the test cluster")
    assert "from-env" not in parser.format_help()
    assert not any("--kafka-password" == a for a in parser._option_string_actions)  # noqa: SLF001
    args = parser.parse_args(["--kafka-security-protocol", "SASL_SSL", "--kafka-username", "u"])
    assert kafka_security.from_args(args, "kafka", "T_KAFKA").password.reveal() == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    args = parser.parse_args(["--kafka-security-protocol", "SASL_SSL", "--kafka-username", "u",
                              "--kafka-password-file", str(secret)])
    assert kafka_security.from_args(args, "kafka", "T_KAFKA").password.reveal() == "from-file"
    args = argparse.Namespace(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                              kafka_username="u", kafka_password_file=str(tmp_path / "missing"),
                              kafka_ca_file="")
    with pytest.raises(KafkaSettingsError, match="cannot read the password file"):
        kafka_security.from_args(args, "kafka", "T_KAFKA")


def test_environment_hands_the_password_as_a_private_file(tmp_path: Path) -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", Secret("pw"))
    env = environment(security, "X", tmp_path / "secrets" / "x.password")
    assert "pw" not in env.values()
    path = Path(env["X_PASSWORD_FILE"])
    assert path.read_text() == "pw" and path.stat().st_mode & 0o777 == 0o600


# -- a real TLS + SCRAM cluster ---------------------------------------------------------------

@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    base = tmp_path_factory.mktemp("secure-kafka")
    security = BrokerSecurity.generate(base / "tls", users=PASSWORDS)
    with KafkaCluster(base / "kafka", security=security) as cluster:
        yield cluster


def _security(cluster: KafkaCluster, user: str, **kwargs: str) -> KafkaSecurity:
    assert cluster.security is not None
    return cluster.security.client(user, **kwargs)


async def _roundtrip(bootstrap: str, security: KafkaSecurity, topic: str) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **security.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over-tls")
    finally:
        await producer.stop()
    return (await _read(bootstrap, security, topic, 1))[0]


async def _read(bootstrap: str, security: KafkaSecurity, topic: str, count: int,
                timeout: float = 60) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed", **security.client_kwargs())
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_every_mechanism_authenticates_over_tls(secure: KafkaCluster, mechanism: str) -> None:
    security = _security(secure, "edge", mechanism=mechanism)
    topic = f"mech-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    assert asyncio.run(_roundtrip(secure.bootstrap, security, topic)) == b"over-tls"


def test_a_wrong_password_and_an_unknown_ca_are_explained(secure: KafkaCluster, tmp_path: Path) -> None:
    wrong = _security(secure, "edge", password="not-the-password")
    reason = asyncio.run(kafka_security.explain_connection_failure(secure.bootstrap, wrong))
    assert reason is not None and reason.startswith("authentication failed for user 'edge' (SCRAM-SHA-512)")
    assert "not-the-password" not in reason
    other_ca = BrokerSecurity.generate(tmp_path / "other-ca")
    untrusted = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "edge", Secret(PASSWORDS["edge"]),
                              ca_file=str(other_ca.ca_file))
    reason = asyncio.run(kafka_security.explain_connection_failure(secure.bootstrap, untrusted))
    assert reason is not None and reason.startswith("TLS with") and "certificate" in reason
    assert asyncio.run(kafka_security.explain_connection_failure(
        secure.bootstrap, _security(secure, "edge"))) is None


def test_a_plaintext_client_does_not_get_in(secure: KafkaCluster) -> None:
    reason = asyncio.run(kafka_security.explain_connection_failure(secure.bootstrap, KafkaSecurity()))
    assert reason is not None and "cannot connect" in reason


def test_a_tls_only_listener(tmp_path: Path) -> None:
    security = BrokerSecurity.generate(tmp_path / "tls", protocol="SSL")
    with KafkaCluster(tmp_path / "kafka", security=security) as cluster:
        client = security.client()
        assert client.protocol == "SSL"
        assert asyncio.run(_roundtrip(cluster.bootstrap, client, "tls-only")) == b"over-tls"


# -- the components against it ----------------------------------------------------------------

def _service(name: str, module: str, workdir: Path, env: dict[str, str], port: int) -> ServiceProcess:
    return ServiceProcess(name, python_entry(module), workdir / "logs", env=env,
                          health_url=f"http://127.0.0.1:{port}/status").start()


def _no_secret_leaks(proc: ServiceProcess, *secrets: str) -> None:
    pid = proc.pid
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    log = proc.log_path.read_text(errors="replace")
    for secret in secrets:
        assert secret not in argv, f"{proc.name}: a password in argv"
        assert secret not in log, f"{proc.name}: a password in the log"


def _edge(cluster: KafkaCluster, workdir: Path, name: str, password: str) -> ServiceProcess:
    port = free_port()
    assert cluster.security is not None
    settings = cluster.security.client("edge", password=password)
    env = {"GEO_EDGE_LISTEN": f"127.0.0.1:{port}", "GEO_EDGE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
           "GEO_EDGE_KAFKA": cluster.bootstrap, "GEO_EDGE_REGION": "eu", "GEO_EDGE_NODE_ID": name,
           "GEO_EDGE_TOPIC": "events", "GEO_EDGE_KAFKA_CHECK_INTERVAL": "0.5",
           **environment(settings, "GEO_EDGE_KAFKA", workdir / "secrets" / f"{name}.password")}
    proc = _service(name, "edge.cli", workdir, env, port)
    proc.port = port  # type: ignore[attr-defined]
    return proc


def test_edge_mirror_and_loader_over_tls_and_scram(secure: KafkaCluster, tmp_path: Path) -> None:
    """One secured cluster plays region and centre (the mirror copies ``events`` to
    ``eu.events`` in the same cluster: what matters here is every client's connection)."""
    assert secure.security is not None
    edge = _edge(secure, tmp_path, "eu-tls-1", PASSWORDS["edge"])
    mirror_port, central_port = free_port(), free_port()
    mirror_env = {"GEO_MIRROR_CENTRAL": secure.bootstrap, "GEO_MIRROR_REGIONS": f"eu={secure.bootstrap}",
                  "GEO_MIRROR_ADMIN_PORT": str(mirror_port), "GEO_MIRROR_INCLUDE": "events",
                  "GEO_MIRROR_NO_HEARTBEATS": "1",
                  **environment(secure.security.client("mirror"), "GEO_MIRROR_CENTRAL",
                                tmp_path / "secrets" / "mirror-central.password"),
                  **environment(secure.security.client("mirror"), "GEO_MIRROR_SOURCE",
                                tmp_path / "secrets" / "mirror-source.password")}
    central_env = {"GEO_CENTRAL_BOOTSTRAP": secure.bootstrap, "GEO_CENTRAL_PORT": str(central_port),
                   "GEO_CENTRAL_HOST": "127.0.0.1", "GEO_CENTRAL_DATA_DIR": str(tmp_path / "chdb"),
                   "GEO_CENTRAL_BATCH_INTERVAL": "0.2",
                   **environment(secure.security.client("central"), "GEO_CENTRAL_KAFKA")}  # env, no file
    procs = [edge]
    try:
        edge.wait_healthy(60)
        mirror = _service("mirror", "mirror.cli", tmp_path, mirror_env, mirror_port)
        procs.append(mirror)
        central = _service("central", "central.cli", tmp_path, central_env, central_port)
        procs.append(central)
        mirror.wait_healthy(90)
        central.wait_healthy(120)
        batch = [{"event": "tls", "os": "linux", "browser": f"b{i}"} for i in range(20)]
        answer = httpx.post(f"http://127.0.0.1:{edge.port}/v1/events", json=batch, timeout=10)  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
        ids = [r["event_id"] for r in answer.json()["results"] if r["status"] == "accepted"]
        assert len(ids) == 20, answer.text
        mirrored = asyncio.run(_read(secure.bootstrap, secure.security.client("mirror"), "eu.events", 20, 90))
        assert len(mirrored) >= 20 and all(orjson.loads(v)["event"] == "tls" for v in mirrored[:20])

        def loaded() -> bool:
            return all(httpx.get(f"http://127.0.0.1:{central_port}/api/events/{i}", timeout=10).status_code == 200
                       for i in ids)

        wait_until(loaded, 90, interval=0.5, what="the 20 events in geo-central's table")
        status = httpx.get(f"http://127.0.0.1:{mirror_port}/status", timeout=5).json()
        assert status["central"]["security_protocol"] == "SASL_SSL" and status["central"]["up"]
        for proc in procs:
            _no_secret_leaks(proc, *PASSWORDS.values())
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_a_wrong_password_is_a_clear_error_not_a_hang(secure: KafkaCluster, tmp_path: Path) -> None:
    assert secure.security is not None
    wrong = "wrong-" + uuid.uuid4().hex
    edge = _edge(secure, tmp_path, "eu-wrong-1", wrong)
    mirror_port, central_port = free_port(), free_port()
    bad = secure.security.client("mirror", password=wrong)
    mirror = _service("mirror", "mirror.cli", tmp_path, {
        "GEO_MIRROR_CENTRAL": secure.bootstrap, "GEO_MIRROR_REGIONS": f"eu={secure.bootstrap}",
        "GEO_MIRROR_ADMIN_PORT": str(mirror_port),
        **environment(bad, "GEO_MIRROR_CENTRAL", tmp_path / "secrets" / "c.password"),
        **environment(bad, "GEO_MIRROR_SOURCE", tmp_path / "secrets" / "s.password")}, mirror_port)
    central = _service("central", "central.cli", tmp_path, {
        "GEO_CENTRAL_BOOTSTRAP": secure.bootstrap, "GEO_CENTRAL_PORT": str(central_port),
        "GEO_CENTRAL_HOST": "127.0.0.1", "GEO_CENTRAL_DATA_DIR": str(tmp_path / "chdb"),
        **environment(secure.security.client("central", password=wrong), "GEO_CENTRAL_KAFKA")}, central_port)
    procs = [edge, mirror, central]
    try:
        def reason(url: str, find) -> str | None:  # type: ignore[no-untyped-def]
            try:
                answer = httpx.get(url, timeout=3)
            except httpx.HTTPError:
                return None
            assert answer.status_code == 503, answer.text   # never healthy with a wrong password
            return find(answer.json())

        checks = {
            "edge": (f"http://127.0.0.1:{edge.port}/status",  # type: ignore[attr-defined]
                     lambda doc: doc["kafka"]["error"]),
            "mirror": (f"http://127.0.0.1:{mirror_port}/status", lambda doc: doc["central"]["error"]),
            "central": (f"http://127.0.0.1:{central_port}/status", lambda doc: doc["loader"]["kafka_error"]),
        }
        for name, (url, find) in checks.items():
            wait_until(lambda: "authentication failed for user" in (reason(url, find) or ""), 60,
                       interval=0.5, what=f"{name}'s /status to name the authentication failure")
        for proc in procs:
            assert proc.running, f"{proc.name} exited:\n{proc.log_tail()}"
            assert "authentication failed for user" in proc.log_path.read_text(errors="replace"), proc.name
            _no_secret_leaks(proc, wrong, *PASSWORDS.values())
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_a_mirror_region_can_have_its_own_users(tmp_path: Path) -> None:
    """Each managed regional cluster has its own users: GEO_MIRROR_SOURCE_<REGION>_* override
    the source defaults, the password from a file or the variable; the defaults alone may lack
    credentials (checked when that region's client is made, and named then)."""
    from mirror.config import MirrorConfig

    secret = tmp_path / "eu.password"
    secret.write_text("eu-secret")
    environ = {"GEO_MIRROR_SOURCE_EU_USERNAME": "mirror-eu", "GEO_MIRROR_SOURCE_EU_PASSWORD_FILE": str(secret),
               "GEO_MIRROR_SOURCE_US_WEST_USERNAME": "mirror-us", "GEO_MIRROR_SOURCE_US_WEST_PASSWORD": "us-secret"}
    base = kafka_security.from_settings("SASL_SSL", "SCRAM-SHA-512", "", "", "", "GEO_MIRROR_SOURCE", {}, partial=True)
    eu = kafka_security.for_name(base, "GEO_MIRROR_SOURCE", "eu", environ)
    us = kafka_security.for_name(base, "GEO_MIRROR_SOURCE", "us-west", environ)
    assert (eu.username, eu.password.reveal(), eu.protocol) == ("mirror-eu", "eu-secret", "SASL_SSL")
    assert (us.username, us.password.reveal()) == ("mirror-us", "us-secret")
    lone = kafka_security.for_name(base, "GEO_MIRROR_SOURCE", "ap", environ)
    with pytest.raises(KafkaSettingsError, match="needs a user name and a password"):
        lone.client_kwargs()
    assert MirrorConfig("c:9092").source_security_for("eu").protocol == "PLAINTEXT"
