"""A Kafka cluster's security as a managed cluster has it: a TLS listener with a certificate from
a CA the harness generates, and SASL users (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN).

    security = BrokerSecurity.generate(workdir / "tls", users={"edge": "s3cret"})
    cluster = KafkaCluster(workdir / "eu", security=security).start()
    settings = security.client("edge")     # a service_kit.kafka_security.KafkaSecurity

SCRAM credentials go into the KRaft metadata when the storage is formatted (``--add-scram``), so a
cluster started again keeps them. The CA's certificate is ``ca_file``; the brokers' key and
certificate chain are one PEM file (Kafka's ``ssl.keystore.type=PEM``, PKCS#8 key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from service_kit.kafka_security import MECHANISMS, PROTOCOLS, KafkaSecurity, Secret

_LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
}


@dataclass(frozen=True)
class BrokerSecurity:
    """Broker side of a secured client listener: ``protocol`` (``SSL``, ``SASL_SSL``,
    ``SASL_PLAINTEXT``), the SASL ``users`` (name -> password) and the TLS files."""

    protocol: str
    users: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    ca_file: Path | None = None
    keystore_file: Path | None = None
    mechanisms: tuple[str, ...] = MECHANISMS

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS or self.protocol == "PLAINTEXT":
            raise ValueError(f"a secured listener is one of {PROTOCOLS[1:]}, not {self.protocol!r}")
        if self.tls and (self.ca_file is None or self.keystore_file is None):
            raise ValueError(f"{self.protocol} needs a CA and a keystore (BrokerSecurity.generate)")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def generate(cls, directory: Path, users: Mapping[str, str] | None = None,
                 protocol: str = "SASL_SSL") -> "BrokerSecurity":
        """A CA and a broker certificate for ``127.0.0.1``/``localhost`` in ``directory``
        (reused when they exist: a restarted cluster keeps its certificate)."""
        directory = Path(directory)
        ca_file, keystore = directory / "ca.pem", directory / "broker.pem"
        if protocol in ("SSL", "SASL_SSL") and not (ca_file.exists() and keystore.exists()):
            _write_certificates(directory, ca_file, keystore)
        return cls(protocol=protocol, users={k: Secret(v) for k, v in (users or {}).items()},
                   ca_file=ca_file if protocol in ("SSL", "SASL_SSL") else None,
                   keystore_file=keystore if protocol in ("SSL", "SASL_SSL") else None)

    def client(self, user: str | None = None, *, password: str | None = None,
               mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
        """Client settings for ``user`` (its password unless ``password`` is given)."""
        secret = Secret(password) if password is not None else (self.users[user] if user else Secret(""))
        return KafkaSecurity(protocol=self.protocol, mechanism=mechanism, username=user or "",
                             password=secret, ca_file=str(self.ca_file) if self.ca_file else "")

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every user for both SCRAM mechanisms."""
        if not self.sasl:
            return []
        out: list[str] = []
        for name, password in self.users.items():
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                out += ["--add-scram", f"{mechanism}=[name={name},password={password.reveal()}]"]
        return out

    def listener_properties(self, listener: str) -> dict[str, str]:
        """``server.properties`` entries for the listener named ``listener``."""
        name = listener.lower()
        props: dict[str, str] = {}
        if self.tls:
            props.update({
                f"listener.name.{name}.ssl.keystore.type": "PEM",
                f"listener.name.{name}.ssl.keystore.location": str(self.keystore_file),
                f"listener.name.{name}.ssl.client.auth": "none",
                f"listener.name.{name}.ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            })
        if self.sasl:
            props[f"listener.name.{name}.sasl.enabled.mechanisms"] = ",".join(self.mechanisms)
            for mechanism in self.mechanisms:
                key = f"listener.name.{name}.{mechanism.lower()}.sasl.jaas.config"
                if mechanism == "PLAIN":
                    users = " ".join(f'user_{u}="{p.reveal()}"' for u, p in self.users.items())
                    props[key] = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                else:
                    props[key] = _LOGIN_MODULES[mechanism]
        return props


def _write_certificates(directory: Path, ca_file: Path, keystore: Path) -> None:
    import trustme
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca = trustme.CA(organization_name="geoingest harness")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    keystore.write_bytes(pkcs8 + chain)
    os.chmod(keystore, 0o600)
    ca_file.write_bytes(ca.cert_pem.bytes())
