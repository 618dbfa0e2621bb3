"""The three-broker Kafka cluster that every fault test of this package shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import BrokerSettings, JvmSettings
from infra import kafka_cluster


@pytest.fixture(scope="session")
def three_brokers(
    tmp_path_factory: pytest.TempPathFactory, kafka_client_env: dict[str, str]
) -> Iterator[BrokerSettings]:
    """Three KRaft brokers (replication 3, min.insync.replicas 2) with the shared SASL users."""
    settings = BrokerSettings(
        nodes=3,
        port=kafka_cluster.consecutive_free_ports(3),
        data_dir=tmp_path_factory.mktemp("kafka-cluster"),
        secrets_dir=Path(kafka_client_env["MBD_BROKER_SECRETS_DIR"]),
        heap="384m",
    )
    kafka_cluster.start(settings, JvmSettings())
    try:
        yield settings
    finally:
        kafka_cluster.stop(settings.data_dir)
