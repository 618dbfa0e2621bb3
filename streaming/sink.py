"""Writing each micro-batch's output: windows and quarantine into the lake's Delta tables, once.

Spark replays a micro-batch after a crash with the same ``batch_id`` and the same input. Each
table's commit carries Delta's application transaction (the query's id, the batch id), and an
append the table already holds is skipped (:func:`common.lake.append_once`): a replay writes
only what its first attempt did not commit, nothing twice.

A micro-batch's output is small (a window per phone every slide, plus quarantined items), so it
is collected to the driver with a single Spark job (:meth:`DataFrame.toArrow`) and everything
else happens there: the counts, both Delta appends and the hand-over to live scoring. Each
further Spark job per micro-batch would cost more to schedule than the work it does, and the
trigger interval is only a few seconds. Rows of erased phones are dropped before anything is
written or scored. Counts of every batch go to a status file for ``mbd status`` and the API.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from common.erasure import ErasedDevices, delete_rows, purge, without_devices
from common.lake import (
    PARTITION_COLUMN,
    QUARANTINE,
    WINDOWS,
    append_once,
    dates_of,
    stream_app_id,
    table_uri,
)
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


class LakeWriter:
    """The ``foreachBatch`` function of the streaming query."""

    def __init__(
        self, settings: StreamSettings, *, scorer: Scorer | None = None, app_id: str | None = None
    ) -> None:
        """``app_id`` names the writer to Delta; unset, it is the query's id (its checkpoint's)."""
        self.settings = settings
        self.scorer = scorer
        self.erased = ErasedDevices(settings.lake)
        self._app_id = app_id
        self.totals: Counter[str] = Counter()
        # The status's view: the last batch and the totals up to it, replaced in one assignment
        # so that a reader on another thread never sees one batch's figures with another's.
        self.written: dict[str, Any] = {"last_batch": {}, "totals": {}}

    @property
    def app_id(self) -> str:
        """Delta's application id of this query's writes (read once the query has started)."""
        if self._app_id is None:
            found = stream_app_id(self.settings.checkpoint_dir)
            if found is None:
                raise RuntimeError(f"no query metadata in {self.settings.checkpoint_dir}")
            self._app_id = found
        return self._app_id

    def _append(self, name: str, rows: pa.Table, event_ms: pa.ChunkedArray, batch_id: int) -> None:
        batch = pa.array(np.full(len(rows), batch_id, np.int64))  # which micro-batch wrote it
        rows = rows.append_column("batch_id", batch).append_column(
            PARTITION_COLUMN, dates_of(event_ms)
        )
        append_once(table_uri(self.settings.lake, name), rows, app_id=self.app_id, version=batch_id)

    def __call__(self, output: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        table = output.toArrow()  # the micro-batch's one Spark job
        erased = self.erased.current()
        before = len(table)
        table = without_devices(table, erased)
        skipped = before - len(table)
        kind = table.column("kind")
        windows = table.filter(pc.equal(kind, "window"))
        quarantine = table.filter(pc.equal(kind, "quarantine"))
        duplicates = int(pc.sum(pc.equal(kind, "duplicate")).as_py() or 0)
        quarantined = Counter(quarantine.column("reason").to_pylist())
        if len(windows):
            rows = windows.append_column(
                "window_start", _timestamp(windows.column("window_start_ms"))
            ).append_column("window_end", _timestamp(windows.column("window_end_ms")))
            self._append(
                WINDOWS, rows.select(WINDOW_COLUMNS), windows.column("window_start_ms"), batch_id
            )
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
            self._append(QUARANTINE, quarantine.select(QUARANTINE_COLUMNS), event_ms, batch_id)
        if late := self._erase_late(erased):
            windows = without_devices(windows, late)
        predictions = 0
        if len(windows) and self.scorer is not None:
            predictions = self.scorer(windows, batch_id, len(windows))
        self.totals.update(
            {
                "windows": len(windows),
                "duplicates": duplicates,
                "predictions": predictions,
                "erased_skipped": skipped,
            }
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

    def _erase_late(self, erased: frozenset[str]) -> frozenset[str]:
        """Delete what this batch wrote of phones erased while it was being written.

        A ``forget`` that logged its phone after this batch read the log, and deleted before
        this batch committed, missed these rows; one that logged after the check below deletes
        after the commit and finds them itself.
        """
        late = self.erased.current() - erased
        if late:
            log.info("phones %s were erased during the batch: deleting their rows", sorted(late))
            delete_rows(self.settings.lake, late, erasure_id="stream-late")
            if self.settings.lake.erasure_grace_h == 0:
                purge(self.settings.lake)
        return late


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1, default=str))
    tmp.replace(path)
