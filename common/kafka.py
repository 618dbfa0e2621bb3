"""Factories for kafka-python clients, configured the one way mbd relies on.

Producers are idempotent with ``acks=all`` so that an acknowledgement means the record is in the
broker's log; consumers commit explicitly unless a caller says otherwise. Every client, from
Python or from Spark, authenticates the way :class:`~common.settings.KafkaSettings` says:
:func:`client_security` gives kafka-python's arguments, :func:`spark_kafka_options` the options
of Spark's Kafka source and sink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from common.settings import KafkaSettings
from common.topics import TopicSpec

log = logging.getLogger(__name__)


class _ScramWarningFilter(logging.Filter):
    """Drops kafka-python's "Exchanging credentials in the clear" warning, logged at every SCRAM
    login over SASL_PLAINTEXT: SCRAM sends a proof, never the password, and mbd uses
    SASL_PLAINTEXT on loopback only (SASL_SSL between hosts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "credentials in the clear" not in record.getMessage()


logging.getLogger("kafka.net.sasl.scram").addFilter(_ScramWarningFilter())


def client_security(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python's security arguments for ``settings`` (only the protocol for PLAINTEXT)."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.authenticates:
        assert settings.sasl_password is not None  # the settings' validator ensures it
        config |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    if settings.ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.ssl_cafile)
    return config


_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def jaas_quote(text: str) -> str:
    """``text`` as a quoted JAAS option value (Kafka's parser takes backslash escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jaas_config(mechanism: str, username: str, password: str) -> str:
    """A Java client's ``sasl.jaas.config`` for ``mechanism``."""
    return (
        f"{_JAAS_MODULES[mechanism]} required "
        f"username={jaas_quote(username)} password={jaas_quote(password)};"
    )


def spark_kafka_options(settings: KafkaSettings) -> dict[str, str]:
    """Spark's Kafka source/sink options: the servers and the Java client's security settings.

    The JAAS option carries the password; Spark redacts option values matching
    ``spark.redaction.regex`` (``password`` among them) in plans and the UI, and keeps source
    options out of the checkpoint.
    """
    options = {
        "kafka.bootstrap.servers": settings.bootstrap_servers,
        "kafka.security.protocol": settings.security_protocol,
    }
    if settings.authenticates:
        assert settings.sasl_username and settings.sasl_password is not None
        options["kafka.sasl.mechanism"] = settings.sasl_mechanism
        options["kafka.sasl.jaas.config"] = jaas_config(
            settings.sasl_mechanism, settings.sasl_username,
            settings.sasl_password.get_secret_value(),
        )  # fmt: skip
    if settings.ssl_cafile is not None:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(settings.ssl_cafile.resolve())
    return options


def settings_environment(settings: KafkaSettings) -> dict[str, str]:
    """``MBD_KAFKA_*`` variables that give a child process the broker and login of ``settings``;
    a password read from a file travels as the file's path."""
    env = {
        "MBD_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MBD_KAFKA_SECURITY_PROTOCOL": settings.security_protocol,
    }
    if settings.authenticates:
        assert settings.sasl_username and settings.sasl_password is not None
        env |= {
            "MBD_KAFKA_SASL_MECHANISM": settings.sasl_mechanism,
            "MBD_KAFKA_SASL_USERNAME": settings.sasl_username,
        }
        if settings.sasl_password_file is not None:
            env["MBD_KAFKA_SASL_PASSWORD_FILE"] = str(settings.sasl_password_file)
        else:
            env["MBD_KAFKA_SASL_PASSWORD"] = settings.sasl_password.get_secret_value()
    if settings.ssl_cafile is not None:
        env["MBD_KAFKA_SSL_CAFILE"] = str(settings.ssl_cafile)
    if settings.replication_factor > 1:
        env["MBD_KAFKA_REPLICATION_FACTOR"] = str(settings.replication_factor)
        env["MBD_KAFKA_MIN_INSYNC_REPLICAS"] = str(settings.min_insync)
    return env


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer whose acknowledgements mean "stored by the broker"."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "client_id": "mbd-producer",
        **client_security(settings),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> KafkaConsumer:
    """A consumer of ``topics`` in ``group_id``, starting at the earliest offset it has not seen."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "client_id": "mbd-consumer",
        **client_security(settings),
    }
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def make_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "client_id": "mbd-admin",
        **client_security(settings),
    }
    config.update(overrides)
    return KafkaAdminClient(**config)


def default_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics every mbd deployment has, replicated as ``settings`` say."""
    return [
        replicated_topic(settings, name)
        for name in (settings.readings_topic, settings.predictions_topic)
    ]


def replicated_topic(settings: KafkaSettings, name: str) -> TopicSpec:
    """Topic ``name`` with the partitions, copies and in-sync minimum of ``settings``."""
    return TopicSpec(
        name=name,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        config=(
            ("min.insync.replicas", str(settings.min_insync)),
            ("unclean.leader.election.enable", "false"),
            ("retention.ms", str(round(settings.retention_h * 3_600_000))),
        ),
    )


def ensure_topics(
    settings: KafkaSettings, specs: Iterable[TopicSpec], *, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created."""
    admin = make_admin(settings, bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created = []
        for spec in missing:
            topic = NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=dict(spec.config),
            )
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another service created it between list and create
        if created:
            log.info("created topics %s", created)
        return created
    finally:
        admin.close()


def broker_reachable(settings: KafkaSettings, timeout_s: float = 2.0) -> bool:
    """True when a broker answers a metadata request within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        admin = make_admin(
            settings,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        while time.monotonic() < deadline:
            try:
                admin.describe_cluster()
                return True
            except (KafkaError, OSError):
                time.sleep(0.1)
        return False
    finally:
        admin.close()
