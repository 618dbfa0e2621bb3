"""The stateless streaming steps on small batch DataFrames with explicit values."""

from __future__ import annotations

import json

from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from common.settings import StreamSettings
from streaming.steps import UNPARSEABLE_KEY, explode_samples, mark_rejects, parse

KAFKA_SCHEMA = (
    "value binary, timestamp timestamp, headers array<struct<key:string,value:binary>>, offset long"
)
T = 1_795_341_600_000
SETTINGS = StreamSettings()


def kafka_rows(spark, *values: bytes, ingest_ms: int = T + 2500):
    headers = [("ingest_ms", str(ingest_ms).encode())]
    rows = [(v, None, headers, offset) for offset, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def batch(seq: int, accel: list[tuple], gps: list[tuple] = ()) -> bytes:
    return json.dumps({
        "device_id": "d1", "batch_seq": seq, "sent_at": "2026-11-22T10:00:02Z", "label": "walking",
        "accel": [{"t": t, "x": x, "y": y, "z": z} for t, x, y, z in accel],
        "gps": [{"t": t, "lat": la, "lon": lo, "acc_m": 5.0} for t, la, lo in gps],
    }).encode()  # fmt: skip


def test_parse_reads_fields_and_names_what_cannot_be_read(spark) -> None:
    good = batch(1, [(T, 0.1, 9.8, 0.2)])
    parsed = parse(kafka_rows(spark, good, b"{broken", b'{"batch_seq": 3}'), SETTINGS)
    rows = {r.parse_error: r for r in parsed.collect()}
    assert rows[None].device_id == "d1" and rows[None].ingest_ms == T + 2500
    assert rows["unparseable JSON"].raw == "{broken"
    assert "missing device_id" in rows


def test_explode_gives_one_row_per_sample_and_keeps_bad_records(spark) -> None:
    value = batch(4, [(T, 0.1, 9.8, 0.2), (T + 50, 0.2, 9.7, 0.3)], [(T, 53.3, -6.2)])
    rows = explode_samples(parse(kafka_rows(spark, value, b"nope"), SETTINGS))
    actual = rows.select("device_id", "batch_seq", "sensor", "t", "x", "lat", "parse_error")
    expected = [
        Row(device_id="d1", batch_seq=4, sensor="accel", t=T, x=0.1, lat=None, parse_error=None),
        Row(device_id="d1", batch_seq=4, sensor="accel", t=T + 50, x=0.2, lat=None,
            parse_error=None),
        Row(device_id="d1", batch_seq=4, sensor="gps", t=T, x=None, lat=53.3, parse_error=None),
        Row(device_id=None, batch_seq=None, sensor="record", t=None, x=None, lat=None,
            parse_error="unparseable JSON"),
    ]  # fmt: skip
    assertDataFrameEqual(actual, expected)


def test_mark_rejects_names_each_dirty_sample(spark) -> None:
    accel = [
        (T, 0.1, 9.8, 0.2),
        (T + 50, None, 9.8, 0.2),  # null axis
        (T + 100, 78.45, 9.8, 0.2),  # saturated
        (T + 150, 0.1, 50.0, 0.2),  # spike against the batch median (9.8)
        (T + 10_000_000, 0.1, 9.8, 0.2),  # hours away from sent_at
        (T + 200, 0.2, 9.9, 0.1),
    ]
    marked = mark_rejects(explode_samples(parse(kafka_rows(spark, batch(1, accel)), SETTINGS)),
                          SETTINGS)  # fmt: skip
    reasons = [r.reject_reason for r in marked.orderBy("t").collect()]
    assert reasons == [None, "null axis", "saturated", "spike", None, "far from batch time"]
    bad = mark_rejects(explode_samples(parse(kafka_rows(spark, b"{"), SETTINGS)), SETTINGS)
    assert [(r.device_key, r.reject_reason) for r in bad.collect()] == [
        (UNPARSEABLE_KEY, "unparseable JSON")
    ]


def test_a_record_without_batch_seq_is_quarantined_whole_not_given_to_its_device(spark) -> None:
    no_seq = json.dumps({"device_id": "d1", "accel": [{"t": T, "x": 0.1, "y": 9.8, "z": 0.2}]})
    marked = mark_rejects(
        explode_samples(parse(kafka_rows(spark, no_seq.encode(), b"[1, 2]"), SETTINGS)), SETTINGS
    )
    rows = sorted((r.device_key, r.device_id, r.sensor, r.reject_reason) for r in marked.collect())
    assert rows == [
        (UNPARSEABLE_KEY, None, "record", "missing batch_seq"),
        (UNPARSEABLE_KEY, None, "record", "unparseable JSON"),
    ]
