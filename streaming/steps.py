"""The stateless steps of the streaming job, each a pure ``DataFrame -> DataFrame`` function.

``parse`` reads Kafka records against the wire schema, parsing each once (failures keep their
raw value and a reason); ``explode_samples`` turns each batch into one row per accelerometer
sample or GPS fix (and one row per unparseable record); ``mark_rejects`` names what cleaning
must drop: null axes, saturation, spikes against the batch's median, samples far from the
batch's time.
Nothing is filtered here: rejected rows carry ``reject_reason`` to the quarantine.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from common.settings import StreamSettings
from streaming.schema import BATCH

CORRUPT = "_corrupt_record"
BATCH_OR_CORRUPT = StructType([*BATCH.fields, StructField(CORRUPT, StringType())])

UNPARSEABLE_KEY = "__unparseable__"


def parse(records: DataFrame) -> DataFrame:
    """Kafka rows (value, timestamp, headers) → batch fields, ``ingest_ms``, ``parse_error``."""
    raw = F.col("value").cast("string")
    ingest_header = F.filter(F.col("headers"), lambda h: h["key"] == "ingest_ms")
    ingest_ms = F.coalesce(
        F.try_element_at(ingest_header, F.lit(1))["value"].cast("string").cast("long"),
        (F.col("timestamp").cast("double") * 1000).cast("long"),
    )
    # Malformed JSON leaves its text in the corrupt-record field: one parse tells both apart.
    parsed = F.from_json(raw, BATCH_OR_CORRUPT, {"mode": "PERMISSIVE",
                                                 "columnNameOfCorruptRecord": CORRUPT})  # fmt: skip
    batch = F.col("batch")
    error = (
        F.when(batch.isNull() | batch[CORRUPT].isNotNull(), F.lit("unparseable JSON"))
        .when(batch["device_id"].isNull(), F.lit("missing device_id"))
        .when(batch["batch_seq"].isNull(), F.lit("missing batch_seq"))
    )
    fields = [f"batch.{name}" for name in BATCH.fieldNames()]
    columns = [parsed.alias("batch"), raw.alias("raw"), ingest_ms.alias("ingest_ms"),
               F.col("offset").alias("record_offset")]  # fmt: skip
    return records.select(*columns).select(
        *fields, "raw", "ingest_ms", error.alias("parse_error"), "record_offset"
    )


def _with_medians(batches: DataFrame) -> DataFrame:
    """Each batch's median of x, y and z (nulls ignored; null for no values), once per batch.

    A separate projection before the explode: inside the exploding one, Spark would sort each
    batch's axes again for every sample of the batch.
    """
    sort = {axis: F.sort_array(F.array_compact(F.col("accel")[axis])) for axis in "xyz"}
    sorted_axes = batches.select("*", *(sort[a].alias(f"_sorted_{a}") for a in "xyz"))
    medians = []
    for axis in "xyz":
        present = F.col(f"_sorted_{axis}")
        n = F.size(present)
        median = F.when(n > 0, F.try_element_at(present, ((n + 1) / 2).cast("int")))
        medians.append(median.alias(f"median_{axis}"))
    return sorted_axes.select(*batches.columns, *medians)


def explode_samples(batches: DataFrame) -> DataFrame:
    """One row per sample: ``sensor`` is accel or gps; unparseable records stay one row each.

    One generator over sample positions (accelerometer first, then GPS) rather than a union of
    good and bad records: a union would read and parse every Kafka record twice.
    """
    accel, gps = F.coalesce(F.col("accel"), F.array()), F.coalesce(F.col("gps"), F.array())
    good = F.col("parse_error").isNull()
    n_accel = F.size(accel)
    count = F.when(good, n_accel + F.size(gps)).otherwise(F.lit(1))
    i = F.col("_i")
    is_accel, is_gps = good & (i < n_accel), good & (i >= n_accel)
    a, g = F.try_element_at(accel, i + 1), F.try_element_at(gps, i - n_accel + 1)
    sent_at_ms = (F.to_timestamp("sent_at").cast("double") * 1000).cast("long")
    return (
        _with_medians(batches)
        .select("*", F.explode(F.sequence(F.lit(0), count - 1)).alias("_i"))
        .select(
            *(F.when(good, F.col(c)).alias(c) for c in ("device_id", "batch_seq", "label")),
            "ingest_ms", "record_offset", F.when(good, sent_at_ms).alias("sent_at_ms"),
            *(F.when(good, F.col(f"median_{axis}")).alias(f"median_{axis}") for axis in "xyz"),
            F.when(is_accel, F.lit("accel")).when(is_gps, F.lit("gps"))
            .otherwise(F.lit("record")).alias("sensor"),
            F.when(is_accel, a["t"]).when(is_gps, g["t"]).alias("t"),
            *(F.when(is_accel, a[axis]).alias(axis) for axis in "xyz"),
            F.when(is_gps, g["lat"]).alias("lat"), F.when(is_gps, g["lon"]).alias("lon"),
            F.when(~good, F.col("raw")).alias("raw"), "parse_error",
        )
    )  # fmt: skip


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
