"""The lake: Delta Lake tables at a path or URI, written exactly once, compacted and vacuumed.

Three tables live under the lake's URI: ``windows`` (training data), ``quarantine`` (what could
not be windowed, with a reason) and ``erasures`` (the append-only erasure log,
:mod:`common.erasure`). The streaming job appends from its driver with delta-rs (the
``deltalake`` package), which writes Arrow without another Spark job per micro-batch; Spark
reads the same tables with Delta's own jars. A micro-batch's commit carries Delta's application
transaction (app id, batch id), and an append whose batch the table already holds is skipped:
that is how a replayed batch after a crash is written once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from common.settings import LakeSettings

log = logging.getLogger(__name__)

WINDOWS, QUARANTINE, ERASURES = "windows", "quarantine", "erasures"
DATA_TABLES = (WINDOWS, QUARANTINE)
PARTITION_COLUMN = "date"


class OldLakeError(RuntimeError):
    """The lake is a folder of plain Parquet from before Delta; ``mbd lake migrate`` converts it."""


def lake_root(lake: LakeSettings) -> str:
    """The lake's URI with a local path made absolute (executors may run in another folder)."""
    if "://" in lake.uri:
        return lake.uri.rstrip("/")
    return str(Path(lake.uri).resolve())


def table_uri(lake: LakeSettings, name: str) -> str:
    return f"{lake_root(lake)}/{name}"


def local_path(uri: str) -> Path | None:
    """The folder of a local table (a path or a ``file://`` URI); None for a remote store."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    return None


def open_table(uri: str, *, version: int | None = None) -> Any | None:
    """The Delta table at ``uri`` (at ``version``), or None where none exists yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    return DeltaTable(uri, version=version)


def refuse_parquet_lake(lake: LakeSettings) -> None:
    """Raise :class:`OldLakeError` when a table's folder holds Parquet but no Delta log."""
    for name in DATA_TABLES:
        folder = local_path(table_uri(lake, name))
        if folder is None or (folder / "_delta_log").exists():
            continue
        if folder.is_dir() and any(folder.glob("date=*")):
            raise OldLakeError(
                f"{folder} is a Parquet lake from before Delta Lake; run "
                f"`mbd lake migrate --lake {lake.uri}` once to convert it"
            )


def append_once(uri: str, table: pa.Table, *, app_id: str, version: int) -> bool:
    """Append ``table`` as transaction ``version`` of ``app_id``; False if the table has it.

    delta-rs records the transaction but does not skip a duplicate by itself, so the table's
    last recorded version for ``app_id`` is checked first (one writer per app id).
    """
    from deltalake import CommitProperties, Transaction, write_deltalake

    existing = open_table(uri)
    if existing is not None:
        done = existing.transaction_version(app_id)
        if done is not None and done >= version:
            log.info("%s already holds batch %d of %s: skipped", uri, version, app_id)
            return False
    write_deltalake(
        uri,
        table,
        mode="append",
        partition_by=[PARTITION_COLUMN],
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
    )
    return True


def stream_app_id(checkpoint_dir: Path) -> str | None:
    """The stream's application id: its query's id, kept in the checkpoint across restarts.

    A new checkpoint is a new query whose batch ids start again at 0, so it gets its own id and
    its batches are not mistaken for those of the old one.
    """
    metadata = checkpoint_dir / "metadata"
    if not metadata.is_file():
        return None
    query_id = json.loads(metadata.read_text().splitlines()[0])["id"]
    return f"mbd-stream-{query_id}"


