"""Hostile records on the readings topic: the stream quarantines each with its reason.

Anyone who can write to ``mbd.readings`` can put any record there, past the gateway's checks.
Each kind below goes through the stream's steps and its per-device step as the job runs them
(Arrow into Python, ``spark_step`` with Spark's own ``GroupState``, then the lake writer), next to
a good batch of another phone: the hostile record must end in the quarantine with its reason and
a bounded raw prefix, make no window and fail nothing, and the good batch must still make its
windows.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql.pandas.types import to_arrow_schema

from common.schema import MAX_EPOCH_MS, MAX_INT64, MIN_EPOCH_MS
from common.settings import LakeSettings, StreamSettings
from streaming.device_windows import spark_step
from streaming.schema import OUTPUT
from streaming.sink import LakeWriter
from streaming.steps import RAW_PREFIX_BYTES, explode_samples, mark_rejects, parse
from tests.streaming.test_spark_step import group_state

pytestmark = pytest.mark.filterwarnings(
    "ignore:The behavior of DataFrame concatenation:FutureWarning"  # all-NA output columns
)
KAFKA_SCHEMA = (
    "value binary, timestamp timestamp, headers array<struct<key:string,value:binary>>, offset long"
)
SETTINGS = StreamSettings(lateness_s=0, live_scoring=False)
NOW_MS = int(time.time() * 1000)
T = (NOW_MS // 5000) * 5000 - 600_000  # ten minutes ago, aligned to the slide
INGEST_MS = T + 30_000
GOOD, HOSTILE = "good-phone", "hostile-phone"
ONE_MB = 1 << 20


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def body(device_id: object = HOSTILE, *, t0: int = T, n: int = 240, **changes: object) -> dict:
    """A batch of ``n`` accelerometer samples at 20 Hz from ``t0``, as the gateway would pass it."""
    end = t0 + n * 50
    sent_at = iso(end) if MIN_EPOCH_MS <= end <= MAX_EPOCH_MS else iso(T + 12_000)
    batch = {
        "device_id": device_id, "batch_seq": 1, "sent_at": sent_at, "label": "walking",
        "accel": [{"t": t0 + i * 50, "x": 0.1, "y": 9.8, "z": 0.2} for i in range(n)], "gps": [],
    }  # fmt: skip
    batch.update(changes)
    return batch


def encoded(batch: dict) -> bytes:
    return json.dumps(batch).encode()


def with_times(literal: str, n: int = 240) -> bytes:
    """A batch whose every sample's ``t`` is the JSON text ``literal`` (json.dumps can't write
    2**63 into a long or a 30-digit number as it is)."""
    samples = ",".join(f'{{"t": {literal}, "x": 0.1, "y": 9.8, "z": 0.2}}' for _ in range(n))
    return (
        f'{{"device_id": "{HOSTILE}", "batch_seq": 1, "sent_at": "{iso(T + 12_000)}", '
        f'"label": "walking", "accel": [{samples}], "gps": []}}'
    ).encode()


def headers(ingest: bytes | None = str(INGEST_MS).encode()) -> list[tuple[str, bytes]]:
    return [] if ingest is None else [("ingest_ms", ingest)]


def stream_output(spark, value: bytes | None, record_headers: list) -> pd.DataFrame:
    """What the job emits for the hostile record and a good batch: every phone drained."""
    good = (encoded(body(GOOD, n=400)), None, headers(), 0)
    records = spark.createDataFrame([good, (value, None, record_headers, 1)], KAFKA_SCHEMA)
    samples = mark_rejects(explode_samples(parse(records, SETTINGS)), SETTINGS)
    # Through Arrow into pandas, as applyInPandasWithState hands each phone's rows to Python.
    rows = samples.drop("device_id").toPandas()
    frames = []
    for device_key, device_rows in rows.groupby("device_key"):
        step = spark_step(SETTINGS, drain=True)
        state = group_state(None, timed_out=False)
        frames += step((device_key,), iter([device_rows.reset_index(drop=True)]), state)
        if state.exists:  # the drain's flush, when the phone's timer fires
            frames += step((device_key,), iter([]), group_state(state.get[0], timed_out=True))
    columns = [f.name for f in OUTPUT.fields]
    frames = [frame for frame in frames if len(frame)]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


class MicroBatch:
    """The one method of a micro-batch's DataFrame that the lake writer calls."""

    def __init__(self, output: pd.DataFrame) -> None:
        self.table = pa.Table.from_pandas(
            output, schema=to_arrow_schema(OUTPUT), preserve_index=False
        )

    def toArrow(self) -> pa.Table:
        return self.table


