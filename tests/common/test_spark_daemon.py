"""The Python workers' daemon: Spark's archives leave the path where the packages are installed."""

from __future__ import annotations

from pathlib import Path

import pyspark

from common.spark_daemon import is_spark_archive, lean_path

HOME = Path(pyspark.__file__).parent
SPARK_ARCHIVES = [str(HOME / "python" / "lib" / "pyspark.zip"),
                  str(HOME / "python" / "lib" / "py4j-0.10.9.9-src.zip"),
                  str(HOME / "jars" / "spark-core_2.13-4.0.0.jar")]  # fmt: skip


def test_spark_archives_are_told_from_other_path_entries() -> None:
    assert all(is_spark_archive(entry) for entry in SPARK_ARCHIVES)
    assert not is_spark_archive("/usr/lib/python311.zip")
    assert not is_spark_archive(str(HOME.parent))
    assert not is_spark_archive("/tmp/userFiles-1/deps.zip")


def test_the_archives_go_when_pyspark_and_py4j_are_installed() -> None:
    site_packages = str(HOME.parent)
    path = [*SPARK_ARCHIVES, "/tmp/userFiles-1", site_packages]
    assert lean_path(path) == ["/tmp/userFiles-1", site_packages]


def test_archives_of_another_spark_home_stay() -> None:
    site_packages = str(HOME.parent)
    other = ["/opt/spark/python/lib/pyspark.zip", "/opt/spark/python/lib/py4j-0.10.9.9-src.zip",
             "/opt/spark/jars/spark-core_2.13-4.0.0.jar"]  # fmt: skip
    assert lean_path([*other, site_packages]) == [*other, site_packages]


def test_the_path_stays_when_only_the_archives_hold_pyspark(tmp_path: Path) -> None:
    path = [*SPARK_ARCHIVES, str(tmp_path)]
    assert lean_path(path) == path


def test_spark_workers_import_the_installed_pyspark(spark) -> None:
    def where_pyspark_is(_rows):
        import sys

        import pyspark as worker_pyspark

        yield worker_pyspark.__file__, [entry for entry in sys.path if is_spark_archive(entry)]

    [(worker_file, archives)] = (
        spark.sparkContext.parallelize([0], 1).mapPartitions(where_pyspark_is).collect()
    )
    assert worker_file == pyspark.__file__
    assert archives == []
