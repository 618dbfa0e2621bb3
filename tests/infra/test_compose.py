"""docker-compose.yml, checked by parsing it (there is no Docker engine on these machines).

The brokers' config is what infra/compose/kafka-start.sh really writes: the script runs under
bash with each broker service's environment and a stand-in Kafka installation that records how
it was called.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from pydantic_settings import BaseSettings

import common.settings as settings_module
from common.settings import PROJECT_ROOT, ApiSettings, GatewaySettings, KafkaSettings
from infra.cli import build_parser

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MBD_SERVICES = ["gateway", "stream", "trainer", "api", "simulator"]
BROKERS = sorted(
    name for name, service in SERVICES.items()
    if str(service.get("image", "")).startswith("apache/kafka:")
)  # fmt: skip
KAFKA_START = PROJECT_ROOT / "infra" / "compose" / "kafka-start.sh"


def known_variables() -> set[str]:
    """Every MBD_ variable some settings class reads."""
    names = set()
    for item in vars(settings_module).values():
        if isinstance(item, type) and issubclass(item, BaseSettings) and item is not BaseSettings:
            prefix = item.model_config.get("env_prefix", "")
            names |= {f"{prefix}{field}".upper() for field in item.model_fields}
    return names


def _mounts(service: str) -> dict[str, str]:
    """Where each volume or host path of ``service`` is mounted."""
    return dict(volume.split(":")[:2] for volume in SERVICES[service]["volumes"])


def _env_files(service: str) -> list[str]:
    return [entry["path"] if isinstance(entry, dict) else entry
            for entry in SERVICES[service].get("env_file", [])]  # fmt: skip


def _env(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES[service].get("environment", {}).items()}


def _kafka_clients() -> list[str]:
    return [name for name in SERVICES if "MBD_KAFKA_BOOTSTRAP_SERVERS" in _env(name)]


def _properties() -> dict[str, str]:
    """The broker config kafka-start.sh writes (its heredoc, variables as written)."""
    text = KAFKA_START.read_text()
    body = text.split("<<PROPERTIES\n", 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def _parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# Stand-ins for the env file `mbd certs` writes (infra.certs.KAFKA_SECRETS), distinct values.
FAKE_SECRETS = {
    "MBD_KAFKA_SASL_PASSWORD": "client-secret-0001",
    "MBD_KAFKA_INTERNAL_BROKER_PASSWORD": "broker-secret-0002",
    "MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD": "controller-secret-0003",
    "MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD": "keystore-secret-0004",
    "MBD_KAFKA_CLUSTER_ID": "mbdTestClusterId00000A",
}
FAKE_KAFKA = {
    # The storage tool gets its arguments on stdin (`kafka-run-class.sh @/dev/stdin`).
    "kafka-run-class.sh": 'printf "%s\\n" "$@" > "$OUT/format.argv"; cat > "$OUT/format.stdin"\n',
    "kafka-server-start.sh": 'printf "%s\\n" "$@" > "$OUT/server.argv"; env > "$OUT/server.env"\n',
}


@dataclass(frozen=True)
class Started:
    """What kafka-start.sh did for one broker: its config, the format call, the broker's start."""

    config: dict[str, str]
    config_text: str
    format_args: list[str]
    server_argv: str
    server_env: dict[str, str]


def _run_kafka_start(service: str, folder: Path, **overrides: str) -> subprocess.CompletedProcess:
    kafka_home, out, data = folder / "kafka", folder / "out", folder / "data"
    for path in (kafka_home / "bin", out, data):
        path.mkdir(parents=True, exist_ok=True)
    for name, body in FAKE_KAFKA.items():
        (kafka_home / "bin" / name).write_text(f"#!/bin/bash\n{body}")
        (kafka_home / "bin" / name).chmod(0o755)
    from infra.certs import KAFKA_SECRETS

    assert set(FAKE_SECRETS) == set(KAFKA_SECRETS)  # exactly what compose-kafka.env holds
    env = {
        "PATH": os.environ["PATH"], **_env(service), **FAKE_SECRETS, "OUT": str(out),
        "KAFKA_HOME": str(kafka_home), "MBD_KAFKA_CONFIG": str(folder / "server.properties"),
        "MBD_KAFKA_LOG_DIR": str(data), **overrides,
    }  # fmt: skip
    return subprocess.run(
        ["bash", str(KAFKA_START)], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Started]:
    runs = {}
    for broker in BROKERS:
        folder = tmp_path_factory.mktemp(broker)
        result = _run_kafka_start(broker, folder)
        assert result.returncode == 0, result.stderr
        out, config_text = folder / "out", (folder / "server.properties").read_text()
        server_env = (out / "server.env").read_text().splitlines()
        runs[broker] = Started(
            config=_parse_properties(config_text),
            config_text=config_text,
            format_args=(out / "format.stdin").read_text().splitlines(),
            server_argv=(out / "server.argv").read_text(),
            server_env=dict(line.split("=", 1) for line in server_env if "=" in line),
        )
    return runs


