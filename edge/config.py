"""The edge's configuration: flags (each also a ``GEO_EDGE_*`` variable) parsed into ``EdgeConfig``.

Worker processes receive the parsed configuration as JSON in ``GEO_EDGE_CONFIG_JSON`` (see
``EdgeConfig.to_env``/``from_env``), so that uvicorn's multi-process supervisor can import the app
factory by name in every worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from dataclasses import dataclass, field
from typing import Sequence

import orjson

from service_kit import http_protocol, kafka_security
from service_kit.config import EnvArgumentParser

CONFIG_ENV = "GEO_EDGE_CONFIG_JSON"
KAFKA_ENV = "GEO_EDGE_KAFKA"
COMPRESSIONS = ("lz4", "zstd", "snappy", "gzip", "none")
VALIDATIONS = ("default", "permissive", "schema")


@dataclass(frozen=True)
class EdgeConfig:
    """Everything one edge process needs; defaults are those of ``geo-edge --help``."""

    host: str = "0.0.0.0"
    port: int = 8080
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    kafka: str = "127.0.0.1:9092"
    topic: str = "events"
    topic_partitions: int = 6
    topic_replication: int = 1
    dead_letter_topic: str = ""
    region: str = "local"
    node_id: str = field(default_factory=socket.gethostname)
    max_body_bytes: int = 1 << 20
    max_event_bytes: int = 256 << 10
    max_batch_events: int = 1000
    max_pending_events: int = 20000
    produce_timeout: float = 5.0
    retry_after: int = 2
    acks: str = "all"
    compression: str = "lz4"
    linger_ms: int = 3
    batch_bytes: int = 256 << 10
    validation: str = "default"
    schema_file: str = ""
    cors_origins: tuple[str, ...] = ("*",)
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    tls_cert: str = ""
    tls_key: str = ""
    workers: int = 1
    drain_delay: float = 0.0
    shutdown_timeout: float = 30.0
    kafka_check_interval: float = 2.0
    #: Kafka security (the password: the file, or GEO_EDGE_KAFKA_PASSWORD; never in this config)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password_file: str = ""
    kafka_ca_file: str = ""
    consul_url: str = ""
    consul_token: str = field(default="", repr=False)
    advertise_address: str = ""
    consul_check_interval: str = "1s"
    consul_deregister_after: str = "1m"
    consul_drain_timeout: float = 10.0
    write_keys_file: str = ""
    rate_limit_ip: float = 0.0
    rate_limit_ip_burst: int = 100
    rate_limit_key: float = 0.0
    rate_limit_key_burst: int = 1000
    rate_limit_table_size: int = 100_000
    max_headers: int = 100
    max_header_bytes: int = 16384
    max_json_depth: int = 32
    max_string_length: int = 8192
    #: slow clients (service_kit.http_protocol.ConnectionLimits)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 30.0
    max_connections: int = 10_000
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}")
        if self.acks not in ("all", "1", "0"):
            raise ValueError("acks must be all, 1 or 0")
        if self.validation not in VALIDATIONS:
            raise ValueError(f"validation must be one of {VALIDATIONS}")
        if self.validation == "schema" and not self.schema_file:
            raise ValueError("validation=schema needs --schema FILE")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        for name in ("max_body_bytes", "max_event_bytes", "max_batch_events", "max_pending_events",
                     "workers", "topic_partitions", "topic_replication", "rate_limit_ip_burst",
                     "rate_limit_key_burst", "rate_limit_table_size", "max_headers",
                     "max_header_bytes", "max_json_depth", "max_string_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.produce_timeout <= 0:
            raise ValueError("produce_timeout must be > 0")
        if self.rate_limit_ip < 0 or self.rate_limit_key < 0:
            raise ValueError("rate limits must be >= 0 (0: off)")
        self.connection_limits()  # raises ValueError when a timeout or the limit is invalid

    def connection_limits(self) -> "http_protocol.ConnectionLimits":
        """The listener's slow-client protection (timeouts, connections per worker)."""
        return http_protocol.ConnectionLimits(
            header_timeout=self.header_timeout, body_timeout=self.body_timeout,
            keepalive_timeout=self.keepalive_timeout, max_connections=self.max_connections,
            retry_after=self.retry_after)

    def kafka_security(self) -> "kafka_security.KafkaSecurity":
        """The Kafka connection settings, the password read now (file or GEO_EDGE_KAFKA_PASSWORD)."""
        return kafka_security.from_settings(self.kafka_security_protocol, self.kafka_sasl_mechanism,
                                            self.kafka_username, self.kafka_password_file,
                                            self.kafka_ca_file, KAFKA_ENV)

    def to_env(self) -> str:
        """The configuration as JSON, for ``GEO_EDGE_CONFIG_JSON``."""
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "EdgeConfig":
        """The configuration a parent process put in ``GEO_EDGE_CONFIG_JSON``."""
        raw = (environ or os.environ).get(CONFIG_ENV)
        if not raw:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start the edge with geo-edge")
        doc = orjson.loads(raw)
        for key in ("cors_origins", "trusted_proxies"):
            doc[key] = tuple(doc[key])
        return cls(**doc)


