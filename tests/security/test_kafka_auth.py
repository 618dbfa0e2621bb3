"""The embedded broker lets in only clients that log in, on both of its listeners.

One broker for the module, started by ``infra.broker.start`` in a new folder, so its SASL users
and their secret files are made by that first start. A refused client is shown against a
control: the same broker answers a client with the right password at the same time.
"""

from __future__ import annotations

import json
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError
from pydantic import SecretStr

from common.kafka import broker_reachable, ensure_topics, make_consumer, make_producer
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from common.topics import TopicSpec
from infra import broker
from infra.broker_auth import BROKER_USER, CLIENT_USER, CONTROLLER_USER
from tests.security import kafka_wire

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("kafka-auth") / "kafka"
    # Its own secrets: not a folder another test shares through MBD_BROKER_SECRETS_DIR.
    settings = BrokerSettings(port=broker.free_port(), data_dir=folder, secrets_dir=None)
    broker.start(settings, JvmSettings())
    try:
        yield folder
    finally:
        broker.stop(folder)


@pytest.fixture(scope="module")
def client(data_dir: Path) -> KafkaSettings:
    return broker.client_settings(data_dir)


def refused(settings: KafkaSettings) -> bool:
    """Whether the broker answers no metadata request of ``settings`` within 5 s."""
    return not broker_reachable(settings, timeout_s=5.0)


def test_secret_files_are_made_on_first_start_and_only_the_owner_reads_them(
    data_dir: Path, client: KafkaSettings
) -> None:
    secrets = data_dir / "secrets"
    files = sorted(path.name for path in secrets.iterdir())
    assert files == ["broker.password", "client.password", "controller.password"]
    for path in secrets.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert client.sasl_password_file == secrets / "client.password"
    assert client.security_protocol == "SASL_PLAINTEXT" and client.sasl_username == CLIENT_USER


def test_no_password_is_in_the_brokers_config_state_or_log(data_dir: Path) -> None:
    passwords = [path.read_text().strip() for path in (data_dir / "secrets").iterdir()]
    for path in data_dir.rglob("*"):
        if path.is_file() and path.parent.name != "secrets":
            content = path.read_bytes()
            assert not any(password.encode() in content for password in passwords), path


def test_an_authenticated_producer_and_consumer_round_trip(client: KafkaSettings) -> None:
    topic = f"auth.{uuid.uuid4().hex[:8]}"
    ensure_topics(client, [TopicSpec(name=topic, partitions=2)])
    producer = make_producer(client)
    try:
        for i in range(20):
            producer.send(topic, key=b"phone", value=f"record-{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = make_consumer(client, topic, group_id=f"auth-{uuid.uuid4().hex[:6]}")
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < 20 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
    finally:
        consumer.close()
    assert sorted(values) == sorted(f"record-{i}".encode() for i in range(20))


def test_a_client_without_credentials_is_refused(client: KafkaSettings) -> None:
    anonymous = KafkaSettings(
        bootstrap_servers=client.bootstrap_servers, security_protocol="PLAINTEXT",
        sasl_username=None, sasl_password=None, sasl_password_file=None,
    )  # fmt: skip
    assert refused(anonymous)
    assert not refused(client)  # the control: the broker was answering all along
    producer_failed = False
    try:
        make_producer(anonymous, max_block_ms=3000, bootstrap_timeout_ms=3000).close()
    except KafkaError:
        producer_failed = True
    assert producer_failed


def test_a_wrong_password_is_refused_and_the_broker_says_why(
    client: KafkaSettings, data_dir: Path
) -> None:
    wrong = client.model_copy(update={"sasl_password": SecretStr("not-the-password-0123")})
    assert refused(wrong)
    assert not refused(client)
    log = (data_dir / "broker.log").read_text()
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log


def test_the_client_listener_offers_scram_only_on_loopback(
    client: KafkaSettings, data_dir: Path
) -> None:
    host, port = client.bootstrap_servers.rsplit(":", 1)
    assert host == "127.0.0.1"
    error, mechanisms = kafka_wire.mechanisms_offered(host, int(port), "PLAIN")
    assert (error, mechanisms) == (kafka_wire.UNSUPPORTED_SASL_MECHANISM, ["SCRAM-SHA-512"])
    properties = (data_dir / "server.properties").read_text()
    assert f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:" in properties


def test_the_controller_listener_takes_only_its_own_user(data_dir: Path) -> None:
    port = json.loads((data_dir / "broker.json").read_text())["controller_port"]
    password = (data_dir / "secrets" / "controller.password").read_text().strip()
    assert kafka_wire.mechanisms_offered("127.0.0.1", port, "PLAIN") == (kafka_wire.NONE, ["PLAIN"])
    assert kafka_wire.plain_login("127.0.0.1", port, CONTROLLER_USER, password) == kafka_wire.NONE
    for user, secret in [(CONTROLLER_USER, "wrong-password-0123456"), (BROKER_USER, password)]:
        error = kafka_wire.plain_login("127.0.0.1", port, user, secret)
        assert error == kafka_wire.SASL_AUTHENTICATION_FAILED, user


def test_status_and_restart_keep_working_with_the_stored_users(data_dir: Path) -> None:
    state = broker.status(data_dir)
    assert state.running and state.reachable
    settings = BrokerSettings(port=state.port, data_dir=data_dir, secrets_dir=None)
    assert broker.stop(data_dir)
    broker.start(settings, JvmSettings())
    assert broker.status(data_dir).reachable


def test_storage_formatted_without_credentials_names_the_folder_and_the_way_out(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "kafka"
    plain = BrokerSettings(port=broker.free_port(), data_dir=folder, authentication=False)
    broker.start(plain, JvmSettings())
    assert broker.stop(folder)
    state = json.loads((folder / "broker.json").read_text())
    # As a data folder from before authentication looks: no record of credentials.
    for key in ("authentication", "credentials_in_metadata", "secrets_dir"):
        state.pop(key)
    (folder / "broker.json").write_text(json.dumps(state))
    with pytest.raises(broker.BrokerError) as failure:
        broker.start(plain.model_copy(update={"authentication": True}), JvmSettings())
    message = str(failure.value)
    assert str(folder.resolve()) in message and "without Kafka credentials" in message
    assert "mv " in message
    assert not broker.running(folder)


def test_rotating_the_client_password_refuses_the_old_one(data_dir: Path) -> None:
    """Last in the module: the other tests' client holds the password from before."""
    from infra.cli import main

    before = broker.client_settings(data_dir)
    old = (data_dir / "secrets" / "client.password").read_text().strip()

    assert main(["broker", "rotate-password", "--data-dir", str(data_dir)]) == 0

    after = broker.client_settings(data_dir)
    new = (data_dir / "secrets" / "client.password").read_text().strip()
    assert new != old
    assert stat.S_IMODE((data_dir / "secrets" / "client.password").stat().st_mode) == 0o600
    assert not refused(after)  # control: the new password logs in
    assert refused(before.model_copy(update={"sasl_password_file": None}))
