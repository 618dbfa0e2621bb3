"""Kafka for the benchmarks that compare broker setups: one broker or a replicated cluster.

Both shapes start the same way, through :mod:`infra.kafka_cluster` in a temporary folder with
their own SASL users, so an arm with three brokers and an arm with one differ only in the
brokers: three KRaft nodes on consecutive free ports, replication 3, ``min.insync.replicas`` 2,
against the plain single broker. Clients get every node's address and the replication mbd
creates its topics with (:func:`infra.kafka_cluster.client_settings`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from infra import kafka_cluster
from infra.jars import ensure_jars


@contextmanager
def running_brokers(
    nodes: int = 1, *, authentication: bool = True, heap: str = "512m"
) -> Iterator[tuple[BrokerSettings, KafkaSettings]]:
    """``nodes`` brokers (1 or 3) in a temporary folder, stopped on exit: their settings (for
    :func:`infra.kafka_cluster.kill_node` and ``start_node``) and a client's settings."""
    jvm = JvmSettings()
    ensure_jars(jvm)
    with tempfile.TemporaryDirectory(prefix="mbd-bench-kafka-") as tmp:
        settings = BrokerSettings(
            nodes=nodes,
            port=kafka_cluster.consecutive_free_ports(nodes),
            data_dir=Path(tmp) / "kafka",
            authentication=authentication,
            secrets_dir=Path(tmp) / "secrets",
            heap=heap,
        )
        kafka_cluster.start(settings, jvm)
        try:
            yield settings, kafka_cluster.client_settings(settings.data_dir)
        finally:
            kafka_cluster.stop(settings.data_dir)
