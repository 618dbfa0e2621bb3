"""The lake writer's Delta appends: once per batch and app id, by day, without erased phones."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema

from common.lake import append_once, dates_of, stream_app_id
from common.settings import LakeSettings, StreamSettings
from streaming.schema import OUTPUT
from streaming.sink import LakeWriter
from tests.lake import read_lake, read_table

DAY_1, DAY_2 = 1_795_341_600_000, 1_795_341_600_000 + 86_400_000


def windows(*rows: tuple[str, int]) -> pa.Table:
    starts = pa.array([start for _, start in rows], pa.int64())
    return pa.table({
        "device_id": [device for device, _ in rows], "window_start_ms": starts,
        "date": dates_of(starts),
    })  # fmt: skip


def test_each_day_of_a_batch_is_its_own_partition(tmp_path: Path) -> None:
    assert append_once(
        str(tmp_path), windows(("a", DAY_1), ("b", DAY_2), ("c", DAY_2)), app_id="q", version=7
    )
    lake = read_table(tmp_path)
    assert sorted(lake["device_id"]) == ["a", "b", "c"]
    folders = sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert folders == ["date=2026-11-22", "date=2026-11-23"]


def test_a_replayed_batch_is_skipped_and_a_new_query_is_not(tmp_path: Path) -> None:
    append_once(str(tmp_path), windows(("a", DAY_1)), app_id="q1", version=1)
    append_once(str(tmp_path), windows(("b", DAY_1)), app_id="q1", version=2)
    assert not append_once(str(tmp_path), windows(("b", DAY_1)), app_id="q1", version=2)
    assert not append_once(str(tmp_path), windows(("late", DAY_1)), app_id="q1", version=1)
    # a new checkpoint is a new query whose batch ids start again at 0
    assert append_once(str(tmp_path), windows(("c", DAY_1)), app_id="q2", version=0)
    assert sorted(read_table(tmp_path)["device_id"]) == ["a", "b", "c"]


def test_the_app_id_is_the_query_id_kept_in_the_checkpoint(tmp_path: Path) -> None:
    assert stream_app_id(tmp_path) is None
    (tmp_path / "metadata").write_text(json.dumps({"id": "4f1c"}) + "\n")
    assert stream_app_id(tmp_path) == "mbd-stream-4f1c"


class MicroBatch:
    def __init__(self, rows: list[dict]) -> None:
        self.table = pa.Table.from_pylist(rows, schema=to_arrow_schema(OUTPUT))

    def toArrow(self) -> pa.Table:
        return self.table


def window_row(device: str, start: int) -> dict:
    return {
        "kind": "window",
        "device_id": device,
        "window_start_ms": start,
        "window_end_ms": start + 10_000,
        "tensor": [0.0] * 600,
        "batch_seqs": [1],
    }


def test_the_writer_skips_erased_phones_and_a_replay(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    from common.erasure import ERASURE_SCHEMA

    lake = LakeSettings(uri=tmp_path / "lake")
    settings = StreamSettings(lake=lake, live_scoring=False)
    erased = {name: None for name in ERASURE_SCHEMA.names} | {"device_id": "gone", "state": "done"}
    write_deltalake(
        str(tmp_path / "lake" / "erasures"), pa.Table.from_pylist([erased], schema=ERASURE_SCHEMA)
    )
    writer = LakeWriter(settings, app_id="test")
    batch = MicroBatch([window_row("kept", DAY_1), window_row("gone", DAY_1)])
    writer(batch, 0)
    writer(batch, 0)  # replayed after a crash
    stored, quarantine = read_lake(lake)
    assert list(stored["device_id"]) == ["kept"] and quarantine.empty
    assert writer.totals["erased_skipped"] == 2 and writer.totals["windows"] == 2
