"""The stateless steps of the streaming job, each a pure ``DataFrame -> DataFrame`` function.

``parse`` reads Kafka records against the wire schema, parsing each once (failures keep a prefix
of their raw value and a reason); ``explode_samples`` turns each batch into one row per
accelerometer sample or GPS fix (and one row per record it cannot trust); ``mark_rejects``
names what cleaning must drop: null axes, saturation, spikes against the batch's median, samples
far from the batch's time, times outside the wire's range.
Nothing is filtered here: rejected rows carry ``reject_reason`` to the quarantine.

Anyone who can write to the topic can put any record on it, so a record is held to the same
bounds as the gateway's (``common.schema``, ``StreamSettings.wire``): one that breaks them is
quarantined whole with the reason, never windowed, and no value in it can make a step fail.
Arithmetic on values from a record goes through ``try_*`` functions (Spark's ANSI mode fails the
micro-batch on an overflow, and the same batch again at every restart).
"""

from __future__ import annotations

from typing import cast, get_args

from pydantic import StringConstraints
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from common.schema import HEADER_INGEST_MS, MAX_EPOCH_MS, MIN_EPOCH_MS, DeviceId
from common.settings import StreamSettings
from streaming.schema import BATCH

CORRUPT = "_corrupt_record"
BATCH_OR_CORRUPT = StructType([*BATCH.fields, StructField(CORRUPT, StringType())])
# The batch's fields as text, whatever JSON each holds, and the sample times as text: read only
# for records the schema rejected, to say what is wrong (a 30-digit time is not "unparseable").
_FIELDS_AS_TEXT = StructType(
    [*(StructField(f.name, StringType()) for f in BATCH.fields), StructField(CORRUPT, StringType())]
)
_TIMES_AS_TEXT = ArrayType(StructType([StructField("t", StringType())]))
_PERMISSIVE = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
_INTEGER = r"^-?[0-9]+$"

UNPARSEABLE_KEY = "__unparseable__"
# What the quarantine keeps of a record it could not use: enough to see its device, its seq and
# its first samples; a hostile megabyte is not copied into the lake.
RAW_PREFIX_BYTES = 1024
_DEVICE_ID = next(c for c in get_args(DeviceId)[1:] if isinstance(c, StringConstraints))
_DEVICE_ID_CHARS = cast(int, _DEVICE_ID.max_length)
# Java's `$` also matches before a final newline; the gateway's (Rust) regex does not.
_DEVICE_ID_PATTERN = str(_DEVICE_ID.pattern).removesuffix("$") + r"\z"


def _ingest_ms() -> Column:
    """The gateway's ``ingest_ms`` header, else the Kafka record's timestamp (null: unreadable)."""
    headers = F.filter(F.col("headers"), lambda h: h["key"] == HEADER_INGEST_MS)
    header = F.try_element_at(headers, F.lit(1))["value"]
    return F.when(header.isNotNull(), header.cast("string").try_cast("long")).otherwise(
        F.unix_millis(F.col("timestamp"))
    )


def _integer_too_big(text: Column) -> Column:
    return text.rlike(_INTEGER) & text.try_cast("long").isNull()


def _not_integer(text: Column) -> Column:
    return text.isNotNull() & ~text.rlike(_INTEGER)


def _schema_error(text: Column) -> Column:
    """Why a record the batch schema rejected is wrong: not JSON, or which field breaks it."""
    fields = F.from_json(text, _FIELDS_AS_TEXT, _PERMISSIVE)
    seq = fields["batch_seq"]
    times = F.concat(*(F.coalesce(F.from_json(fields[name], _TIMES_AS_TEXT), F.array())
                       for name in ("accel", "gps")))  # fmt: skip
    return (
        F.when(fields.isNull() | fields[CORRUPT].isNotNull(), F.lit("unparseable JSON"))
        .when(_integer_too_big(seq), F.lit("batch_seq out of range"))
        .when(_not_integer(seq), F.lit("batch_seq not an integer"))
        .when(F.exists(times, lambda s: _integer_too_big(s["t"])), F.lit("event time out of range"))
        .when(F.exists(times, lambda s: _not_integer(s["t"])), F.lit("event time not an integer"))
        .otherwise(F.lit("record does not match the wire schema"))
    )


