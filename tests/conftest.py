"""Fixtures shared by every test package."""

from __future__ import annotations

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
