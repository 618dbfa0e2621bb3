"""docker-compose.yml, checked by parsing it (there is no Docker engine on these machines)."""

from __future__ import annotations

import re
from importlib.metadata import version

import yaml
from pydantic_settings import BaseSettings

import common.settings as settings_module
from common.settings import PROJECT_ROOT, ApiSettings, GatewaySettings
from infra.cli import build_parser

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MBD_SERVICES = ["gateway", "stream", "trainer", "api", "simulator"]


def known_variables() -> set[str]:
    """Every MBD_ variable some settings class reads."""
    names = set()
    for item in vars(settings_module).values():
        if isinstance(item, type) and issubclass(item, BaseSettings) and item is not BaseSettings:
            prefix = item.model_config.get("env_prefix", "")
            names |= {f"{prefix}{field}".upper() for field in item.model_fields}
    return names


def test_images_match_the_versions_the_code_is_built_against() -> None:
    pom = (PROJECT_ROOT / "infra" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert f'"pyspark=={version("pyspark")}"' in pyproject  # the image installs this pin
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "mbd setup" in dockerfile and "pip install" in dockerfile
    for name in ["spark-master", "spark-worker", *MBD_SERVICES]:
        assert SERVICES[name]["image"] == "mbd:latest" and SERVICES[name]["build"] == "."


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
    assert master_command[:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    assert worker_command[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
    assert "spark://spark-master:7077" in worker_command
    assert "7077:7077" in SERVICES["spark-master"]["ports"]
    assert SERVICES["spark-worker"]["deploy"]["replicas"] >= 2


def test_every_mbd_service_runs_a_command_that_exists() -> None:
    parser = build_parser()
    for name in MBD_SERVICES:
        command = SERVICES[name]["command"]
        assert command[0] == "mbd", name
        parser.parse_args(command[1:])  # exits (fails the test) on an unknown command or flag
    assert SERVICES["stream"]["command"][1] == "stream"
    assert SERVICES["trainer"]["command"][1] == "train"


def test_every_variable_is_one_the_settings_read_and_the_drivers_reach_the_cluster() -> None:
    known = known_variables()
    for name in MBD_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = {key for key in env if key.startswith("MBD_")} - known
        assert not unknown, f"{name} sets variables no settings class reads: {unknown}"
        assert env["MBD_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for driver in ("stream", "trainer"):
        env = SERVICES[driver]["environment"]
        assert env["MBD_SPARK_MASTER"] == "spark://spark-master:7077"
        assert driver in env["MBD_SPARK_EXTRA_CONF"]  # executors call the driver back by name


def test_ports_and_healthchecks_match_the_services_defaults() -> None:
    assert f"{GatewaySettings().port}:8000" in SERVICES["gateway"]["ports"]
    assert f"{ApiSettings().port}:8001" in SERVICES["api"]["ports"]
    assert "/readyz" in " ".join(SERVICES["gateway"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    simulator = SERVICES["simulator"]["command"]
    assert simulator[simulator.index("--gateway") + 1] == "http://gateway:8000"


def test_data_volumes_are_shared_by_drivers_and_workers_at_the_same_paths() -> None:
    for name in ["spark-worker", "stream", "trainer", "api"]:
        mounts = dict(volume.split(":") for volume in SERVICES[name]["volumes"])
        assert mounts["lake"] == "/data/lake" and mounts["registry"] == "/data/registry"
        assert mounts["checkpoints"] == "/data/checkpoints"
        assert set(mounts) <= set(COMPOSE["volumes"])
    env = SERVICES["stream"]["environment"]
    assert env["MBD_STREAM_LAKE_DIR"] == SERVICES["trainer"]["environment"]["MBD_TRAIN_LAKE_DIR"]
