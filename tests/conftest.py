"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.settings import JvmSettings, SparkSettings


@pytest.fixture(scope="session")
def spark():
    """A local Spark session with the Kafka connector, shared by the session."""
    from common.spark import build_spark_session

    session = build_spark_session(
        SparkSettings(master="local[2]", shuffle_partitions=2), JvmSettings(), app_name="mbd-tests"
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def kafka_client_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``MBD_`` variables under which every broker a test starts has the same SASL users, from
    one secrets folder, and every ``KafkaSettings()`` logs in as the client user with them."""
    from infra.broker_auth import client_environment, ensure_credentials

    secrets_dir = tmp_path_factory.mktemp("kafka-secrets")
    ensure_credentials(secrets_dir)
    env = client_environment(port=None, secrets_dir=secrets_dir, authentication=True)
    return env | {"MBD_BROKER_SECRETS_DIR": str(secrets_dir)}


def authenticated_kafka_env(kafka_client_env: dict[str, str]) -> Iterator[None]:
    """Export :func:`kafka_client_env` to the test process (and so to its children) while the
    tests of a package run: a package's conftest makes it an autouse package fixture."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in kafka_client_env.items():
            patch.setenv(name, value)
        yield