def _split_addr(value: str, default_host: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return default_host, int(value)
    return (host.strip("[]") or default_host), int(port)


def build_parser() -> argparse.ArgumentParser:
    """The ``geo-edge`` argument parser; every flag also reads a ``GEO_EDGE_*`` variable."""
    d = EdgeConfig()
    p = EnvArgumentParser(prog="geo-edge", description=(
        "The geoingest edge: POST /post (one event, compatible with the original service), "
        "POST /v1/events (JSON array or NDJSON batch), GET /v1/pixel.gif (image beacon), "
        "GET /status, GET /openapi.json; Prometheus /metrics on a separate port."))
    a = p.add_argument
    a("--listen", env="GEO_EDGE_LISTEN", default=f"{d.host}:{d.port}", help="HTTP(S) listen address HOST:PORT")
    a("--metrics-listen", env="GEO_EDGE_METRICS_LISTEN", default=f"{d.metrics_host}:{d.metrics_port}",
      help="listen address of the Prometheus /metrics endpoint (aggregates all workers)")
    a("--kafka", env="GEO_EDGE_KAFKA", default=d.kafka, help="Kafka bootstrap servers, comma separated")
    a("--topic", env="GEO_EDGE_TOPIC", default=d.topic, help="topic for accepted events")
    a("--topic-partitions", env="GEO_EDGE_TOPIC_PARTITIONS", type=int, default=d.topic_partitions,
      help="partitions when the edge creates the topic")
    a("--topic-replication", env="GEO_EDGE_TOPIC_REPLICATION", type=int, default=d.topic_replication,
      help="replication factor when the edge creates the topic")
    a("--dead-letter-topic", env="GEO_EDGE_DEAD_LETTER_TOPIC", default=d.dead_letter_topic,
      help="topic for rejected batch elements with their reason (empty: none)")
    a("--region", env="GEO_EDGE_REGION", default=d.region, help="region name (header `region`)")
    a("--node-id", env="GEO_EDGE_NODE_ID", default=d.node_id, help="edge node id (header `edge`)")
    a("--max-body-bytes", env="GEO_EDGE_MAX_BODY_BYTES", type=int, default=d.max_body_bytes,
      help="largest request body after decompression (413 above)")
    a("--max-event-bytes", env="GEO_EDGE_MAX_EVENT_BYTES", type=int, default=d.max_event_bytes,
      help="largest single event")
    a("--max-batch-events", env="GEO_EDGE_MAX_BATCH_EVENTS", type=int, default=d.max_batch_events,
      help="most events in one /v1/events request (413 above)")
    a("--max-pending-events", env="GEO_EDGE_MAX_PENDING_EVENTS", type=int, default=d.max_pending_events,
      help="events awaiting a Kafka ack per worker; beyond it requests get 503 at once")
    a("--produce-timeout", env="GEO_EDGE_PRODUCE_TIMEOUT", type=float, default=d.produce_timeout,
      help="seconds to wait for the Kafka ack before answering 503")
    a("--retry-after", env="GEO_EDGE_RETRY_AFTER", type=int, default=d.retry_after,
      help="Retry-After seconds on 503")
    a("--acks", env="GEO_EDGE_ACKS", default=d.acks, choices=("all", "1", "0"),
      help="producer acks (the producer is idempotent only with acks=all)")
    a("--compression", env="GEO_EDGE_COMPRESSION", default=d.compression, choices=COMPRESSIONS,
      help="Kafka batch compression")
    a("--linger-ms", env="GEO_EDGE_LINGER_MS", type=int, default=d.linger_ms,
      help="how long a batch waits in the producer before it is sent (ms); the next batch fills "
      "meanwhile. 3: fewer, fuller produce requests when few requests are in flight (Kafka 4's "
      "producer lingers 5); 0: every event-loop iteration's records go at once")
    a("--batch-bytes", env="GEO_EDGE_BATCH_BYTES", type=int, default=d.batch_bytes,
      help="producer batch size per partition")
    a("--validation", env="GEO_EDGE_VALIDATION", default=None, choices=VALIDATIONS,
      help="default: object with a non-empty string `event`, optional strings `os`, `browser`; "
           "permissive: any JSON object; schema: --schema [default: schema if --schema, else default]")
    a("--schema", env="GEO_EDGE_SCHEMA", default="", help="JSON Schema file for events")
    a("--cors-origins", env="GEO_EDGE_CORS_ORIGINS", nargs="*", default=list(d.cors_origins),
      help="allowed CORS origins (`*` for any; none to disable CORS)")
    a("--trusted-proxies", env="GEO_EDGE_TRUSTED_PROXIES", nargs="*", default=list(d.trusted_proxies),
      help="CIDRs whose CF-Connecting-IP / X-Forwarded-For / CF-IPCountry headers are believed")
    a("--tls-cert", env="GEO_EDGE_TLS_CERT", default="", help="PEM certificate chain: serve HTTPS")
    a("--tls-key", env="GEO_EDGE_TLS_KEY", default="", help="PEM private key for --tls-cert")
    a("--workers", env="GEO_EDGE_WORKERS", type=int, default=d.workers, help="uvicorn worker processes")
    a("--drain-delay", env="GEO_EDGE_DRAIN_DELAY", type=float, default=d.drain_delay,
      help="seconds between SIGTERM (/status turns 503) and closing the listener")
    a("--shutdown-timeout", env="GEO_EDGE_SHUTDOWN_TIMEOUT", type=float, default=d.shutdown_timeout,
      help="seconds in-flight requests get to finish after the listener closed")
    a("--kafka-check-interval", env="GEO_EDGE_KAFKA_CHECK_INTERVAL", type=float,
      default=d.kafka_check_interval, help="seconds between Kafka connectivity probes")
    a("--consul-url", env="GEO_EDGE_CONSUL_URL", default=d.consul_url,
      help="Consul agent HTTP API: register service `edge` with a /status check (empty: no Consul)")
    a("--consul-token", env="GEO_EDGE_CONSUL_TOKEN", default=d.consul_token,
      help="Consul ACL token (policy `edge`); never logged")
    a("--advertise-address", env="GEO_EDGE_ADVERTISE_ADDRESS", default=d.advertise_address,
      help="address registered in Consul (default: the listen host, or 127.0.0.1 for 0.0.0.0)")
    a("--consul-check-interval", env="GEO_EDGE_CONSUL_CHECK_INTERVAL", default=d.consul_check_interval,
      help="interval of Consul's HTTP check on /status")
    a("--consul-deregister-after", env="GEO_EDGE_CONSUL_DEREGISTER_AFTER", default=d.consul_deregister_after,
      help="Consul removes the edge after its check was critical this long (a killed edge)")
    a("--consul-drain-timeout", env="GEO_EDGE_CONSUL_DRAIN_TIMEOUT", type=float, default=d.consul_drain_timeout,
      help="on SIGTERM, longest wait for Consul to see the check critical before deregistering")
    a("--write-keys-file", env="GEO_EDGE_WRITE_KEYS_FILE", default=d.write_keys_file,
      help="file of write keys, one `source:key` per line; with keys (file or GEO_EDGE_WRITE_KEYS, "
           "a comma list of source:key) every event request needs one: Authorization: Bearer KEY "
           "or X-Write-Key: KEY (pixel also ?key=), else 401. Keys are never logged")
    a("--rate-limit-ip", env="GEO_EDGE_RATE_LIMIT_IP", type=float, default=d.rate_limit_ip,
      help="requests/s per client IP and worker (token bucket; 0: off); above → 429")
    a("--rate-limit-ip-burst", env="GEO_EDGE_RATE_LIMIT_IP_BURST", type=int, default=d.rate_limit_ip_burst,
      help="bucket size per client IP")
    a("--rate-limit-key", env="GEO_EDGE_RATE_LIMIT_KEY", type=float, default=d.rate_limit_key,
      help="requests/s per write key and worker (0: off)")
    a("--rate-limit-key-burst", env="GEO_EDGE_RATE_LIMIT_KEY_BURST", type=int, default=d.rate_limit_key_burst,
      help="bucket size per write key")
    a("--rate-limit-table-size", env="GEO_EDGE_RATE_LIMIT_TABLE_SIZE", type=int,
      default=d.rate_limit_table_size, help="most buckets kept per worker and kind (LRU; idle ones expire)")
    a("--max-headers", env="GEO_EDGE_MAX_HEADERS", type=int, default=d.max_headers,
      help="most request header fields (431 above)")
    a("--max-header-bytes", env="GEO_EDGE_MAX_HEADER_BYTES", type=int, default=d.max_header_bytes,
      help="largest total of header names and values (431 above)")
    a("--max-json-depth", env="GEO_EDGE_MAX_JSON_DEPTH", type=int, default=d.max_json_depth,
      help="deepest nesting of objects/arrays in an event (400 too_deep)")
    a("--max-string-length", env="GEO_EDGE_MAX_STRING_LENGTH", type=int, default=d.max_string_length,
      help="longest string (value or key) in an event, in characters (400 string_too_long)")
    http_protocol.add_arguments(p, "GEO_EDGE", d.connection_limits())
    a("--log-level", env="GEO_EDGE_LOG_LEVEL", default=d.log_level, help="log level")
    kafka_security.add_arguments(p, "kafka", KAFKA_ENV, "the regional Kafka")
    return p


def parse_config(argv: Sequence[str] | None = None) -> EdgeConfig:
    """Parse flags and environment into an ``EdgeConfig`` (exits with a usage error when invalid)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    host, port = _split_addr(ns.listen, "0.0.0.0")
    mhost, mport = _split_addr(ns.metrics_listen, host)
    validation = ns.validation or ("schema" if ns.schema else "default")
    try:
        config = EdgeConfig(
            host=host, port=port, metrics_host=mhost, metrics_port=mport, kafka=ns.kafka,
            topic=ns.topic, topic_partitions=ns.topic_partitions, topic_replication=ns.topic_replication,
            dead_letter_topic=ns.dead_letter_topic, region=ns.region, node_id=ns.node_id,
            max_body_bytes=ns.max_body_bytes, max_event_bytes=ns.max_event_bytes,
            max_batch_events=ns.max_batch_events, max_pending_events=ns.max_pending_events,
            produce_timeout=ns.produce_timeout, retry_after=ns.retry_after, acks=ns.acks,
            compression=ns.compression, linger_ms=ns.linger_ms, batch_bytes=ns.batch_bytes,
            validation=validation, schema_file=ns.schema,
            cors_origins=tuple(x for o in ns.cors_origins for x in o.split(",") if x),
            trusted_proxies=tuple(x for o in ns.trusted_proxies for x in o.split(",") if x),
            tls_cert=ns.tls_cert, tls_key=ns.tls_key, workers=ns.workers, drain_delay=ns.drain_delay,
            shutdown_timeout=ns.shutdown_timeout, kafka_check_interval=ns.kafka_check_interval,
            consul_url=ns.consul_url, consul_token=ns.consul_token,
            advertise_address=ns.advertise_address, consul_check_interval=ns.consul_check_interval,
            consul_deregister_after=ns.consul_deregister_after,
            consul_drain_timeout=ns.consul_drain_timeout, log_level=ns.log_level,
            write_keys_file=ns.write_keys_file, rate_limit_ip=ns.rate_limit_ip,
            rate_limit_ip_burst=ns.rate_limit_ip_burst, rate_limit_key=ns.rate_limit_key,
            rate_limit_key_burst=ns.rate_limit_key_burst, rate_limit_table_size=ns.rate_limit_table_size,
            max_headers=ns.max_headers, max_header_bytes=ns.max_header_bytes,
            max_json_depth=ns.max_json_depth, max_string_length=ns.max_string_length,
            kafka_security_protocol=ns.kafka_security_protocol, kafka_sasl_mechanism=ns.kafka_sasl_mechanism,
            kafka_username=ns.kafka_username, kafka_password_file=ns.kafka_password_file,
            kafka_ca_file=ns.kafka_ca_file, header_timeout=ns.header_timeout,
            body_timeout=ns.body_timeout, keepalive_timeout=ns.keepalive_timeout,
            max_connections=ns.max_connections,
        )
        config.kafka_security()  # a missing password or CA file fails at start, not in every worker
        from edge.auth import load_write_keys
        load_write_keys(config.write_keys_file)  # fail at start, not in every worker
        return config
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable
