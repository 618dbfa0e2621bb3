"""Kafka security settings: validated at once, and handed the same way to kafka-python and Spark."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.files import write_secret
from common.kafka import client_security, settings_environment, spark_kafka_options
from common.settings import KafkaSettings

SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "mbd"}


def test_plaintext_by_default_passes_no_credentials() -> None:
    settings = KafkaSettings()
    assert settings.security_protocol == "PLAINTEXT" and not settings.authenticates
    assert client_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert spark_kafka_options(settings) == {
        "kafka.bootstrap.servers": "127.0.0.1:9092", "kafka.security.protocol": "PLAINTEXT",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "needle"),
    [({"security_protocol": "SASL"}, "'SASL'"), ({"sasl_mechanism": "GSSAPI"}, "'GSSAPI'"),
     ({"security_protocol": "SASL_SSL", "sasl_password": "x" * 20}, "sasl_username"),
     ({**SASL}, "sasl_password"), ({**SASL, "sasl_username": "a b"}, "'a b'"),
     ({"ssl_cafile": "/nowhere/ca.pem"}, "only used with SSL")],
)  # fmt: skip
def test_bad_security_settings_fail_fast_naming_the_value(fields, needle) -> None:
    with pytest.raises(ValidationError, match=needle):
        KafkaSettings(**fields)


def test_an_error_does_not_echo_an_inline_password() -> None:
    with pytest.raises(ValidationError) as failure:
        KafkaSettings(security_protocol="SASL_SSL", sasl_password="hunter2-hunter2-hunter2")
    assert "hunter2" not in str(failure.value)


def test_the_password_file_must_exist_and_be_0600(tmp_path: Path) -> None:
    path = tmp_path / "client.password"
    with pytest.raises(ValidationError, match="does not exist"):
        KafkaSettings(**SASL, sasl_password_file=path)
    write_secret(path, "s3cret-password-of-mbd")
    settings = KafkaSettings(**SASL, sasl_password_file=path, sasl_password="inline-ignored")
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "s3cret-password-of-mbd"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()
    path.chmod(0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        KafkaSettings(**SASL, sasl_password_file=path)


def test_kafka_python_and_spark_get_the_same_login(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here")
    settings = KafkaSettings(security_protocol="SASL_SSL", sasl_username="mbd",
                             sasl_password='pa"ss\\word', ssl_cafile=ca)  # fmt: skip
    assert client_security(settings) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "mbd", "sasl_plain_password": 'pa"ss\\word', "ssl_cafile": str(ca),
    }  # fmt: skip
    options = spark_kafka_options(settings)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="mbd" password="pa\\"ss\\\\word";'
    )
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.location"] == str(ca.resolve())


def test_a_child_gets_the_password_file_not_the_password(tmp_path: Path) -> None:
    path = tmp_path / "client.password"
    write_secret(path, "s3cret-password-of-mbd")
    env = settings_environment(KafkaSettings(**SASL, sasl_password_file=path))
    assert env["MBD_KAFKA_SASL_PASSWORD_FILE"] == str(path)
    assert "s3cret-password-of-mbd" not in "".join(env.values())
    assert env["MBD_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
