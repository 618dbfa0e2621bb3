"""The three-broker Kafka cluster that every fault test of this package shares."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from infra import kafka_cluster
from infra.broker import free_port, port_free


def three_free_ports() -> int:
    """The first of three consecutive free ports (the nodes' client ports)."""
    while True:
        port = free_port()
        if port + 2 < 65536 and all(port_free(port + n) for n in (1, 2)):
            return port


@pytest.fixture(scope="session")
def three_brokers(
    tmp_path_factory: pytest.TempPathFactory, kafka_client_env: dict[str, str]
) -> Iterator[BrokerSettings]:
    """Three KRaft brokers (replication 3, min.insync.replicas 2) with the shared SASL users."""
    settings = BrokerSettings(
        nodes=3,
        port=three_free_ports(),
        data_dir=tmp_path_factory.mktemp("kafka-cluster"),
        secrets_dir=Path(kafka_client_env["MBD_BROKER_SECRETS_DIR"]),
        heap="384m",
    )
    kafka_cluster.start(settings, JvmSettings())
    try:
        yield settings
    finally:
        kafka_cluster.stop(settings.data_dir)


def wait_fully_replicated(kafka: KafkaSettings, topics: list[str], timeout_s: float = 90) -> None:
    """Return once every partition of ``topics`` has all its copies in sync."""
    deadline = time.monotonic() + timeout_s
    lagging: list[str] = []
    while time.monotonic() < deadline:
        views = kafka_cluster.partitions(kafka, topics)
        lagging = [f"{v.topic}/{v.partition}" for v in views if v.under_replicated or v.leader < 0]
        if views and not lagging:
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions still under-replicated after {timeout_s:.0f} s: {lagging}")
