"""The Spark session factory's configuration: connector jars, the venv's Python, the master."""

from __future__ import annotations

import os
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


@pytest.mark.parametrize(
    ("master", "expected"),
    [("local[3]", 3), ("local[2,4]", 2), ("local", 1), ("spark://h:7077", 4),
     ("local[*]", os.cpu_count())],
)  # fmt: skip
def test_shuffle_partitions_default_to_the_cores_of_a_local_master(master, expected) -> None:
    assert SparkSettings(master=master).partitions_for_shuffle == expected
    conf = spark_conf(SparkSettings(master=master), JvmSettings(), "job")
    assert conf["spark.sql.shuffle.partitions"] == str(expected)
    assert SparkSettings(master=master, shuffle_partitions=7).partitions_for_shuffle == 7


def test_the_driver_gets_a_larger_thread_stack_and_keeps_java_options_given() -> None:
    assert spark_conf(SparkSettings(), JvmSettings(), "job")["spark.driver.extraJavaOptions"] == (
        "-Xss16m"
    )
    given = SparkSettings(extra_conf={"spark.driver.extraJavaOptions": "-Dx=1 -Xss32m"})
    options = spark_conf(given, JvmSettings(), "job")["spark.driver.extraJavaOptions"].split()
    assert options == ["-Xss16m", "-Dx=1", "-Xss32m"]  # the last -Xss is the one Java takes


@pytest.mark.parametrize(
    ("master", "loopback"),
    [("local[2]", True), ("local", True), ("spark://127.0.0.1:7077", True),
     ("spark://localhost:7077", True), ("spark://spark-master:7077", False), ("yarn", False)],
)  # fmt: skip
def test_the_driver_binds_loopback_when_every_executor_is_on_this_machine(master, loopback) -> None:
    conf = spark_conf(SparkSettings(master=master), JvmSettings(), "job")
    expected = "127.0.0.1" if loopback else None
    assert conf.get("spark.driver.bindAddress") == expected
    assert conf.get("spark.driver.host") == expected
    assert conf["spark.ui.enabled"] == "false"


def test_extra_conf_says_where_the_driver_listens() -> None:
    given = SparkSettings(master="local[2]", extra_conf={"spark.driver.bindAddress": "0.0.0.0"})
    conf = spark_conf(given, JvmSettings(), "job")
    assert conf["spark.driver.bindAddress"] == "0.0.0.0"
    assert conf["spark.driver.host"] == "127.0.0.1"