def written_lake(output: pd.DataFrame, lake: Path) -> LakeWriter:
    """The lake writer's run on that output, as ``foreachBatch`` calls it."""
    writer = LakeWriter(
        SETTINGS.model_copy(update={"lake": LakeSettings(uri=str(lake))}), app_id="hostile-records"
    )
    writer(MicroBatch(output), 0)
    return writer


def assert_quarantined(spark, tmp_path: Path, value: bytes | None, reason: str,
                       record_headers: list | None = None) -> pd.DataFrame:  # fmt: skip
    """The record's rows are quarantine rows with ``reason`` only; the good phone has windows."""
    output = stream_output(spark, value, headers() if record_headers is None else record_headers)
    hostile = output[output["device_id"] != GOOD]
    assert not (hostile["kind"] == "window").any(), hostile[hostile["kind"] == "window"]
    quarantined = hostile[hostile["kind"] == "quarantine"]
    assert len(quarantined) > 0, "the hostile record left no quarantine row"
    assert set(quarantined["reason"]) == {reason}
    assert quarantined["raw"].fillna("").str.len().max() <= RAW_PREFIX_BYTES
    assert quarantined["device_id"].fillna("").str.len().max() <= 64
    good = output[(output["device_id"] == GOOD) & (output["kind"] == "window")]
    assert len(good) >= 2, "the good batch beside it made no windows"
    writer = written_lake(output, tmp_path / "lake")
    assert writer.totals[f"quarantined.{reason}"] == len(quarantined)
    years = {int(p.name[len("date=") :][:4]) for p in (tmp_path / "lake").glob("*/date=*")}
    assert years and all(2001 <= year < 2100 for year in years), years
    return quarantined