def _record_error(settings: StreamSettings) -> Column:
    """Null for a record that can be trusted; else the first reason it cannot be."""
    wire = settings.wire
    batch, ingest_ms, sent_at_ms = F.col("batch"), F.col("ingest_ms"), F.col("sent_at_ms")
    device_id, seq, label = batch["device_id"], batch["batch_seq"], batch["label"]
    now_ms = F.unix_millis(F.current_timestamp())  # a micro-batch's own time, kept for replays
    n_accel = F.size(F.coalesce(batch["accel"], F.array()))
    n_gps = F.size(F.coalesce(batch["gps"], F.array()))
    latest_ms = F.try_add(ingest_ms, F.lit(wire.max_future_ms))
    ingest_ok = ingest_ms.between(MIN_EPOCH_MS, MAX_EPOCH_MS) & (
        ingest_ms <= F.try_add(now_ms, F.lit(wire.max_future_ms))
    )
    device_id_ok = (F.length(device_id) <= _DEVICE_ID_CHARS) & device_id.rlike(_DEVICE_ID_PATTERN)
    sent_at_ok = sent_at_ms.between(MIN_EPOCH_MS, F.least(latest_ms, F.lit(MAX_EPOCH_MS)))
    too_many = (n_accel > wire.max_accel_samples) | (n_gps > wire.max_gps_fixes)
    return (
        F.when(batch.isNull() | batch[CORRUPT].isNotNull(), _schema_error(F.col("value")))
        .when(ingest_ms.isNull() | ~ingest_ok, F.lit("ingest time invalid"))
        .when(device_id.isNull(), F.lit("missing device_id"))
        .when(~device_id_ok, F.lit("device_id invalid"))
        .when(seq.isNull(), F.lit("missing batch_seq"))
        .when(seq < 0, F.lit("batch_seq out of range"))
        .when(batch["sent_at"].isNull(), F.lit("missing sent_at"))
        .when(sent_at_ms.isNull(), F.lit("sent_at invalid"))
        .when(~sent_at_ok, F.lit("sent_at out of range"))
        .when(label.isNotNull() & ~label.isin(*wire.classes), F.lit("label unknown"))
        .when(too_many, F.lit("too many samples"))
        .when(n_accel + n_gps == 0, F.lit("no samples"))
    )


def parse(records: DataFrame, settings: StreamSettings) -> DataFrame:
    """Kafka rows (value, timestamp, headers) → batch fields, ``ingest_ms``, ``sent_at_ms``,
    ``parse_error`` (null for a record that can be trusted) and ``raw`` (a prefix of the value)."""
    text = F.col("value").cast("string")
    # Malformed JSON leaves its text in the corrupt-record field: one parse tells both apart.
    parsed = F.from_json(text, BATCH_OR_CORRUPT, _PERMISSIVE)
    # Valid UTF-8 whatever the bytes were: the raw text travels to Python through Arrow.
    raw = F.make_valid_utf8(F.substring(F.col("value"), 1, RAW_PREFIX_BYTES).cast("string"))
    sent_at_ms = F.unix_millis(F.col("batch.sent_at").try_cast("timestamp"))
    fields = [f"batch.{name}" for name in BATCH.fieldNames()]
    return (
        records.select(parsed.alias("batch"), text.alias("value"), raw.alias("raw"),
                       _ingest_ms().alias("ingest_ms"), F.col("offset").alias("record_offset"))
        .withColumn("sent_at_ms", sent_at_ms)
        .select(*fields, "raw", "ingest_ms", "sent_at_ms",
                _record_error(settings).alias("parse_error"), "record_offset")
    )  # fmt: skip


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
    """One row per sample: ``sensor`` is accel or gps; untrusted records stay one row each.

    One generator over sample positions (accelerometer first, then GPS) rather than a union of
    good and bad records: a union would read and parse every Kafka record twice.
    """
    accel, gps = F.coalesce(F.col("accel"), F.array()), F.coalesce(F.col("gps"), F.array())
    good = F.col("parse_error").isNull()
    n_accel = F.size(accel)
    count = F.when(good, n_accel + F.size(gps)).otherwise(F.lit(1))  # a good one has samples
    i = F.col("_i")
    is_accel, is_gps = good & (i < n_accel), good & (i >= n_accel)
    a, g = F.try_element_at(accel, i + 1), F.try_element_at(gps, i - n_accel + 1)
    return (
        _with_medians(batches)
        .select("*", F.explode(F.sequence(F.lit(0), count - 1)).alias("_i"))
        .select(
            *(F.when(good, F.col(c)).alias(c) for c in ("device_id", "batch_seq", "label")),
            "ingest_ms", "record_offset", F.when(good, F.col("sent_at_ms")).alias("sent_at_ms"),
            *(F.when(good, F.col(f"median_{axis}")).alias(f"median_{axis}") for axis in "xyz"),
            F.when(is_accel, F.lit("accel")).when(is_gps, F.lit("gps"))
            .otherwise(F.lit("record")).alias("sensor"),
            F.when(is_accel, a["t"]).when(is_gps, g["t"]).alias("t"),
            *(F.when(is_accel, a[axis]).alias(axis) for axis in "xyz"),
            F.when(is_gps, g["lat"]).alias("lat"), F.when(is_gps, g["lon"]).alias("lon"),
            F.when(~good, F.col("raw")).alias("raw"), "parse_error",
        )
    )  # fmt: skip


