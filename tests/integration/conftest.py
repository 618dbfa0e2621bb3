"""Session fixtures for integration tests: a real Apache Kafka broker and a local Spark session.

Every broker here authenticates its clients (SASL/SCRAM), and all of them share the SASL users of
one secrets folder, which the tests of this package find in their environment (``MBD_KAFKA_*``,
``MBD_BROKER_SECRETS_DIR``): a ``KafkaSettings()`` anywhere in them, or in a process they start,
logs in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kafka import ensure_topics
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from common.topics import TopicSpec
from infra import broker
from tests.conftest import authenticated_kafka_env

authenticated_clients = pytest.fixture(scope="package", autouse=True, name="authenticated_clients")(
    authenticated_kafka_env
)


def start_broker(
    data_dir: Path, *, port: int | None = None, secrets_dir: Path | None = None
) -> BrokerSettings:
    """Start a broker; its SASL users come from ``secrets_dir``, else ``MBD_BROKER_SECRETS_DIR``."""
    given = {"secrets_dir": secrets_dir} if secrets_dir else {}
    settings = BrokerSettings(port=port or broker.free_port(), data_dir=data_dir, **given)
    broker.start(settings, JvmSettings())
    return settings


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_client_env: dict[str, str]
) -> Iterator[KafkaSettings]:
    """One broker for the session, on a free port, with its log in a temporary folder.

    A session fixture is set up before the package's environment is: it names the shared
    secrets folder itself.
    """
    data_dir = tmp_path_factory.mktemp("kafka")
    start_broker(data_dir, secrets_dir=Path(kafka_client_env["MBD_BROKER_SECRETS_DIR"]))
    try:
        yield broker.client_settings(data_dir)
    finally:
        broker.stop(data_dir)


@pytest.fixture
def fresh_topic(kafka_broker: KafkaSettings) -> str:
    """A new 4-partition topic that no other test writes to."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka_broker, [TopicSpec(name=name, partitions=4)])
    return name
