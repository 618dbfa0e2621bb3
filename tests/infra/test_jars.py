"""The jar cache: fetched by Maven at the versions the Python side needs, and free to re-check."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from common.settings import JvmSettings
from infra import jars


def test_spark_connector_version_matches_installed_pyspark() -> None:
    pom = (jars.INFRA_DIR / "pom.xml").read_text()
    pinned = re.search(r"<spark.version>([^<]+)</spark.version>", pom)
    assert pinned and pinned.group(1) == version("pyspark")
    connector = list(JvmSettings().spark_jars.glob("spark-sql-kafka-0-10_*.jar"))
    expected = f"spark-sql-kafka-0-10_2.13-{version('pyspark')}.jar"
    assert [jar.name for jar in connector] == [expected]


def test_kafka_broker_is_apache_kafka_4() -> None:
    kafka_jars = [jar.name for jar in JvmSettings().broker_jars.glob("kafka_2.13-*.jar")]
    assert len(kafka_jars) == 1 and kafka_jars[0].startswith("kafka_2.13-4.")


def test_a_current_cache_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    jvm = JvmSettings()
    assert jars.jars_current(jvm)
    monkeypatch.setenv("PATH", "/nonexistent")  # Maven cannot even be found, yet all is well
    assert jars.ensure_jars(jvm) is False


def test_a_changed_pom_makes_the_cache_stale(tmp_path: Path) -> None:
    jvm = JvmSettings(jars_dir=tmp_path)
    (tmp_path / "broker").mkdir()
    (tmp_path / "spark").mkdir()
    (tmp_path / "broker" / "kafka_2.13-4.1.1.jar").touch()
    (tmp_path / "spark" / "spark-sql-kafka-0-10_2.13-4.0.0.jar").touch()
    (tmp_path / jars.STAMP_NAME).write_text("digest-of-an-older-pom\n")
    assert not jars.jars_current(jvm)
    (tmp_path / jars.STAMP_NAME).write_text(jars.pom_digest())
    assert jars.jars_current(jvm)