def dates_of(epoch_ms: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The UTC day of each epoch-millisecond value, ``YYYY-MM-DD``: the tables' partition."""
    stamps = pc.multiply(epoch_ms, 1000).cast(pa.timestamp("us", tz="UTC"))
    return pc.strftime(stamps, format="%Y-%m-%d")


# --- what is in the lake -------------------------------------------------------------------


@dataclass(frozen=True)
class TableStatus:
    name: str
    version: int | None
    files: int = 0
    bytes: int = 0
    rows: int = 0
    oldest_window_ms: int | None = None
    newest_window_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def _files(table: Any) -> pa.Table:
    return pa.table(table.get_add_actions(flatten=True))


def table_status(lake: LakeSettings, name: str) -> TableStatus:
    table = open_table(table_uri(lake, name))
    if table is None:
        return TableStatus(name=name, version=None)
    files = _files(table)
    figures: dict[str, Any] = {
        "files": files.num_rows,
        "bytes": int(pc.sum(files.column("size_bytes")).as_py() or 0),
        "rows": int(pc.sum(files.column("num_records")).as_py() or 0),
    }
    if "min.window_start_ms" in files.column_names:
        figures["oldest_window_ms"] = pc.min(files.column("min.window_start_ms")).as_py()
        figures["newest_window_ms"] = pc.max(files.column("max.window_start_ms")).as_py()
    return TableStatus(name=name, version=table.version(), **figures)


def lake_status(lake: LakeSettings) -> list[TableStatus]:
    return [table_status(lake, name) for name in (*DATA_TABLES, ERASURES)]


# --- keeping it small ------------------------------------------------------------------------


def compact(lake: LakeSettings, names: Iterable[str] = DATA_TABLES) -> dict[str, dict[str, Any]]:
    """Rewrite each table's small files into files of ``compact_target_mb`` (one commit per
    table, so a kill leaves the version before or after it), then vacuum what compaction
    replaced longer than ``vacuum_retention_h`` ago."""
    done: dict[str, dict[str, Any]] = {}
    for name in names:
        table = open_table(table_uri(lake, name))
        if table is None:
            continue
        figures = table.optimize.compact(target_size=lake.compact_target_mb * 1024 * 1024)
        removed = vacuum(table, retention_h=lake.vacuum_retention_h)
        done[name] = {
            "files_added": figures.get("numFilesAdded", 0),
            "files_removed": figures.get("numFilesRemoved", 0),
            "files_vacuumed": len(removed),
            "version": table.version(),
        }
        log.info("compacted %s: %s", name, done[name])
    return done


def vacuum(table: Any, *, retention_h: int) -> list[str]:
    """Delete the files the table's log removed more than ``retention_h`` ago.

    delta-rs's "lite" vacuum: only files a commit removed, never a file no commit names yet,
    which may be a concurrent writer's that is about to be committed.
    """
    table.update_incremental()
    return list(
        table.vacuum(retention_hours=retention_h, dry_run=False, enforce_retention_duration=False)
    )


# --- from the Parquet lake of before --------------------------------------------------------


def migrate(lake: LakeSettings, *, checkpoint_dir: Path | None) -> dict[str, int]:
    """Convert the Parquet lake (``date=…/batch_id=…/``) into Delta tables, once, in place.

    Each table is written whole into a hidden folder and swapped in by two renames; a rerun
    after a kill finishes a swap begun or starts the table again. The stream's batches already
    in the old lake are recorded as its application transaction, so a batch it replays after
    the conversion is not written twice.
    """
    import pyarrow.dataset as ds
    from deltalake import CommitProperties, Transaction, write_deltalake

    app_id = stream_app_id(checkpoint_dir) if checkpoint_dir else None
    converted: dict[str, int] = {}
    for name in DATA_TABLES:
        folder = local_path(table_uri(lake, name))
        if folder is None:
            raise OldLakeError(f"migrate converts a local lake; {lake.uri} is not one")
        staged, old = folder.with_name(f".{name}.delta-staged"), folder.with_name(f".{name}.old")
        if not folder.exists() and staged.exists() and old.exists():
            os.replace(staged, folder)  # killed between the two renames
        if (folder / "_delta_log").exists():
            shutil.rmtree(old, ignore_errors=True)
            continue
        if not folder.exists():
            continue
        shutil.rmtree(staged, ignore_errors=True)
        rows = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        batch_ids = rows.column("batch_id").cast(pa.int64())
        rows = rows.drop_columns(["batch_id", PARTITION_COLUMN]).append_column(
            PARTITION_COLUMN, rows.column(PARTITION_COLUMN).cast(pa.string())
        )
        rows = _microsecond_timestamps(rows)
        transactions = []
        if app_id is not None and len(rows):
            transactions = [Transaction(app_id, int(pc.max(batch_ids).as_py()))]
        write_deltalake(
            str(staged),
            rows,
            partition_by=[PARTITION_COLUMN],
            commit_properties=CommitProperties(app_transactions=transactions),
        )
        os.replace(folder, old)
        os.replace(staged, folder)
        shutil.rmtree(old)
        converted[name] = len(rows)
        log.info("converted %s: %d rows into a Delta table", folder, len(rows))
    return converted


def _microsecond_timestamps(rows: pa.Table) -> pa.Table:
    """The old lake's INT96 timestamps (read as nanoseconds) as Delta's microsecond UTC."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type):
            column = rows.column(index)
            if field.type.tz is None:
                column = pc.assume_timezone(column, "UTC")
            rows = rows.set_column(
                index, field.name, column.cast(pa.timestamp("us", tz="UTC"), safe=False)
            )
    return rows
