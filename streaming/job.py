"""Wires the streaming job from its settings: Kafka source → steps → per-device windows → lake.

The one place that calls ``readStream``/``writeStream``; everything it chains is a pure step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.state import GroupStateTimeout

from common.kafka import ensure_topics, replicated_topic, spark_kafka_options
from common.lake import refuse_parquet_lake
from common.settings import StreamSettings
from streaming.device_windows import spark_step
from streaming.schema import OUTPUT, STATE
from streaming.scoring import LiveScorer
from streaming.sink import LakeWriter, Scorer, write_status
from streaming.steps import explode_samples, mark_rejects, parse
from streaming.topic_lag import TopicEnd, batch_offsets, records_behind

log = logging.getLogger(__name__)
QUERY_NAME = "mbd-stream"


def kafka_source(spark: SparkSession, settings: StreamSettings) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings.kafka))
        .option("subscribe", settings.kafka.readings_topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("includeHeaders", "true")
        .option("failOnDataLoss", "true")
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", settings.max_offsets_per_trigger)
    return reader.load()


def windows_from_records(
    records: DataFrame, settings: StreamSettings, *, drain: bool = False
) -> DataFrame:
    """Kafka records → window, quarantine and duplicate rows (``streaming.schema.OUTPUT``)."""
    samples = mark_rejects(explode_samples(parse(records, settings)), settings)
    # The step knows its phone by the key; a column less is a column less to convert per phone.
    return (
        samples.drop("device_id")
        .groupBy("device_key")
        .applyInPandasWithState(
            spark_step(settings, drain=drain),
            outputStructType=OUTPUT,
            stateStructType=STATE,
            outputMode="append",
            timeoutConf=GroupStateTimeout.ProcessingTimeTimeout,
        )
    )


class ProgressStatus(threading.Thread):
    """Writes each micro-batch's progress where `mbd status` and the API read it.

    It polls the query's last progress, one JSON document from the JVM, rather than listening
    with a Python ``StreamingQueryListener``, for which PySpark builds every event from the JVM's
    object field by field over py4j: in an ad-hoc comparison of warm drains of
    ``bench.streaming``'s topic (the third and fourth of a session, two sessions each way) the
    listener's drains took 6.9-8.0 s, the poller's 6.1-7.4 s. The status is written once more
    when the query ends; :func:`stop` and :func:`wait_until_drained` wait for that.

    ``topic_end`` gives the readings topic's end offsets of the partitions it is given (a
    :class:`TopicEnd`), from which the status says how many records the job is behind; without
    it, that figure is None.
    """

    def __init__(
        self, query: StreamingQuery, settings: StreamSettings, writer: LakeWriter,
        *, poll_s: float = 1.0,
        topic_end: Callable[[list[int]], Mapping[int, int]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name=f"progress-status-{query.runId}", daemon=True)
        self.query, self.settings, self.writer, self.poll_s = query, settings, writer, poll_s
        self.topic_end = topic_end
        self._stop_polling = threading.Event()
        self._written: tuple[Any, ...] | None = None

    def run(self) -> None:
        try:
            while not self._stop_polling.wait(self.poll_s):
                if not self._poll():
                    return
            self._poll()
        finally:
            if close := getattr(self.topic_end, "close", None):
                close()

    def _poll(self) -> bool:
        """Write the status if it changed; False once the query has ended (or can't be asked)."""
        try:
            active = self.query.isActive
        except Exception as error:  # the session is gone: nothing more to report
            log.warning("stopped writing the status of query %s: %s", self.query.id, error)
            return False
        try:
            self.write()
        except Exception as error:  # a full disk, a failed call: the next poll tries again
            log.warning("could not write the status of query %s: %s", self.query.id, error)
        return active

    def write(self) -> None:
        progress = self.query.lastProgress
        if not progress:
            return
        written = self.writer.written  # one batch's figures, published in one assignment
        mark = (progress["batchId"], progress["timestamp"], written["last_batch"].get("batch_id"))
        if mark == self._written:
            return
        sources = progress.get("sources") or [{}]
        metrics = sources[0].get("metrics") or {}
        behind = self._records_behind(sources[0].get("endOffset"))
        write_status(self.settings.status_file, {
            "updated_at": time.time(),
            "batch_id": progress["batchId"],
            "input_rows": progress["numInputRows"],
            "input_rows_per_s": progress.get("processedRowsPerSecond"),
            "batch_duration_ms": progress.get("batchDuration"),
            "offsets_behind_latest": metrics.get("maxOffsetsBehindLatest"),
            "records_behind_topic_end": behind,
            **written,
        })  # fmt: skip
        self._written = mark

    def _records_behind(self, batch_end: Any) -> int | None:
        if self.topic_end is None:
            return None
        topic = self.settings.kafka.readings_topic
        try:
            read = batch_offsets(batch_end, topic)
        except ValueError as error:
            log.warning("unreadable end offsets of the batch %r: %s", batch_end, error)
            return None
        if not read:
            return None
        try:
            ends = self.topic_end(sorted(read))
        except Exception as error:  # the broker away: the status goes out without the figure
            log.warning("could not read the end of %s: %s", topic, error)
            return None
        return records_behind(read, ends)

    def finish(self, timeout_s: float = 30.0) -> None:
        """Write the last progress now and stop polling (waiting at most ``timeout_s``)."""
        self._stop_polling.set()
        self.join(timeout_s)


_STATUS: dict[str, ProgressStatus] = {}  # the status thread of each running query, by run id


STOPPED_BATCH_SIGNS = ("java.lang.InterruptedException", "[SPARK_JOB_CANCELLED]")


class _InterruptedBatchFilter(logging.Filter):
    """Drops py4j's report of a micro-batch that a stop interrupted.

    A stop cancels the batch under way: its ``foreachBatch`` call returns to Spark with the
    cancelled job's error (a ``java.lang.InterruptedException``, or ``[SPARK_JOB_CANCELLED]``
    when the cancel reaches the job first), which py4j logs as an ERROR with a traceback. Spark
    then ends the query as stopped and the batch runs again at the next start, so that report
    is how a stop goes, not a failure (a query that fails for real says so in
    ``query.exception()``). py4j may log it after ``query.stop()`` has returned, so the filter
    stays for the life of the process.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        try:  # a Py4JJavaError's text comes from the JVM, which may be gone at exit
            text = "" if error is None else str(error)
        except Exception:  # keep the record when its text cannot be read
            return True
        return not any(sign in text for sign in STOPPED_BATCH_SIGNS)


def _quiet_interrupted_batches() -> None:
    py4j_log = logging.getLogger("py4j.clientserver")
    if not any(isinstance(f, _InterruptedBatchFilter) for f in py4j_log.filters):
        py4j_log.addFilter(_InterruptedBatchFilter())


def start(
    spark: SparkSession,
    settings: StreamSettings,
    *,
    available_now: bool = False,
    scorer: Scorer | None = None,
) -> StreamingQuery:
    """Start the query; with ``available_now`` it drains what Kafka holds and stops.

    Unless ``settings.live_scoring`` is off, windows are scored by the promoted model (the
    ``scorer`` given, or a :class:`LiveScorer` of the settings' registry).
    """
    refuse_parquet_lake(settings.lake)
    if settings.live_scoring and scorer is None:
        predictions = replicated_topic(settings.kafka, settings.kafka.predictions_topic)
        ensure_topics(settings.kafka, [predictions])
        scorer = LiveScorer(settings)
    writer = LakeWriter(settings, scorer=scorer if settings.live_scoring else None)
    _quiet_interrupted_batches()
    stream = windows_from_records(kafka_source(spark, settings), settings, drain=available_now)
    builder = (
        stream.writeStream.queryName(QUERY_NAME)
        .foreachBatch(writer)
        .option("checkpointLocation", str(settings.checkpoint_dir))
    )
    # Spark's availableNow trigger never ends a query with processing-time timeouts (it keeps
    # running batches for them), so draining runs the normal trigger and stops the query once
    # it is drained: see `wait_until_drained`.
    interval = 0.5 if available_now else settings.trigger_s
    query = builder.trigger(processingTime=f"{interval} seconds").start()
    log.info("streaming query %s started", query.id)
    topic_end = TopicEnd(settings.kafka, settings.kafka.readings_topic)
    status = _STATUS[query.runId] = ProgressStatus(query, settings, writer, topic_end=topic_end)
    status.start()
    return query


def drained(progress: dict[str, Any] | None) -> bool:
    """True after a micro-batch that read nothing and left no per-device state behind."""
    if not progress or progress.get("numInputRows", 1) != 0:
        return False
    operators = progress.get("stateOperators") or []
    behind = [(s.get("metrics") or {}).get("maxOffsetsBehindLatest") for s in progress["sources"]]
    # A batch replayed from the offset log after a restart reports no lag at all (None): that
    # says nothing about what is still unread, so only a measured 0 counts as drained.
    return all(op.get("numRowsTotal", 1) == 0 for op in operators) and all(
        b in ("0", 0) for b in behind
    )


def wait_until_drained(query: StreamingQuery, *, poll_s: float = 0.2) -> None:
    """Block until the query has processed everything and flushed every phone, then stop it.

    The status file holds the last batch's progress when this returns.
    """
    last_batch = -1
    while query.isActive:
        progress = query.lastProgress
        if progress and progress["batchId"] != last_batch:
            last_batch = progress["batchId"]
            if drained(progress):
                break
        time.sleep(poll_s)
    stop(query)
    if query.exception() is not None:
        raise query.exception()


def stop(query: StreamingQuery) -> None:
    """Stop the query (if it still runs) and write its last status."""
    query.stop()
    status = _STATUS.pop(query.runId, None)
    if status is not None:
        status.finish()
