"""The Kafka connection settings a managed cluster needs, the same for every component.

    add_arguments(parser, "kafka", "GEO_EDGE_KAFKA", "the regional Kafka")
    security = from_args(args, "kafka", "GEO_EDGE_KAFKA")     # a KafkaSecurity
    AIOKafkaProducer(bootstrap_servers=..., **security.client_kwargs())

Flags (and ``<ENV>_...`` variables): ``--<flag>-security-protocol`` (PLAINTEXT, SSL, SASL_SSL,
SASL_PLAINTEXT), ``--<flag>-sasl-mechanism`` (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN),
``--<flag>-username``, ``--<flag>-password-file``, ``--<flag>-ca-file``. The password itself is
read from that file or from the variable ``<ENV>_PASSWORD`` and never from a flag: it must not
be in a process's argv, in ``--help``'s defaults, in a log line or in a ``repr``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class Secret:
    """A string that does not show itself: ``repr``/``str`` print ``'***'``; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


class KafkaSettingsError(ValueError):
    """Kafka security settings that cannot work (named in the message, never the password)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to and encrypts its connection with a Kafka cluster."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    ca_file: str = ""
    #: credentials may come later (a mirror's per-region users): checked when a client is made
    partial: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSettingsError(f"security protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSettingsError(f"SASL mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
            if not self.partial:
                self._check_credentials()
        if self.ca_file and not Path(self.ca_file).is_file():
            raise KafkaSettingsError(f"CA file {self.ca_file} does not exist")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def _check_credentials(self) -> None:
        if not self.username or not self.password:
            raise KafkaSettingsError(f"{self.protocol} needs a user name and a password")

    def describe(self) -> dict[str, str]:
        """What a log line or ``/status`` may show (no password)."""
        out = {"security_protocol": self.protocol}
        if self.sasl:
            out.update(sasl_mechanism=self.mechanism, username=self.username)
        if self.tls:
            out["ca_file"] = self.ca_file or "(system CAs)"
        return out

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        if self.sasl:
            self._check_credentials()
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(cafile=self.ca_file or None)
        if self.sasl:
            kwargs.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                          sasl_plain_password=self.password.reveal())
        return kwargs


PLAINTEXT = KafkaSecurity()


def add_arguments(parser: argparse.ArgumentParser, flag: str, env: str, what: str) -> None:
    """Add the five settings for one cluster: ``--<flag>-security-protocol`` ... [env ``<env>_...``]."""
    a = parser.add_argument
    a(f"--{flag}-security-protocol", env=f"{env}_SECURITY_PROTOCOL", default="PLAINTEXT",
      choices=PROTOCOLS, help=f"how to connect to {what}")
    a(f"--{flag}-sasl-mechanism", env=f"{env}_SASL_MECHANISM", default="SCRAM-SHA-512",
      choices=MECHANISMS, help="SASL mechanism (with SASL_SSL or SASL_PLAINTEXT)")
    a(f"--{flag}-username", env=f"{env}_USERNAME", default="", help="SASL user name")
    a(f"--{flag}-password-file", env=f"{env}_PASSWORD_FILE", default="",
      help=f"file holding the SASL password (or set {env}_PASSWORD; never a flag)")
    a(f"--{flag}-ca-file", env=f"{env}_CA_FILE", default="",
      help="PEM file of the CA that signed the brokers' certificates (default: the system's CAs)")


def from_args(args: argparse.Namespace, flag: str, env: str,
              environ: Mapping[str, str] | None = None, partial: bool = False) -> KafkaSecurity:
    """The settings ``add_arguments`` added, the password from its file or ``<env>_PASSWORD``
    (``partial``: user and password may be missing, to be given per cluster: ``for_name``)."""
    dest = flag.replace("-", "_")
    return from_settings(getattr(args, f"{dest}_security_protocol"), getattr(args, f"{dest}_sasl_mechanism"),
                         getattr(args, f"{dest}_username"), getattr(args, f"{dest}_password_file"),
                         getattr(args, f"{dest}_ca_file"), env, environ, partial=partial)


def from_settings(protocol: str, mechanism: str, username: str, password_file: str, ca_file: str,
                  env: str, environ: Mapping[str, str] | None = None, partial: bool = False) -> KafkaSecurity:
    """Settings whose password comes from ``password_file`` or the variable ``<env>_PASSWORD``
    (for configurations that travel as JSON without the password, e.g. to the edge's workers)."""
    environ = os.environ if environ is None else environ
    if password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            raise KafkaSettingsError(f"cannot read the password file {password_file}: {exc.strerror}") from None
    else:
        password = environ.get(f"{env}_PASSWORD", "")
    return KafkaSecurity(protocol=protocol, mechanism=mechanism, username=username,
                         password=Secret(password), ca_file=ca_file, partial=partial)


SETTINGS = ("SECURITY_PROTOCOL", "SASL_MECHANISM", "USERNAME", "PASSWORD", "PASSWORD_FILE", "CA_FILE")


def for_name(base: KafkaSecurity, env: str, name: str,
             environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """``base`` with the settings given for one cluster by name: ``<env>_<NAME>_USERNAME``,
    ``..._PASSWORD`` or ``..._PASSWORD_FILE``, ``..._SECURITY_PROTOCOL``, ``..._SASL_MECHANISM``,
    ``..._CA_FILE`` (``NAME``: upper case, ``-`` as ``_``). For a mirror whose regions each have
    their own users; regions found at run time (Consul) are looked up when their flow starts."""
    environ = os.environ if environ is None else environ
    prefix = f"{env}_{name.upper().replace('-', '_')}_"
    given = {key: environ[prefix + key] for key in SETTINGS if prefix + key in environ}
    if not given:
        return base
    if "PASSWORD_FILE" in given or "PASSWORD" in given:
        password_file = given.get("PASSWORD_FILE", "")
        if password_file:
            try:
                password = Secret(Path(password_file).read_text().strip())
            except OSError as exc:
                raise KafkaSettingsError(f"cannot read the password file {password_file}: {exc.strerror}") from None
        else:
            password = Secret(given["PASSWORD"])
    else:
        password = base.password
    return KafkaSecurity(protocol=given.get("SECURITY_PROTOCOL", base.protocol),
                         mechanism=given.get("SASL_MECHANISM", base.mechanism),
                         username=given.get("USERNAME", base.username), password=password,
                         ca_file=given.get("CA_FILE", base.ca_file))


def environment(security: KafkaSecurity, env: str, password_file: Path | None = None) -> dict[str, str]:
    """The environment variables that give a process these settings; the password as a file
    (written 0600 at ``password_file``) when one is given, else as ``<env>_PASSWORD``."""
    out = {f"{env}_SECURITY_PROTOCOL": security.protocol, f"{env}_SASL_MECHANISM": security.mechanism,
           f"{env}_USERNAME": security.username, f"{env}_CA_FILE": security.ca_file}
    if security.password:
        if password_file is not None:
            password_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(security.password.reveal())
            out[f"{env}_PASSWORD_FILE"] = str(password_file)
        else:
            out[f"{env}_PASSWORD"] = security.password.reveal()
    return out


async def explain_connection_failure(bootstrap: str, security: KafkaSecurity) -> str | None:
    """Why a client with ``security`` cannot connect to ``bootstrap`` (the first broker that
    refuses says it: ``authentication failed ...``, ``TLS ...``, ``cannot connect ...``), or None
    when a connection works. For /status and the start-up log: aiokafka's own error is only
    "Unable to bootstrap"."""
    import asyncio
    import ssl

    from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

    from service_kit.aiokafka_internals import open_connection

    kwargs = security.client_kwargs()
    kwargs.pop("security_protocol")
    reasons = []
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            await asyncio.wait_for(open_connection(host.strip("[]"), int(port), security_protocol=security.protocol,
                                                   **kwargs), 15)
            return None
        except SaslAuthenticationFailed as exc:
            return (f"authentication failed for user {security.username!r} ({security.mechanism}) "
                    f"at {hostport}: {_sasl_message(exc)}")
        except UnsupportedSaslMechanismError as exc:
            return f"SASL mechanism {security.mechanism} refused by {hostport}: {exc}"
        except ssl.SSLError as exc:
            return f"TLS with {hostport} failed: {getattr(exc, 'verify_message', '') or exc.reason or exc}"
        except (OSError, KafkaError, asyncio.TimeoutError) as exc:
            reasons.append(f"{hostport}: {type(exc).__name__} {exc}".strip())
    return "cannot connect: " + "; ".join(reasons)


async def explain(exc: BaseException, bootstrap: str, security: KafkaSecurity) -> str:
    """A failure as /status and the log should say it: for "Unable to bootstrap" (aiokafka's
    KafkaConnectionError) the reason the brokers gave, else the exception itself."""
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, KafkaConnectionError) or isinstance(exc.__cause__, KafkaConnectionError):
        try:
            reason = await explain_connection_failure(bootstrap, security)
        except Exception as inner:  # noqa: BLE001 - the explanation must not hide the failure
            reason = f"{exc!r} (and explaining it failed: {inner!r})"
        if reason:
            return reason
    return repr(exc)


def _sasl_message(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text
