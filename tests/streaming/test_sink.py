"""Lake partitions of a micro-batch: a replay replaces what its first attempt wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from streaming.sink import write_partitions

DAY_1, DAY_2 = 1_795_341_600_000, 1_795_341_600_000 + 86_400_000


def windows(*rows: tuple[str, int]) -> pa.Table:
    return pa.table({
        "device_id": [device for device, _ in rows],
        "window_start_ms": pa.array([start for _, start in rows], pa.int64()),
    })  # fmt: skip


def write(table: pa.Table, path: Path, batch_id: int) -> None:
    dates = pa.chunked_array([pd.to_datetime(table.column("window_start_ms").to_numpy(),
                                             unit="ms").strftime("%Y-%m-%d")])  # fmt: skip
    write_partitions(table, dates, path, batch_id)


def test_each_day_of_a_batch_gets_its_own_partition(tmp_path: Path) -> None:
    write(windows(("a", DAY_1), ("b", DAY_2), ("c", DAY_2)), tmp_path, batch_id=7)
    lake = pd.read_parquet(tmp_path)
    assert sorted(lake["device_id"]) == ["a", "b", "c"]
    assert set(lake["batch_id"].astype(int)) == {7}
    folders = sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert folders == ["date=2026-11-22/batch_id=7", "date=2026-11-23/batch_id=7"]


def test_a_replayed_batch_replaces_its_first_attempt_and_nothing_else(tmp_path: Path) -> None:
    write(windows(("a", DAY_1)), tmp_path, batch_id=1)
    write(windows(("b", DAY_1), ("old", DAY_1)), tmp_path, batch_id=2)
    write(windows(("b", DAY_1)), tmp_path, batch_id=2)  # the replay after a crash
    lake = pd.read_parquet(tmp_path).sort_values("device_id")
    assert list(lake["device_id"]) == ["a", "b"]
    assert not list(tmp_path.glob(".*")), "no staged file is left behind"
