"""The mirror's settings (built by :mod:`mirror.cli` from flags and ``GEO_MIRROR_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirror.policy import ReplicationPolicy, TopicFilter
from service_kit import kafka_security
from service_kit.kafka_security import PLAINTEXT, KafkaSecurity


@dataclass(frozen=True)
class MirrorConfig:
    """Everything a :class:`mirror.worker.MirrorWorker` needs besides its regions."""

    central_bootstrap: str
    policy: ReplicationPolicy = field(default_factory=ReplicationPolicy)
    topic_filter: TopicFilter = field(default_factory=TopicFilter)
    exactly_once: bool = True
    #: consumer group on each *source* cluster that splits partitions between mirror processes
    source_group: str = "geo-mirror"
    #: consumer group on the *central* cluster holding committed positions (never joined)
    positions_group: str = "geo-mirror-positions"
    transactional_id_prefix: str = "geo-mirror"
    #: transaction slots per region (``mirror.slots``): a round commits one transaction per slot,
    #: and at most this many workers share a region's partitions
    slots_per_region: int = 2
    replication_factor: int = 1
    refresh_interval_s: float = 2.0
    batch_interval_ms: int = 100
    #: shortest time between the starts of two copy rounds (transactions) of one region
    transaction_interval_ms: int = 0
    #: central transactions per second this worker's rounds may start together (``mirror.budget``;
    #: 0: no bound)
    max_transactions_per_s: float = 100.0
    max_batch_records: int = 50000
    transaction_timeout_ms: int = 30000
    session_timeout_ms: int = 10000
    operation_timeout_s: float = 15.0
    region_restart_after_s: float = 20.0
    heartbeats: bool = True
    heartbeat_topic: str = "heartbeats"
    heartbeat_interval_s: float = 1.0
    compression: str | None = "lz4"
    client_id: str = "geo-mirror"
    #: how to connect to the central cluster and to every source region (TLS, SASL)
    central_security: KafkaSecurity = PLAINTEXT
    source_security: KafkaSecurity = PLAINTEXT

    def source_security_for(self, region: str) -> KafkaSecurity:
        """``source_security`` with the region's own settings, when the environment gives any
        (each managed regional cluster has its own users): ``GEO_MIRROR_SOURCE_<REGION>_USERNAME``,
        ``..._PASSWORD``/``..._PASSWORD_FILE``, ``..._SECURITY_PROTOCOL``, ``..._SASL_MECHANISM``,
        ``..._CA_FILE``."""
        return kafka_security.for_name(self.source_security, "GEO_MIRROR_SOURCE", region)
