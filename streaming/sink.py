"""Writing each micro-batch's output: windows and quarantine into the Parquet lake, exactly once.

Spark replays a micro-batch after a crash with the same ``batch_id`` and the same input, so
each batch writes into partitions ``date=…/batch_id=N`` with dynamic partition overwrite: a
replay replaces exactly what the first attempt wrote, and nothing is duplicated or lost.
Counts of every batch go to a status file for ``mbd status`` and the API.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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

# (windows of the batch, batch id, how many) → predictions published
Scorer = Callable[[DataFrame, int, int], int]


def _write(df: DataFrame, path: Path, batch_id: int) -> None:
    (
        df.withColumn("batch_id", F.lit(batch_id))
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("date", "batch_id")
        .parquet(str(path))
    )


class LakeWriter:
    """The ``foreachBatch`` function of the streaming query."""

    def __init__(self, settings: StreamSettings, *, scorer: Scorer | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.totals: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    @property
    def windows_path(self) -> Path:
        return self.settings.lake_dir / "windows"

    @property
    def quarantine_path(self) -> Path:
        return self.settings.lake_dir / "quarantine"

    def __call__(self, output: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        output.persist()
        try:
            tally = output.groupBy("kind", "reason").count().toPandas()
            counts = {(r.kind, r.reason): int(r.count) for r in tally.itertuples()}
            windows = sum(n for (kind, _), n in counts.items() if kind == "window")
            quarantined = {
                reason: n for (kind, reason), n in counts.items() if kind == "quarantine"
            }
            duplicates = sum(n for (kind, _), n in counts.items() if kind == "duplicate")
            if windows:
                rows = output.where(F.col("kind") == "window").select(
                    "*",
                    (F.col("window_start_ms") / 1000).cast("timestamp").alias("window_start"),
                    (F.col("window_end_ms") / 1000).cast("timestamp").alias("window_end"),
                )
                _write(
                    rows.select(*WINDOW_COLUMNS, F.to_date("window_start").alias("date")),
                    self.windows_path,
                    batch_id,
                )
            if quarantined:
                event_ms = F.coalesce("window_start_ms", "t", F.lit(int(time.time() * 1000)))
                rows = output.where(F.col("kind") == "quarantine")
                date = F.to_date((event_ms / 1000).cast("timestamp")).alias("date")
                _write(rows.select(*QUARANTINE_COLUMNS, date), self.quarantine_path, batch_id)
            predictions = 0
            if windows and self.scorer is not None:
                scored = output.where(F.col("kind") == "window")
                predictions = self.scorer(scored, batch_id, windows)
        finally:
            output.unpersist()
        self.totals.update(
            {"windows": windows, "duplicates": duplicates, "predictions": predictions}
        )
        self.totals.update({f"quarantined.{k}": v for k, v in quarantined.items()})
        self.last = {
            "batch_id": batch_id,
            "windows": windows,
            "quarantined": quarantined,
            "duplicates": duplicates,
            "predictions": predictions,
            "write_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        log.info("batch %d: %d windows, quarantined %s, %d duplicate batches",
                 batch_id, windows, quarantined or "nothing", duplicates)  # fmt: skip


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1, default=str))
    tmp.replace(path)
