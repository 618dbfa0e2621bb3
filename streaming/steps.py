"""The stateless steps of the streaming job, each a pure ``DataFrame -> DataFrame`` function.

``parse`` reads Kafka records against the wire schema (failures keep their raw value and a
reason); ``explode_samples`` turns each batch into one row per accelerometer sample or GPS fix
(and one row per unparseable record); ``mark_rejects`` names what cleaning must drop: null
axes, saturation, spikes against the batch's median, samples far from the batch's time.
Nothing is filtered here: rejected rows carry ``reject_reason`` to the quarantine.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common.settings import StreamSettings
from streaming.schema import BATCH

UNPARSEABLE_KEY = "__unparseable__"


def parse(records: DataFrame) -> DataFrame:
    """Kafka rows (value, timestamp, headers) → batch fields, ``ingest_ms``, ``parse_error``."""
    raw = F.col("value").cast("string")
    ingest_header = F.filter(F.col("headers"), lambda h: h["key"] == "ingest_ms")
    ingest_ms = F.coalesce(
        F.try_element_at(ingest_header, F.lit(1))["value"].cast("string").cast("long"),
        (F.col("timestamp").cast("double") * 1000).cast("long"),
    )
    parsed = F.from_json(raw, BATCH, {"mode": "PERMISSIVE"})
    error = (
        F.when(parsed.isNull() | F.get_json_object(raw, "$").isNull(), F.lit("unparseable JSON"))
        .when(parsed["device_id"].isNull(), F.lit("missing device_id"))
        .when(parsed["batch_seq"].isNull(), F.lit("missing batch_seq"))
    )
    return records.select(
        parsed.alias("batch"), raw.alias("raw"), ingest_ms.alias("ingest_ms"),
        error.alias("parse_error"), F.col("offset").alias("record_offset"),
    ).select("batch.*", "raw", "ingest_ms", "parse_error", "record_offset")  # fmt: skip


def _median(values: Column) -> Column:
    """Median of a numeric array, ignoring nulls (null for an empty array)."""
    present = F.sort_array(F.array_compact(values))  # no lambdas: compiled, not interpreted
    n = F.size(present)
    return F.when(n > 0, F.try_element_at(present, ((n + 1) / 2).cast("int")))


def explode_samples(batches: DataFrame) -> DataFrame:
    """One row per sample: ``sensor`` is accel or gps; unparseable records stay one row each."""
    accel = F.transform(
        F.coalesce(F.col("accel"), F.array()),
        lambda a: F.struct(
            F.lit("accel").alias("sensor"), a["t"].alias("t"), a["x"].alias("x"),
            a["y"].alias("y"), a["z"].alias("z"),
            F.lit(None).cast("double").alias("lat"), F.lit(None).cast("double").alias("lon"),
        ),
    )  # fmt: skip
    gps = F.transform(
        F.coalesce(F.col("gps"), F.array()),
        lambda g: F.struct(
            F.lit("gps").alias("sensor"), g["t"].alias("t"),
            F.lit(None).cast("double").alias("x"), F.lit(None).cast("double").alias("y"),
            F.lit(None).cast("double").alias("z"), g["lat"].alias("lat"), g["lon"].alias("lon"),
        ),
    )  # fmt: skip
    medians = {axis: _median(F.col("accel")[axis]) for axis in "xyz"}
    sent_at_ms = (F.to_timestamp("sent_at").cast("double") * 1000).cast("long")
    good = (
        batches.where(F.col("parse_error").isNull())
        .select(
            "device_id", "batch_seq", "label", "ingest_ms", "record_offset",
            sent_at_ms.alias("sent_at_ms"),
            *(medians[axis].alias(f"median_{axis}") for axis in "xyz"),
            F.explode(F.concat(accel, gps)).alias("sample"),
        )
        .select("*", "sample.*")
        .drop("sample")
    )  # fmt: skip
    bad = batches.where(F.col("parse_error").isNotNull()).select(
        F.lit(None).cast("string").alias("device_id"), F.lit(None).cast("long").alias("batch_seq"),
        F.lit(None).cast("string").alias("label"), "ingest_ms", "record_offset",
        F.lit(None).cast("long").alias("sent_at_ms"),
        *(F.lit(None).cast("double").alias(f"median_{axis}") for axis in "xyz"),
        F.lit("record").alias("sensor"), F.lit(None).cast("long").alias("t"),
        *(F.lit(None).cast("double").alias(axis) for axis in ("x", "y", "z", "lat", "lon")),
        "raw", "parse_error",
    )  # fmt: skip
    good = good.withColumn("raw", F.lit(None).cast("string")).withColumn(
        "parse_error", F.lit(None).cast("string")
    )
    return good.unionByName(bad)


def mark_rejects(samples: DataFrame, settings: StreamSettings) -> DataFrame:
    """Add ``reject_reason`` (null when clean) and ``device_key`` for the per-device step."""
    axes = [F.col(axis) for axis in "xyz"]
    accel = F.col("sensor") == "accel"
    saturated = F.greatest(*(F.abs(axis) for axis in axes)) >= settings.saturation_m_s2
    spike = (
        F.greatest(*(F.abs(F.col(axis) - F.col(f"median_{axis}")) for axis in "xyz"))
        > settings.spike_m_s2
    )
    far = F.abs(F.col("t") - F.col("sent_at_ms")) > int(settings.max_batch_skew_s * 1000)
    reason = (
        F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
        .when(accel & (axes[0].isNull() | axes[1].isNull() | axes[2].isNull()), F.lit("null axis"))
        .when(accel & saturated, F.lit("saturated"))
        .when(accel & spike, F.lit("spike"))
        .when(F.col("sent_at_ms").isNotNull() & far, F.lit("far from batch time"))
    )
    return samples.select(
        F.coalesce(F.col("device_id"), F.lit(UNPARSEABLE_KEY)).alias("device_key"),
        "device_id", "batch_seq", "sensor", "t", "x", "y", "z", "lat", "lon", "label",
        "ingest_ms", "record_offset", reason.alias("reject_reason"), "raw",
    )  # fmt: skip