def test_images_match_the_versions_the_code_is_built_against() -> None:
    pom = (PROJECT_ROOT / "infra" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert BROKERS and all(
        SERVICES[name]["image"] == f"apache/kafka:{kafka_version}" for name in BROKERS
    )
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert f'"pyspark=={version("pyspark")}"' in pyproject  # the image installs this pin
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "mbd setup" in dockerfile and "pip install" in dockerfile
    for name in ["spark-master", "spark-worker", *MBD_SERVICES]:
        assert SERVICES[name]["image"] == "mbd:latest" and SERVICES[name]["build"] == "."


def test_three_kraft_brokers_each_with_its_own_id_name_and_log_volume(
    started: dict[str, Started],
) -> None:
    assert BROKERS == ["kafka-1", "kafka-2", "kafka-3"]
    log_volumes = set()
    for name in BROKERS:
        broker = SERVICES[name]
        assert broker["entrypoint"] == ["/bin/bash", "/mbd/kafka-start.sh"], name
        assert broker["hostname"] == name
        mounts = _mounts(name)
        assert mounts["./infra/compose/kafka-start.sh"] == "/mbd/kafka-start.sh", name
        [log_volume] = [v for v, path in mounts.items() if path == _env(name)["MBD_KAFKA_LOG_DIR"]]
        assert log_volume in COMPOSE["volumes"], name
        log_volumes.add(log_volume)
        config = started[name].config
        assert config["process.roles"] == "broker,controller", name
        assert config["node.id"] == _env(name)["MBD_KAFKA_NODE_ID"], name
        assert config["advertised.listeners"] == f"CLIENT://{name}:9092", name
        assert "healthcheck" in broker, name
    assert len(log_volumes) == 3  # no two brokers share a log
    assert sorted(started[name].config["node.id"] for name in BROKERS) == ["1", "2", "3"]
    assert _properties()["log.dirs"] == "${DATA}"


def test_the_controller_quorum_is_the_three_brokers_each_reached_by_its_name(
    started: dict[str, Started],
) -> None:
    expected = {started[name].config["node.id"]: f"{name}:9093" for name in BROKERS}
    for name in BROKERS:
        config = started[name].config
        voters = dict(voter.split("@") for voter in config["controller.quorum.voters"].split(","))
        assert voters == expected, name
        listeners = dict(item.split("://") for item in config["listeners"].split(","))
        # It binds the name the other nodes dial: the compose network, nothing published.
        assert listeners["CONTROLLER"] == expected[config["node.id"]], name
        assert listeners["CLIENT"] == "0.0.0.0:9092", name


def test_kafka_start_refuses_a_node_the_quorum_does_not_name(tmp_path: Path) -> None:
    result = _run_kafka_start("kafka-1", tmp_path / "a", MBD_KAFKA_NODE_ID="4")
    assert result.returncode != 0 and "4@kafka-1:9093" in result.stderr
    result = _run_kafka_start("kafka-1", tmp_path / "b", MBD_KAFKA_MIN_INSYNC_REPLICAS="4")
    assert result.returncode != 0 and "min.insync.replicas 4" in result.stderr
    assert not (tmp_path / "a" / "out" / "server.argv").exists()


def test_every_broker_keeps_three_copies_and_needs_two_for_a_write(
    started: dict[str, Started],
) -> None:
    for name in BROKERS:
        config = started[name].config
        assert config["default.replication.factor"] == "3", name
        assert config["min.insync.replicas"] == "2", name
        assert config["unclean.leader.election.enable"] == "false", name
        assert config["offsets.topic.replication.factor"] == "3", name
        assert config["transaction.state.log.replication.factor"] == "3", name
        assert config["transaction.state.log.min.isr"] == "2", name
        assert config["share.coordinator.state.topic.replication.factor"] == "3", name
        assert config["share.coordinator.state.topic.min.isr"] == "2", name
        assert config["auto.create.topics.enable"] == "false", name


def test_no_kafka_or_spark_port_is_published_and_the_rest_only_on_loopback() -> None:
    for name in [*BROKERS, "spark-master", "spark-worker", "stream", "trainer", "simulator"]:
        assert "ports" not in SERVICES[name], name
    for name in ["gateway", "api"]:
        assert all(port.startswith("127.0.0.1:") for port in SERVICES[name]["ports"]), name


def test_kafka_takes_sasl_scram_over_tls_between_hosts(started: dict[str, Started]) -> None:
    for name in BROKERS:
        config = started[name].config
        protocols = dict(item.split(":") for item in config["listener.security.protocol.map"]
                         .split(","))  # fmt: skip
        assert protocols == {"CONTROLLER": "SASL_SSL", "CLIENT": "SASL_SSL"}, name
        assert config["inter.broker.listener.name"] == "CLIENT", name
        assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512", name
        assert config["sasl.mechanism.controller.protocol"] == "PLAIN", name
        assert config["ssl.keystore.location"] == "/mbd/certs/broker.p12", name
        assert config["ssl.truststore.location"] == _mounts(name)["./infra/certs/ca.pem"], name
        assert _mounts(name)["./infra/certs/broker.p12"] == "/mbd/certs/broker.p12", name
        # One env file for all: the same cluster id and users on every node.
        assert _env_files(name) == ["infra/compose-kafka.env"], name
    # Passwords are named, never written: the broker reads them from its environment.
    for key, value in _properties().items():
        quoted = re.findall(r'(?:password|user_[\w-]+)="([^"]*)"', value)
        named = [value] if key.endswith("password") else quoted
        assert all(item.startswith("\\${env:MBD_KAFKA_INTERNAL_") for item in named), key


def test_every_broker_is_formatted_with_the_shared_cluster_id_and_the_scram_users(
    started: dict[str, Started],
) -> None:
    for name in BROKERS:
        run = started[name]
        args = run.format_args
        assert args[:2] == ["kafka.tools.StorageTool", "format"], name
        assert args[args.index("-t") + 1] == FAKE_SECRETS["MBD_KAFKA_CLUSTER_ID"], name
        users = [args[i + 1] for i, arg in enumerate(args) if arg == "--add-scram"]
        assert users == [
            f"SCRAM-SHA-512=[name=mbd,password={FAKE_SECRETS['MBD_KAFKA_SASL_PASSWORD']}]",
            "SCRAM-SHA-512=[name=mbd-broker,"
            f"password={FAKE_SECRETS['MBD_KAFKA_INTERNAL_BROKER_PASSWORD']}]",
        ], name
        secrets = [v for k, v in FAKE_SECRETS.items() if k != "MBD_KAFKA_CLUSTER_ID"]
        assert not any(secret in run.config_text + run.server_argv for secret in secrets), name
        assert "MBD_KAFKA_SASL_PASSWORD" not in run.server_env, name  # needed only to format


def test_every_service_that_names_kafka_logs_in_over_tls() -> None:
    for name in _kafka_clients():
        env = _env(name)
        assert env["MBD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["MBD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["MBD_KAFKA_SASL_USERNAME"] == "mbd", name
        assert "MBD_KAFKA_SASL_PASSWORD" not in env, name  # from the env file, not this file
        assert "infra/compose.env" in _env_files(name), name
        assert _mounts(name)["./infra/certs/ca.pem"] == env["MBD_KAFKA_SSL_CAFILE"], name
    assert {"gateway", "stream", "api", "simulator", "trainer"} <= set(_kafka_clients())


def test_every_kafka_client_names_all_brokers_and_asks_for_their_replication(
    started: dict[str, Started],
) -> None:
    advertised = {started[name].config["advertised.listeners"].split("://")[1] for name in BROKERS}
    for name in _kafka_clients():
        env = _env(name)
        servers = env["MBD_KAFKA_BOOTSTRAP_SERVERS"].split(",")
        assert sorted(servers) == sorted(advertised), name  # each broker once, all of them
        assert env["MBD_KAFKA_REPLICATION_FACTOR"] == "3", name
        assert env["MBD_KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        kafka = KafkaSettings(
            bootstrap_servers=env["MBD_KAFKA_BOOTSTRAP_SERVERS"],
            replication_factor=int(env["MBD_KAFKA_REPLICATION_FACTOR"]),
            min_insync_replicas=int(env["MBD_KAFKA_MIN_INSYNC_REPLICAS"]),
        )
        assert kafka.replication_factor == len(BROKERS), name
    for name in ["gateway", "stream", "api"]:  # they open Kafka connections when they start
        depends_on = SERVICES[name]["depends_on"]
        for broker in BROKERS:
            assert depends_on[broker]["condition"] == "service_healthy", (name, broker)


def test_the_broker_certificate_mbd_certs_makes_names_every_broker(tmp_path: Path) -> None:
    from infra.certs import make_certs

    files = make_certs(
        tmp_path / "certs", env_file=tmp_path / "compose.env",
        kafka_env_file=tmp_path / "compose-kafka.env",
    )  # fmt: skip
    broker = x509.load_pem_x509_certificates(files.broker_cert.read_bytes())[0]
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(BROKERS) <= set(names.get_values_for_type(x509.DNSName))


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
    master, worker = SERVICES["spark-master"], SERVICES["spark-worker"]
    assert master["command"][:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    assert worker["command"][:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
    master_url = f"spark://{master['hostname']}:7077"
    assert master_url in worker["command"]
    assert worker["deploy"]["replicas"] >= 2
    # `--scale spark-worker=N` starts N copies: nothing in it may be one of a kind.
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker, key
    for driver in ("stream", "trainer"):
        assert _env(driver)["MBD_SPARK_MASTER"] == master_url, driver


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
    assert env["MBD_LAKE_URI"] == SERVICES["trainer"]["environment"]["MBD_LAKE_URI"]
