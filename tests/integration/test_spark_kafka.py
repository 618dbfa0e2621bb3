"""Spark reads the real broker with its own Kafka connector (spark-sql-kafka-0-10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.kafka import spark_kafka_options
from common.settings import KafkaSettings
from tests.integration.test_kafka_broker import RECORDS, produce_numbered

pytestmark = pytest.mark.integration


def test_structured_streaming_reads_every_record(
    spark, kafka_broker: KafkaSettings, fresh_topic: str, tmp_path: Path
) -> None:
    produce_numbered(kafka_broker, fresh_topic, RECORDS)

    stream = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(kafka_broker))
        .option("subscribe", fresh_topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "partition")
    )
    query = (
        stream.writeStream.format("parquet")
        .option("path", str(tmp_path / "sink"))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination(timeout=180)
    finally:
        query.stop()
    assert query.exception() is None

    rows = spark.read.parquet(str(tmp_path / "sink")).collect()
    values = [row.value for row in rows]
    assert len(values) == RECORDS
    assert set(values) == {f"record-{i}" for i in range(RECORDS)}
    assert {row.partition for row in rows} == {0, 1, 2, 3}
