"""docker-compose.yml, checked by parsing it (there is no Docker engine on these machines)."""

from __future__ import annotations

import json
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


KAFKA_START = PROJECT_ROOT / "infra" / "compose" / "kafka-start.sh"


def _mounts(service: str) -> dict[str, str]:
    """Where each volume or host path of ``service`` is mounted."""
    return dict(volume.split(":")[:2] for volume in SERVICES[service]["volumes"])


def _env_files(service: str) -> list[str]:
    return [entry["path"] if isinstance(entry, dict) else entry
            for entry in SERVICES[service].get("env_file", [])]  # fmt: skip


def _properties() -> dict[str, str]:
    """The broker config kafka-start.sh writes (its heredoc, variables as written)."""
    text = KAFKA_START.read_text()
    body = text.split("<<PROPERTIES\n", 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def test_kafka_runs_in_kraft_mode_with_its_log_on_a_volume() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["entrypoint"] == ["/bin/bash", "/mbd/kafka-start.sh"]
    mounts = _mounts("kafka")
    assert mounts["./infra/compose/kafka-start.sh"] == "/mbd/kafka-start.sh"
    properties = _properties()
    assert properties["process.roles"] == "broker,controller"
    assert properties["log.dirs"] == "${DATA}"
    assert mounts["kafka-data"] == kafka["environment"]["MBD_KAFKA_LOG_DIR"]
    assert "kafka-data" in COMPOSE["volumes"]
    assert "healthcheck" in kafka


def test_no_kafka_or_spark_port_is_published_and_the_rest_only_on_loopback() -> None:
    for name in ["kafka", "spark-master", "spark-worker", "stream", "trainer", "simulator"]:
        assert "ports" not in SERVICES[name], name
    for name in ["gateway", "api"]:
        assert all(port.startswith("127.0.0.1:") for port in SERVICES[name]["ports"]), name


def test_kafka_takes_sasl_scram_over_tls_and_keeps_the_controller_on_loopback() -> None:
    properties = _properties()
    protocols = dict(item.split(":") for item in properties["listener.security.protocol.map"]
                     .split(","))  # fmt: skip
    listeners = dict(item.split("://") for item in properties["listeners"].split(","))
    assert protocols == {"CONTROLLER": "SASL_PLAINTEXT", "CLIENT": "SASL_SSL"}
    assert set(listeners) == {"CLIENT", "CONTROLLER"}
    assert listeners["CONTROLLER"].startswith("127.0.0.1:")
    assert properties["inter.broker.listener.name"] == "CLIENT"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["ssl.keystore.location"] == "${CERTS}/broker.p12"
    # Passwords are named, never written: the broker reads them from its environment.
    for key, value in properties.items():
        quoted = re.findall(r'(?:password|user_[\w-]+)="([^"]*)"', value)
        named = [value] if key.endswith("password") else quoted
        assert all(item.startswith("\\${env:MBD_KAFKA_INTERNAL_") for item in named), key
    assert _env_files("kafka") == ["infra/compose-kafka.env"]
    assert "--add-scram" in KAFKA_START.read_text()  # the SCRAM users, at format time
    assert _mounts("kafka")["./infra/certs/broker.p12"] == "/mbd/certs/broker.p12"


def test_every_service_that_names_kafka_logs_in_over_tls() -> None:
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        if name == "kafka" or "MBD_KAFKA_BOOTSTRAP_SERVERS" not in env:
            continue
        assert env["MBD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["MBD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["MBD_KAFKA_SASL_USERNAME"] == "mbd", name
        assert "MBD_KAFKA_SASL_PASSWORD" not in env, name  # from the env file, not this file
        assert "infra/compose.env" in _env_files(name), name
        assert _mounts(name)["./infra/certs/ca.pem"] == env["MBD_KAFKA_SSL_CAFILE"], name
    assert {"gateway", "stream", "api", "simulator", "trainer"} <= {
        name for name, service in SERVICES.items()
        if "MBD_KAFKA_BOOTSTRAP_SERVERS" in service.get("environment", {})
    }  # fmt: skip


def test_spark_authenticates_everywhere_with_the_secret_from_the_env_file() -> None:
    for name in ["spark-master", "spark-worker"]:
        options = SERVICES[name]["environment"]["SPARK_DAEMON_JAVA_OPTS"].split()
        assert "-Dspark.authenticate=true" in options, name
        assert "infra/compose.env" in _env_files(name), name
    assert (
        "-Dspark.master.rest.enabled=false"
        in (SERVICES["spark-master"]["environment"]["SPARK_DAEMON_JAVA_OPTS"])
    )
    for name in ["stream", "trainer"]:
        extra = json.loads(SERVICES[name]["environment"]["MBD_SPARK_EXTRA_CONF"])
        assert extra["spark.authenticate"] == "true", name
        assert "infra/compose.env" in _env_files(name), name
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "spark.authenticate.secret" not in text  # Spark reads _SPARK_AUTH_SECRET instead
    from infra.certs import KAFKA_SECRETS, SERVICE_SECRETS

    assert "_SPARK_AUTH_SECRET" in SERVICE_SECRETS and "MBD_KAFKA_SASL_PASSWORD" in KAFKA_SECRETS
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert {"infra/compose.env", "infra/compose-kafka.env", "infra/certs/"} <= set(ignored)


def test_workers_join_the_master_and_scale() -> None:
    master_command = SERVICES["spark-master"]["command"]
    worker_command = SERVICES["spark-worker"]["command"]
    assert master_command[:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    assert worker_command[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
    assert "spark://spark-master:7077" in worker_command
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
        assert not {key for key in env if key.startswith("MBD_") and "PASSWORD" in key}
    for driver in ("stream", "trainer"):
        env = SERVICES[driver]["environment"]
        assert env["MBD_SPARK_MASTER"] == "spark://spark-master:7077"
        assert driver in env["MBD_SPARK_EXTRA_CONF"]  # executors call the driver back by name


def test_ports_and_healthchecks_match_the_services_defaults() -> None:
    assert f"127.0.0.1:{GatewaySettings().port}:8000" in SERVICES["gateway"]["ports"]
    assert f"127.0.0.1:{ApiSettings().port}:8001" in SERVICES["api"]["ports"]
    assert "/readyz" in " ".join(SERVICES["gateway"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    simulator = SERVICES["simulator"]["command"]
    assert simulator[simulator.index("--gateway") + 1] == "http://gateway:8000"


def test_data_volumes_are_shared_by_drivers_and_workers_at_the_same_paths() -> None:
    for name in ["spark-worker", "stream", "trainer", "api"]:
        mounts = _mounts(name)
        assert mounts["lake"] == "/data/lake" and mounts["registry"] == "/data/registry"
        assert mounts["checkpoints"] == "/data/checkpoints"
        assert {m for m in mounts if not m.startswith("./")} <= set(COMPOSE["volumes"])
    env = SERVICES["stream"]["environment"]
    assert env["MBD_STREAM_LAKE_DIR"] == SERVICES["trainer"]["environment"]["MBD_TRAIN_LAKE_DIR"]
