"""How a cluster of brokers on this machine is laid out and configured (no broker started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.kafka import default_topics
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from infra import kafka_cluster
from infra.broker import BrokerState, server_properties


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_a_node_of_three_keeps_three_copies_and_needs_two_for_a_write(tmp_path: Path) -> None:
    state = BrokerState(
        cluster_id="c",
        port=9092,
        controller_port=9192,
        host="127.0.0.1",
        node_id=2,
        voters="1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3",
        replication=3,
    )
    config = properties(server_properties(state, tmp_path, "127.0.0.1"))
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3"
    assert config["default.replication.factor"] == config["offsets.topic.replication.factor"] == "3"
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == "2"
    assert config["unclean.leader.election.enable"] == "false"


def test_a_single_broker_keeps_one_copy(tmp_path: Path) -> None:
    state = BrokerState(cluster_id="c", port=9092, controller_port=9192, host="127.0.0.1")
    config = properties(server_properties(state, tmp_path, "127.0.0.1"))
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9192"
    assert config["default.replication.factor"] == config["min.insync.replicas"] == "1"


def test_services_of_a_cluster_name_every_broker_and_its_replication(tmp_path: Path) -> None:
    settings = BrokerSettings(nodes=3, port=19092, data_dir=tmp_path / "kafka")
    env = kafka_cluster.client_environment(settings)
    assert env["MBD_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert env["MBD_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["MBD_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert "MBD_KAFKA_REPLICATION_FACTOR" not in kafka_cluster.client_environment(
        BrokerSettings(port=19092, data_dir=tmp_path / "one")
    )


def test_topics_are_created_with_the_replication_of_the_settings() -> None:
    topics = default_topics(KafkaSettings(replication_factor=3))
    assert {topic.replication_factor for topic in topics} == {3}
    assert all(dict(topic.config)["min.insync.replicas"] == "2" for topic in topics)


def test_impossible_replication_settings_are_refused_with_the_values() -> None:
    with pytest.raises(ValidationError, match="min_insync_replicas 3 is more than"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValidationError, match="nodes 2 is not 1, 3 or 5"):
        BrokerSettings(nodes=2)


def test_a_cluster_is_not_started_over_a_single_brokers_folder(tmp_path: Path) -> None:
    (tmp_path / "broker.json").write_text("{}")
    with pytest.raises(kafka_cluster.BrokerError, match="holds a one-node broker"):
        kafka_cluster.start(BrokerSettings(nodes=3, data_dir=tmp_path), JvmSettings())