def _not_finite(value: Column) -> Column:
    return F.isnan(value) | (F.abs(value) == float("inf"))


def mark_rejects(samples: DataFrame, settings: StreamSettings) -> DataFrame:
    """Add ``reject_reason`` (null when clean) and ``device_key`` for the per-device step.

    A time outside the wire's range leaves ``t`` null and goes to ``raw`` as ``t=…``: no step
    after this one sees a time that is not a plausible epoch millisecond.
    """
    axes = [F.col(axis) for axis in "xyz"]
    accel, gps = F.col("sensor") == "accel", F.col("sensor") == "gps"
    t, sent_at_ms = F.col("t"), F.col("sent_at_ms")
    lat, lon = F.col("lat"), F.col("lon")
    saturated = F.greatest(*(F.abs(axis) for axis in axes)) >= settings.saturation_m_s2
    spike = (
        F.greatest(*(F.abs(F.col(axis) - F.col(f"median_{axis}")) for axis in "xyz"))
        > settings.spike_m_s2
    )
    not_finite = _not_finite(axes[0]) | _not_finite(axes[1]) | _not_finite(axes[2])
    skew_ms = F.lit(int(settings.max_batch_skew_s * 1000))
    far = (t > F.try_add(sent_at_ms, skew_ms)) | (t < F.try_subtract(sent_at_ms, skew_ms))
    in_range = t.between(MIN_EPOCH_MS, MAX_EPOCH_MS)
    ahead = t > F.try_add(F.col("ingest_ms"), F.lit(settings.wire.max_future_ms))
    # NaN is above every number in Spark's order, so a NaN coordinate is out of range too.
    bad_fix = lat.isNull() | lon.isNull() | (F.abs(lat) > 90.0) | (F.abs(lon) > 180.0)
    reason = (
        F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
        .when(t.isNull(), F.lit("missing event time"))
        .when(~in_range, F.lit("event time out of range"))
        .when(accel & (axes[0].isNull() | axes[1].isNull() | axes[2].isNull()), F.lit("null axis"))
        .when(accel & not_finite, F.lit("axis not finite"))
        .when(accel & saturated, F.lit("saturated"))
        .when(accel & spike, F.lit("spike"))
        .when(gps & bad_fix, F.lit("gps fix out of range"))
        .when(sent_at_ms.isNotNull() & far, F.lit("far from batch time"))
        .when(ahead, F.lit("event time out of range"))
    )
    raw = F.when(F.col("parse_error").isNotNull(), F.col("raw")).when(
        t.isNotNull() & ~in_range, F.concat(F.lit("t="), t.cast("string"))
    )
    return samples.select(
        F.coalesce(F.col("device_id"), F.lit(UNPARSEABLE_KEY)).alias("device_key"),
        "device_id", "batch_seq", "sensor", F.when(in_range, t).alias("t"), "x", "y", "z",
        "lat", "lon", "label", "ingest_ms", "record_offset", reason.alias("reject_reason"),
        raw.alias("raw"),
    )  # fmt: skip
