"""Fixtures of the fault suite (marker ``cluster``): one three-broker Kafka cluster for all of
its tests, whose clients log in with the shared SASL users (as in tests/integration)."""

from __future__ import annotations

import pytest

from tests.cluster.brokers import three_brokers
from tests.conftest import authenticated_kafka_env

authenticated_clients = pytest.fixture(scope="package", autouse=True, name="authenticated_clients")(
    authenticated_kafka_env
)

__all__ = ["three_brokers"]
