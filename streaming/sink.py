"""Writing each micro-batch's output: windows and quarantine into the Parquet lake, exactly once.

Spark replays a micro-batch after a crash with the same ``batch_id`` and the same input, so
each batch writes into partitions ``date=…/batch_id=N``, replacing whatever an earlier attempt
left there: a replay replaces exactly what the first attempt wrote, nothing is duplicated or lost.

A micro-batch's output is small (a window per phone every slide, plus quarantined items), so it
is collected to the driver with a single Spark job (:meth:`DataFrame.toArrow`) and everything
else happens there: the counts, both Parquet writes and the hand-over to live scoring. Each
further Spark job per micro-batch would cost more to schedule than the work it does, and the
trigger interval is only a few seconds. Counts of every batch go to a status file for
``mbd status`` and the API.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from common.schema import MAX_EPOCH_MS, MIN_EPOCH_MS
from common.settings import StreamSettings

log = logging.getLogger(__name__)

WINDOW_COLUMNS = [
    "device_id", "window_start", "window_end", "window_start_ms", "window_end_ms", "tensor",
    "label", "coverage", "samples", "batch_seqs", "mean_speed_m_s", "distance_m", "ingest_lag_ms",
]  # fmt: skip
QUARANTINE_COLUMNS = [
    "device_id", "reason", "detail", "batch_seq", "t", "window_start_ms", "window_end_ms",
    "batch_seqs", "raw",
]  # fmt: skip

# (windows of the batch as an Arrow table, batch id, how many) → predictions published
Scorer = Callable[[pa.Table, int, int], int]


def _timestamp(ms: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.multiply(ms, 1000).cast(pa.timestamp("us", tz="UTC"))


def _dates(ms: pa.ChunkedArray) -> pa.ChunkedArray:
    """The UTC calendar day of each epoch-millisecond value, as ``YYYY-MM-DD``."""
    return pc.strftime(_timestamp(ms), format="%Y-%m-%d")


def write_partitions(table: pa.Table, dates: pa.ChunkedArray, path: Path, batch_id: int) -> int:
    """Write ``table`` into ``path/date=D/batch_id=N/``, replacing what a prior attempt wrote.

    Each partition's file is written under a hidden name first (readers skip names starting
    with a dot) and renamed into place, so a reader never sees half a file.
    """
    path.mkdir(parents=True, exist_ok=True)
    for date in pc.unique(dates).to_pylist():
        part = table.filter(pc.equal(dates, date))
        staged = path / f".staged-{uuid.uuid4().hex}.parquet"
        pq.write_table(part, staged, use_deprecated_int96_timestamps=True)
        folder = path / f"date={date}" / f"batch_id={batch_id}"
        if folder.exists():  # a replayed micro-batch: its first attempt's output goes
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        os.replace(staged, folder / "part-00000.parquet")
    return len(table)


class LakeWriter:
    """The ``foreachBatch`` function of the streaming query."""

    def __init__(self, settings: StreamSettings, *, scorer: Scorer | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.totals: Counter[str] = Counter()
        # The status's view: the last batch and the totals up to it, replaced in one assignment
        # so that a reader on another thread never sees one batch's figures with another's.
        self.written: dict[str, Any] = {"last_batch": {}, "totals": {}}

    @property
    def windows_path(self) -> Path:
        return self.settings.lake_dir / "windows"

    @property
    def quarantine_path(self) -> Path:
        return self.settings.lake_dir / "quarantine"

    def __call__(self, output: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        table = output.toArrow()  # the micro-batch's one Spark job
        kind = table.column("kind")
        windows = table.filter(pc.equal(kind, "window"))
        quarantine = table.filter(pc.equal(kind, "quarantine"))
        duplicates = int(pc.sum(pc.equal(kind, "duplicate")).as_py() or 0)
        quarantined = Counter(quarantine.column("reason").to_pylist())
        if len(windows):
            rows = windows.append_column(
                "window_start", _timestamp(windows.column("window_start_ms"))
            ).append_column("window_end", _timestamp(windows.column("window_end_ms")))
            dates = _dates(windows.column("window_start_ms"))
            write_partitions(rows.select(WINDOW_COLUMNS), dates, self.windows_path, batch_id)
        if len(quarantine):
            now_ms = pa.scalar(int(time.time() * 1000), pa.int64())
            t = quarantine.column("t")
            # A quarantined time may be anything a record held: only a plausible one names a day.
            plausible = pc.and_(pc.greater_equal(t, MIN_EPOCH_MS), pc.less_equal(t, MAX_EPOCH_MS))
            event_ms = pc.coalesce(
                quarantine.column("window_start_ms"),
                pc.if_else(plausible, t, pa.scalar(None, pa.int64())),
                now_ms,
            )
            rows = quarantine.select(QUARANTINE_COLUMNS)
            write_partitions(rows, _dates(event_ms), self.quarantine_path, batch_id)
        predictions = 0
        if len(windows) and self.scorer is not None:
            predictions = self.scorer(windows, batch_id, len(windows))
        self.totals.update(
            {"windows": len(windows), "duplicates": duplicates, "predictions": predictions}
        )
        self.totals.update({f"quarantined.{k}": v for k, v in quarantined.items()})
        last_batch = {
            "batch_id": batch_id,
            "windows": len(windows),
            "quarantined": dict(quarantined),
            "duplicates": duplicates,
            "predictions": predictions,
            "write_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        self.written = {"last_batch": last_batch, "totals": dict(self.totals)}
        log.info("batch %d: %d windows, quarantined %s, %d duplicate batches",
                 batch_id, len(windows), dict(quarantined) or "nothing", duplicates)  # fmt: skip


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1, default=str))
    tmp.replace(path)
