"""Factories for kafka-python clients, configured the one way mbd relies on.

Producers are idempotent with ``acks=all`` so that an acknowledgement means the record is in the
broker's log; consumers commit explicitly unless a caller says otherwise.
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
    }
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def make_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "client_id": "mbd-admin",
    }
    config.update(overrides)
    return KafkaAdminClient(**config)


def default_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics every mbd deployment has."""
    return [
        TopicSpec(name=settings.readings_topic, partitions=settings.partitions),
        TopicSpec(name=settings.predictions_topic, partitions=settings.partitions),
    ]


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
