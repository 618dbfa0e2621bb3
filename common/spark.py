"""The one way mbd builds a SparkSession.

It puts Spark's Kafka connector (fetched by infra/pom.xml) on the class path, makes Spark's Python
workers run this very interpreter (the venv's), and takes the master URL from settings, so the
same job runs on ``local[*]`` or a standalone cluster by configuration alone. Two settings cut
fixed costs that every micro-batch pays: the Python workers are forked by
:mod:`common.spark_daemon`, and streaming checkpoints are written through Hadoop's
``FileSystem`` API (see :data:`CHECKPOINT_FILE_MANAGER`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import JvmSettings, SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


# Spark's default checkpoint writer goes through Hadoop's FileContext, whose rename asks for the
# file's link status: without Hadoop's native library (pip's pyspark has none) that forks
# `readlink` for every checkpoint and state file, ~130 processes per drain of the streaming bench.
# The FileSystem-based manager renames with plain Java I/O; Spark uses it wherever FileContext is
# unavailable. Both write a temporary file and rename it into place after checking the target is
# absent; on a local disk neither guards against two queries sharing one checkpoint (one query
# per checkpoint is Spark's rule anyway). `extra_conf` can name another manager.
CHECKPOINT_FILE_MANAGER = (
    "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager"
)

# The driver's threads get a larger stack than Java's 1 MiB. A query stopped during a micro-batch
# interrupts its Python foreachBatch, whose error comes back as a long text (Python's traceback
# with Java's inside). Spark matches that text against a regex to tell an interruption from a
# failure (StreamExecution.isInterruptionException), and java.util.regex recursed deep enough on
# it to overflow the stream thread's stack: the thread died with a StackOverflowError of a
# thousand lines at every stop of a drained streaming bench. With 16 MiB the match ends, and the
# stop is quiet. Java options given in `extra_conf` come after it, so their own -Xss wins.
DRIVER_JAVA_OPTIONS = "-Xss16m"

# Where the driver's RPC and block manager listen when every executor is on this machine: Spark
# binds the machine's address otherwise, open to the network. A master on other hosts needs the
# driver reachable from them, which only its user can say (spark.driver.host in extra_conf).
LOOPBACK_DRIVER = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def executors_on_this_machine(master: str) -> bool:
    """Whether ``master`` runs the executors here: ``local[...]``, or a standalone master on
    loopback (``spark://127.0.0.1:7077``, a ``local-cluster``)."""
    if master.startswith("local"):
        return True
    if not master.startswith("spark://"):
        return False  # yarn, k8s: executors elsewhere
    hosts = [server.rsplit(":", 1)[0] for server in master.removeprefix("spark://").split(",")]
    return all(host in _LOOPBACK_HOSTS for host in hosts)


class MissingJarsError(RuntimeError):
    """The connector jars are not where the settings say; ``make`` or ``mbd setup`` fetches them."""


def connector_jars(jvm: JvmSettings) -> list[Path]:
    jars = sorted(jvm.spark_jars.glob("*.jar"))
    if not any(jar.name.startswith("spark-sql-kafka-0-10") for jar in jars):
        raise MissingJarsError(
            f"no spark-sql-kafka-0-10 jar in {jvm.spark_jars}; run `mbd setup` to fetch it"
        )
    return jars


def spark_conf(settings: SparkSettings, jvm: JvmSettings, app_name: str) -> dict[str, str]:
    """Every configuration value mbd sets on a session, as plain strings (also handy for tests)."""
    python = sys.executable
    conf = {
        "spark.app.name": app_name,
        "spark.master": settings.master,
        "spark.jars": ",".join(str(jar) for jar in connector_jars(jvm)),
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        "spark.executorEnv.PYSPARK_PYTHON": python,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.partitions_for_shuffle),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.daemon.module": "common.spark_daemon",
        "spark.sql.streaming.checkpointFileManagerClass": CHECKPOINT_FILE_MANAGER,
        "spark.driver.memory": settings.driver_memory,
        "spark.executor.memory": settings.executor_memory,
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # The lake's tables (common.lake): Delta's SQL commands and its catalog.
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }
    if executors_on_this_machine(settings.master):
        conf.update(LOOPBACK_DRIVER)
    conf.update(settings.extra_conf)
    given = settings.extra_conf.get("spark.driver.extraJavaOptions", "")
    conf["spark.driver.extraJavaOptions"] = f"{DRIVER_JAVA_OPTIONS} {given}".strip()
    return conf


def with_submitted_master(settings: SparkSettings) -> SparkSettings:
    """``settings`` with the master that ``spark-submit --master`` gave, when spark-submit
    started this process and mbd's own settings name none (``MBD_SPARK_MASTER``, ``--master``).

    Under spark-submit the JVM already runs, and every value the session builder sets wins over
    what was submitted: without this, mbd's default ``local[*]`` would replace the user's master.
    """
    if "master" in settings.model_fields_set or "PYSPARK_GATEWAY_PORT" not in os.environ:
        return settings
    from pyspark import SparkConf, SparkContext

    # Joins the JVM that spark-submit started (what getOrCreate would do next), so that SparkConf
    # reads the properties it was given.
    SparkContext._ensure_initialized()
    submitted = SparkConf().get("spark.master", None)
    return settings.model_copy(update={"master": submitted}) if submitted else settings


def build_spark_session(
    settings: SparkSettings, jvm: JvmSettings, *, app_name: str = "mbd"
) -> SparkSession:
    """Get or create the session for ``settings.master`` (or spark-submit's) with the Kafka
    connector loaded."""
    from pyspark.sql import SparkSession

    settings = with_submitted_master(settings)

    # The driver-side launcher reads these before any conf is seen; they must name this venv.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    builder = SparkSession.builder
    for key, value in spark_conf(settings, jvm, app_name).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
