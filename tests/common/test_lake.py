"""The lake's tables: converting the Parquet lake of before, status and compaction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from common import lake as tables
from common.settings import LakeSettings
from tests.lake import read_lake

DAY = 1_795_341_600_000


def old_lake(root: Path) -> None:
    """Windows and quarantine as the stream wrote them before Delta: date=…/batch_id=N/."""
    for batch in range(3):
        starts = pa.array([DAY + batch * 5000, DAY + batch * 5000 + 86_400_000], pa.int64())
        windows = pa.table(
            {
                "device_id": [f"phone-{batch}", "phone-x"],
                "window_start_ms": starts,
                "window_start": pa.compute.multiply(starts, 1000).cast(pa.timestamp("us", "UTC")),
                "tensor": pa.array([[0.5] * 6, [1.5] * 6], pa.list_(pa.float32())),
            }
        )
        for day, row in (("2026-11-22", 0), ("2026-11-23", 1)):
            folder = root / "windows" / f"date={day}" / f"batch_id={batch}"
            folder.mkdir(parents=True)
            pq.write_table(
                windows.slice(row, 1),
                folder / "part-00000.parquet",
                use_deprecated_int96_timestamps=True,
            )
    folder = root / "quarantine" / "date=2026-11-22" / "batch_id=1"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"device_id": ["phone-q"], "reason": ["null axis"]}), folder / "part-00000.parquet"
    )


def test_the_stream_is_refused_an_old_lake_until_migrate_converts_it(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    old_lake(root)
    lake = LakeSettings(uri=root)
    with pytest.raises(tables.OldLakeError, match="mbd lake migrate"):
        tables.refuse_parquet_lake(lake)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text(json.dumps({"id": "q-1"}) + "\n")

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cli",
            "lake",
            "migrate",
            "--lake",
            str(root),
            "--checkpoint",
            str(checkpoint),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"converted_rows": {"windows": 6, "quarantine": 1}}
    tables.refuse_parquet_lake(lake)
    windows, quarantine = read_lake(lake)
    assert sorted(windows["device_id"]) == ["phone-0", "phone-1", "phone-2"] + ["phone-x"] * 3
    assert list(quarantine["device_id"]) == ["phone-q"]
    assert "batch_id" not in windows.columns
    assert windows["window_start"].dt.tz is not None
    # The batches already in the lake are the stream's: a replay of batch 2 is not written again.
    assert DeltaTable(tables.table_uri(lake, "windows")).transaction_version("mbd-stream-q-1") == 2
    rows = pa.table({"device_id": ["phone-2"], "date": ["2026-11-22"]})
    assert not tables.append_once(
        tables.table_uri(lake, "windows"), rows, app_id="mbd-stream-q-1", version=2
    )
    assert tables.migrate(lake, checkpoint_dir=checkpoint) == {}  # once only
    assert not list(tmp_path.glob("lake/.*")), "no staged or old folder is left"


def test_status_counts_versions_files_rows_and_compact_merges_small_files(
    tmp_path: Path,
) -> None:
    lake = LakeSettings(uri=tmp_path / "lake", vacuum_retention_h=0)
    uri = tables.table_uri(lake, "windows")
    for batch in range(30):
        rows = pa.table(
            {
                "device_id": ["p"],
                "window_start_ms": pa.array([DAY + batch], pa.int64()),
                "date": ["2026-11-22"],
            }
        )
        tables.append_once(uri, rows, app_id="q", version=batch)
    before = tables.table_status(lake, "windows")
    assert (before.version, before.files, before.rows) == (29, 30, 30)
    assert (before.oldest_window_ms, before.newest_window_ms) == (DAY, DAY + 29)

    done = tables.compact(lake)

    after = tables.table_status(lake, "windows")
    assert after.files == 1 and after.rows == 30 and after.version > before.version
    assert done["windows"]["files_removed"] == 30 and done["windows"]["files_vacuumed"] == 30
    assert len(list((tmp_path / "lake" / "windows").rglob("*.parquet"))) == 1
    status = subprocess.run(
        [sys.executable, "-m", "infra.cli", "lake", "status", "--lake", lake.uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in status.stdout.splitlines()]
    assert [line["name"] for line in lines] == ["windows", "quarantine", "erasures"]
    assert lines[0]["rows"] == 30 and lines[0]["oldest_window_ms"].startswith("2026-11-22")