# (kind, the record's value, its reason): kinds that before this change made windows, failed
# the micro-batch (and so the job, at every restart), or lost what they held without a reason.
BROKEN_BEFORE = [
    ("event times in 1970, sent_at too",
     encoded(body(t0=1000, sent_at="1970-01-01T00:00:13Z")), "sent_at out of range"),
    ("event times in 1970 without sent_at",
     encoded({k: v for k, v in body(t0=1000).items() if k != "sent_at"}), "missing sent_at"),
    ("event times in 2200, sent_at too",
     encoded(body(t0=7_258_118_400_000, sent_at="2200-01-01T00:00:13Z")), "sent_at out of range"),
    ("event times and sent_at an hour past the ingest time",
     encoded(body(t0=INGEST_MS + 3_600_000)), "sent_at out of range"),
    ("event times past the ingest time's future limit, sent_at within it",
     encoded(body(t0=INGEST_MS + 301_000, sent_at=iso(INGEST_MS + 250_000))),
     "event time out of range"),
    ("event time -2**63", encoded(body(t0=-(2**63), n=1)), "event time out of range"),
    ("event times near 2**63, sent_at in 1900",
     encoded(body(t0=MAX_INT64 - 240 * 50, sent_at="1900-01-01T00:00:00Z")),
     "sent_at out of range"),
    ("event time 2**63", with_times(str(2**63)), "event time out of range"),
    ("event time of 30 digits", with_times("1" * 30), "event time out of range"),
    ("event time with a fraction", with_times(f"{T}.5"), "event time not an integer"),
    ("event time as a string", with_times(f'"{T}"'), "record does not match the wire schema"),
    ("missing event time",
     encoded(body(accel=[{"x": 0.1, "y": 9.8, "z": 0.2}] * 240)), "missing event time"),
    ("batch_seq 2**63", encoded(body(batch_seq=2**63)), "batch_seq out of range"),
    ("batch_seq -1", encoded(body(batch_seq=-1)), "batch_seq out of range"),
    ("batch_seq with a fraction", encoded(body(batch_seq=1.5)), "batch_seq not an integer"),
    ("device_id of 1 MB", encoded(body("x" * ONE_MB, n=20)), "device_id invalid"),
    ("device_id with a path and a snowman", encoded(body("../../etc/☃")), "device_id invalid"),
    ("device_id empty", encoded(body("")), "device_id invalid"),
    ("device_id ending in a newline", encoded(body(f"{HOSTILE}\n")), "device_id invalid"),
    ("device_id of bytes that are not UTF-8",
     encoded(body("phone-XX")).replace(b"phone-XX", b"phone-\xff\xfe"), "device_id invalid"),
    ("label of 1 MB", encoded(body(label="w" * ONE_MB, n=20)), "label unknown"),
    ("label not a class", encoded(body(label="dancing")), "label unknown"),
    ("sent_at unparseable", encoded(body(sent_at="yesterday")), "sent_at invalid"),
    ("100k samples", encoded(body(n=100_000, sent_at=iso(T))), "too many samples"),
    ("no samples", encoded(body(accel=[], gps=[])), "no samples"),
    ("null sample arrays", encoded(body(accel=None, gps=None)), "no samples"),
    ("gps fixes off the globe", encoded(body(accel=[], gps=[
        {"t": T, "lat": 91.0, "lon": 0.0}, {"t": T + 1000, "lat": 1e300, "lon": -1e300}])),
     "gps fix out of range"),
    ("1 MB of JSON garbage", b"{" + b"a" * ONE_MB, "unparseable JSON"),
    ("bytes that are not UTF-8", b"\xff\xfe\x00\x01" * 4096, "unparseable JSON"),
    ("JSON nested 100k deep",
     b'{"device_id": "h", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "unparseable JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "reason"), [(v, r) for _, v, r in BROKEN_BEFORE],
                         ids=[kind for kind, _, _ in BROKEN_BEFORE])  # fmt: skip
def test_a_hostile_record_is_quarantined_with_its_reason(spark, tmp_path, value, reason) -> None:
    assert_quarantined(spark, tmp_path, value, reason)


# The ingest time is the gateway's header; a record may carry any.
BAD_INGEST_HEADERS = [
    ("not a number", b"abc"),
    ("30 digits", b"9" * 30),
    ("in 2099, the event times too", b"4070908800000"),
]


@pytest.mark.parametrize("header", [h for _, h in BAD_INGEST_HEADERS],
                         ids=[kind for kind, _ in BAD_INGEST_HEADERS])  # fmt: skip
def test_an_ingest_time_header_that_cannot_be_right_quarantines_the_record(
    spark, tmp_path, header
) -> None:
    value = encoded(body(t0=4_070_908_800_000 - 60_000, sent_at=iso(4_070_908_800_000 - 40_000)))
    assert_quarantined(spark, tmp_path, value, "ingest time invalid", headers(header))


def test_a_time_out_of_range_is_kept_as_text_not_as_a_time(spark, tmp_path) -> None:
    quarantined = assert_quarantined(
        spark, tmp_path, encoded(body(t0=-(2**63), n=1)), "event time out of range"
    )
    assert quarantined["t"].isna().all()
    assert list(quarantined["raw"]) == [f"t={-(2**63)}"]


# Kinds the stream already quarantined with a reason and no window before this change (some
# reasons are clearer now): one regression test for all of them.
HANDLED_BEFORE = [
    ("event times before 2001, sent_at right", encoded(body(t0=T // 1000, sent_at=iso(T))),
     "event time out of range"),
    ("event times an hour ahead, sent_at right", encoded(body(t0=INGEST_MS + 3_600_000,
                                                              sent_at=iso(INGEST_MS))),
     "far from batch time"),
    ("sent_at in 2999", encoded(body(sent_at="2999-01-01T00:00:00Z")), "sent_at out of range"),
    ("an axis NaN", encoded(body()).replace(b'"x": 0.1', b'"x": NaN'), "axis not finite"),
    ("no value (a key alone)", None, "unparseable JSON"),
    ("an empty value", b"", "unparseable JSON"),
    ("JSON null", b"null", "unparseable JSON"),
    ("a JSON array", b"[1, 2]", "unparseable JSON"),
]  # fmt: skip


def test_kinds_handled_before_are_still_quarantined(spark, tmp_path) -> None:
    for kind, value, reason in HANDLED_BEFORE:
        try:
            assert_quarantined(spark, tmp_path / kind.replace(" ", "-"), value, reason)
        except AssertionError as error:
            raise AssertionError(f"{kind}: {error}") from error
