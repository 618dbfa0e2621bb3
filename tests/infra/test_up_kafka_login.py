"""`mbd up` hands every service the broker's client login: the user and its password's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.files import write_secret
from common.settings import KafkaSettings
from infra.up import UpSettings, environment


def test_every_service_logs_in_with_the_password_file_of_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MBD_BROKER_SECRETS_DIR", raising=False)
    env = environment(UpSettings(data_dir=tmp_path, broker_port=19092))
    password_file = tmp_path.resolve() / "kafka" / "secrets" / "client.password"
    assert {key: value for key, value in env.items() if key.startswith("MBD_KAFKA_")} == {
        "MBD_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        "MBD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MBD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MBD_KAFKA_SASL_USERNAME": "mbd",
        "MBD_KAFKA_SASL_PASSWORD_FILE": str(password_file),
    }
    # What a service builds from it once the broker has made the file.
    write_secret(password_file, "generated-by-the-broker-0123")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kafka = KafkaSettings()
    assert kafka.authenticates and kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "generated-by-the-broker-0123"
