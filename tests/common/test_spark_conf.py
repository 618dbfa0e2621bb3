"""The Spark session factory's configuration: connector jars, the venv's Python, the master."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from common.settings import JvmSettings, SparkSettings
from common.spark import MissingJarsError, spark_conf


def test_conf_names_the_connector_jars_this_python_and_the_master() -> None:
    conf = spark_conf(SparkSettings(master="spark://h:7077"), JvmSettings(), "job")
    jars = conf["spark.jars"].split(",")
    assert any("spark-sql-kafka-0-10" in Path(jar).name for jar in jars)
    assert all(Path(jar).is_file() for jar in jars)
    assert conf["spark.pyspark.python"] == sys.executable
    assert conf["spark.executorEnv.PYSPARK_PYTHON"] == sys.executable
    assert conf["spark.master"] == "spark://h:7077"


def test_missing_jars_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(MissingJarsError, match="mbd setup"):
        spark_conf(SparkSettings(), JvmSettings(jars_dir=tmp_path), "job")
