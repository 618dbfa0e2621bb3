"""docker-compose.yml, checked by parsing it (there is no Docker engine on these machines)."""

from __future__ import annotations

import re
from importlib.metadata import version

import yaml

from common.settings import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_images_match_the_versions_the_code_is_built_against() -> None:
    pom = (PROJECT_ROOT / "infra" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    for name in ("spark-master", "spark-worker"):
        assert SERVICES[name]["image"] == f"apache/spark:{version('pyspark')}"


def test_kafka_runs_in_kraft_mode_with_its_log_on_a_volume() -> None:
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "9092:9092" in SERVICES["kafka"]["ports"]
    volume = SERVICES["kafka"]["volumes"][0].split(":")
    assert volume[0] in COMPOSE["volumes"] and volume[1] == env["KAFKA_LOG_DIRS"]
    assert "healthcheck" in SERVICES["kafka"]


def test_workers_join_the_master_and_scale() -> None:
    master_command = SERVICES["spark-master"]["command"]
    worker_command = SERVICES["spark-worker"]["command"]
    assert "org.apache.spark.deploy.master.Master" in master_command
    assert "org.apache.spark.deploy.worker.Worker" in worker_command
    assert "spark://spark-master:7077" in worker_command
    assert "7077:7077" in SERVICES["spark-master"]["ports"]
    assert SERVICES["spark-worker"]["deploy"]["replicas"] >= 2
