"""Shared fixtures: real Kafka clusters from the project's harness (never mocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.kafka import KafkaCluster, start_clusters


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Kafka cluster shared by the tests that only produce and consume (use unique topics)."""
    (cluster,) = start_clusters(1, tmp_path_factory.mktemp("kafka-shared"), names=["shared"])
    yield cluster
    cluster.stop()


@pytest.fixture
def kafka_factory(tmp_path: Path) -> Iterator[Callable[..., list[KafkaCluster]]]:
    """Start fresh clusters that this test may stop, kill and restart; all stopped at teardown."""
    started: list[KafkaCluster] = []

    def start(count: int = 1, names: list[str] | None = None, **kwargs: object) -> list[KafkaCluster]:
        clusters = start_clusters(count, tmp_path / f"kafka{len(started)}", names=names, **kwargs)
        started.extend(clusters)
        return clusters

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses."""
    import uuid

    return f"t-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"
