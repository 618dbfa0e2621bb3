"""A stop that interrupts a micro-batch is not reported as an error; other errors still are."""

from __future__ import annotations

import logging

import pytest

from streaming.job import _quiet_interrupted_batches


class JavaError(Exception):
    """Stands for py4j's Py4JJavaError, whose text carries the Java exception and its stack."""


class GoneJvmError(Exception):
    def __str__(self) -> str:
        raise ConnectionError("the JVM has exited")


def report(error: Exception) -> None:
    """Log ``error`` as py4j's callback server does when a Python callback raises."""
    try:
        raise error
    except Exception:
        logging.getLogger("py4j.clientserver").exception(
            "There was an exception while executing the Python Proxy on the Python Side."
        )


def test_only_the_interrupted_batch_goes_unreported(caplog: pytest.LogCaptureFixture) -> None:
    _quiet_interrupted_batches()
    _quiet_interrupted_batches()  # every start asks; one filter is enough
    assert len(logging.getLogger("py4j.clientserver").filters) == 1
    with caplog.at_level(logging.ERROR, logger="py4j.clientserver"):
        report(JavaError("An error occurred while calling o1207.getResult.\n"
                         ": java.lang.InterruptedException\n\tat java.base/..."))  # fmt: skip
        cancelled = (
            "An error occurred while calling o1150.getResult.\n: org.apache.spark.SparkException:"
            " Exception thrown in awaitResult: ...\nCaused by: org.apache.spark.SparkException:"
            " [SPARK_JOB_CANCELLED] Job 5 cancelled Query mbd-stream [id = 35] was stopped"
        )
        report(JavaError(cancelled))
        assert caplog.records == []
        report(JavaError("An error occurred while calling o12.save.\n: java.io.IOException"))
        report(GoneJvmError())
    assert [type(r.exc_info[1]) for r in caplog.records if r.exc_info] == [JavaError, GoneJvmError]
