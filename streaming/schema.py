"""Spark schemas of what flows through the streaming job."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

ACCEL = StructType([
    StructField("t", LongType()), StructField("x", DoubleType()),
    StructField("y", DoubleType()), StructField("z", DoubleType()),
])  # fmt: skip
GPS = StructType([
    StructField("t", LongType()), StructField("lat", DoubleType()),
    StructField("lon", DoubleType()), StructField("acc_m", DoubleType()),
])  # fmt: skip
BATCH = StructType(
    [
        StructField("device_id", StringType()),
        StructField("batch_seq", LongType()),
        StructField("sent_at", StringType()),
        StructField("label", StringType()),
        StructField("accel", ArrayType(ACCEL)),
        StructField("gps", ArrayType(GPS)),
    ]
)

# One row per sample (accel or gps) or per unparseable record, entering the per-device step.
SAMPLES = StructType(
    [
        StructField("device_key", StringType()),
        StructField("device_id", StringType()),
        StructField("batch_seq", LongType()),
        StructField("sensor", StringType()),
        StructField("t", LongType()),
        StructField("x", DoubleType()),
        StructField("y", DoubleType()),
        StructField("z", DoubleType()),
        StructField("lat", DoubleType()),
        StructField("lon", DoubleType()),
        StructField("label", StringType()),
        StructField("ingest_ms", LongType()),
        StructField("reject_reason", StringType()),
        StructField("raw", StringType()),
    ]
)

# What the per-device step emits: windows, quarantined items, and dropped duplicate batches.
OUTPUT = StructType(
    [
        StructField("kind", StringType()),
        StructField("device_id", StringType()),
        StructField("window_start_ms", LongType()),
        StructField("window_end_ms", LongType()),
        StructField("tensor", ArrayType(FloatType())),
        StructField("label", StringType()),
        StructField("coverage", DoubleType()),
        StructField("samples", IntegerType()),
        StructField("batch_seqs", ArrayType(LongType())),
        StructField("mean_speed_m_s", DoubleType()),
        StructField("distance_m", DoubleType()),
        StructField("ingest_lag_ms", LongType()),
        StructField("reason", StringType()),
        StructField("detail", StringType()),
        StructField("batch_seq", LongType()),
        StructField("t", LongType()),
        StructField("raw", StringType()),
    ]
)

# Per-device state kept by Spark between micro-batches: one compact binary document, base64 text
# (see DeviceState.to_text). A single string column, because PySpark 4.0 cannot hand array columns
# of an existing state back to Python (its pickler fails on them), and a string keeps the state
# schema of checkpoints written before the binary document.
STATE = StructType([StructField("json", StringType())])
