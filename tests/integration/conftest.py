"""Session fixtures for integration tests: a real Apache Kafka broker and a local Spark session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kafka import ensure_topics
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from common.topics import TopicSpec
from infra import broker


def start_broker(data_dir: Path, *, port: int | None = None) -> BrokerSettings:
    settings = BrokerSettings(port=port or broker.free_port(), data_dir=data_dir)
    broker.start(settings, JvmSettings())
    return settings


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """One broker for the session, on a free port, with its log in a temporary folder."""
    data_dir = tmp_path_factory.mktemp("kafka")
    settings = start_broker(data_dir)
    try:
        yield KafkaSettings(bootstrap_servers=f"127.0.0.1:{settings.port}")
    finally:
        broker.stop(data_dir)


@pytest.fixture
def fresh_topic(kafka_broker: KafkaSettings) -> str:
    """A new 4-partition topic that no other test writes to."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka_broker, [TopicSpec(name=name, partitions=4)])
    return name
