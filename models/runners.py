"""Where partial models train: Spark partitions (the cluster) or this process (a baseline).

A runner holds the training windows and applies a function ``fn(x, y, partition)`` to every
partition's windows, returning the results to the driver. :class:`SparkRunner` keeps the
windows in a persisted DataFrame split into ``partitions`` and runs every round as a plain RDD
job over two views of it, planned once. The first time, a task gets its partition's windows as
Arrow batches, turns them into numpy once, keeps them in its Python worker and writes them to
the executor's local directories, where every Python worker of that executor finds them for the
next rounds (Spark gives a task whichever idle Python worker comes first, so a partition's tasks
do not stay in one). The function reaches the tasks through a broadcast variable. Once a
partition's windows are on an executor, its tasks read no rows from Spark: they scan the cached
partition through a filter no window passes, which only places each task where its partition is
cached. A task on an executor without them (the partition's own was busy) answers so, and those
partitions run again with their windows. :class:`LocalRunner` is the same contract on in-memory
arrays, for single-process training and tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from models.data import arrow_to_numpy

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import DataFrame

PartitionFn = Callable[[np.ndarray, np.ndarray, int], Any]


class Runner(Protocol):
    partitions: int
    count: int  # training windows

    def map_partitions(self, fn: PartitionFn) -> list[Any]: ...

    def close(self) -> None: ...


class LocalRunner:
    """All windows in one partition, trained in this process."""

    partitions = 1

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.count = len(y)

    def map_partitions(self, fn: PartitionFn) -> list[Any]:
        return [fn(self.x, self.y, 0)]

    def close(self) -> None:
        pass


# Per Python worker: the windows of the partitions this worker has used, for one dataset only.
_partition_cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
_STORE = "mbd-windows"  # per executor, in the first of its local directories


def _partition_arrays(
    dataset: str, partition: int, batches: Iterator[pa.RecordBatch], input_dim: int, read: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """The partition's windows: read from ``batches`` when they carry the windows (``read``) and
    kept for this executor's Python workers, else the ones kept (None: this executor has none)."""
    key = (dataset, partition)
    for old in [k for k in _partition_cache if k[0] != dataset]:
        del _partition_cache[old]
    if read:
        _forget_stored(other_than=dataset)
        chunks = [arrow_to_numpy(batch, input_dim) for batch in batches if batch.num_rows]
        if chunks:
            x = np.concatenate([c[0] for c in chunks])
            y = np.concatenate([c[1] for c in chunks])
        else:
            x, y = np.zeros((0, input_dim), np.float32), np.zeros(0, np.int32)
        _store(_stored_path(dataset, partition), x, y)
        _partition_cache[key] = (x, y)
    else:
        _drain(batches)
        if key not in _partition_cache:
            found = _load(_stored_path(dataset, partition))
            if found is not None:
                _partition_cache[key] = found
    return _partition_cache.get(key)


def _store_dir() -> Path:
    """The executor's own scratch space: Spark names its local directories to its Python
    workers, and deletes them when the executor stops (or, with an external shuffle service,
    when the application ends)."""
    local_dirs = os.environ.get("SPARK_LOCAL_DIRS") or tempfile.gettempdir()
    return Path(local_dirs.split(",")[0]) / _STORE


def _stored_path(dataset: str, partition: int) -> Path:
    return _store_dir() / f"{dataset}-{partition}"


def _store(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write the windows as a folder that appears whole (a rename), or is already there. The
    store only saves reads: if it fails (a full disk), this worker keeps its own copy and the
    executor's other workers read the windows again."""
    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        np.save(partial / "x.npy", x)
        np.save(partial / "y.npy", y)
        partial.rename(path)  # fails if another task of this partition stored them first
    except OSError:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored windows, mapped read-only (the executor's workers share the pages), or None."""
    try:
        x, y = (np.load(path / name, mmap_mode="r") for name in ("x.npy", "y.npy"))
    except OSError:  # not stored here, or the store cannot be read
        return None
    return np.asarray(x), np.asarray(y)  # plain arrays on the mapped pages


def _forget_stored(*, other_than: str) -> None:
    """Delete the executor's stored windows of other datasets (earlier runs)."""
    store = _store_dir()
    if store.is_dir():
        for entry in store.iterdir():
            if not entry.name.startswith((f"{other_than}-", f".{other_than}-")):
                shutil.rmtree(entry, ignore_errors=True)


def _drain(batches: Iterator[pa.RecordBatch]) -> None:
    """Read the task's unread input, or Spark will not reuse this worker."""
    for _ in batches:
        pass


def _serialised(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each Arrow batch of windows as one binary value: the batch as an Arrow IPC stream."""
    for batch in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        stream = sink.getvalue()
        offsets = pa.py_buffer(np.array([0, stream.size], np.int32))
        value = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, stream])  # (not copied)
        yield pa.RecordBatch.from_arrays([value], ["batch"])


class SparkRunner:
    """Training windows spread over ``partitions`` Spark partitions, persisted between rounds."""

    def __init__(self, windows: DataFrame, *, partitions: int, input_dim: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        self.partitions = partitions
        self.input_dim = input_dim
        self.dataset = uuid.uuid4().hex
        # In (device, time) order within each partition, so a round's input is reproducible.
        self.windows = (
            windows.select("device_id", "window_start_ms", "tensor", "y")
            .repartition(partitions)
            .sortWithinPartitions("device_id", "window_start_ms")
            .select("tensor", "y")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self.count = self.windows.count()
        self.context = self.windows.sparkSession.sparkContext
        # Rounds are plain RDD jobs over two views of the cached partitions, each planned once:
        # the windows, a row per Arrow batch, and the same partitions with no rows (y is a class
        # or -1), which only places each task where its partition is cached. On a 2-worker
        # cluster a round through a new DataFrame (mapInArrow) cost 0.24-0.37 s beyond its tasks'
        # work against 0.16-0.26 s, and about 0.2 s more of the JVMs' CPU, which the training
        # tasks need. The first read costs more: the JVM pickles the rows of Arrow IPC (2.0-2.3 s
        # against 0.5-0.6 s for 39,000 windows a worker; bench/results/HISTORY.md).
        self.batches = self.windows.mapInArrow(_serialised, "batch binary").rdd
        self.placement = self.windows.select("y").where(F.col("y") < -1).rdd
        self.sent: set[int] = set()  # partitions whose windows some worker has had

    def map_partitions(self, fn: PartitionFn) -> list[Any]:
        shipped = self.context.broadcast(fn)
        try:
            results: dict[int, Any] = {}
            if self.sent:
                results = self._run(self.placement, shipped, sorted(self.sent))
            missing = sorted(set(range(self.partitions)) - results.keys())
            if missing:  # never sent, or their task ran on an executor without them
                results.update(self._run(self.batches, shipped, missing, read=True))
                self.sent.update(missing)
        finally:
            shipped.destroy()
        return [results[p] for p in sorted(results)]

    def _run(
        self, rows: RDD, shipped: Any, partitions: list[int], *, read: bool = False
    ) -> dict[int, Any]:
        """``shipped``'s function on each of these partitions whose worker has its windows, or
        reads them from ``rows`` (``read``); by partition."""
        dataset, input_dim = self.dataset, self.input_dim

        def run(task_rows: Iterator[Any]) -> Iterator[tuple[int, bool, Any]]:
            from pyspark import TaskContext

            context = TaskContext.get()
            partition = context.partitionId() if context else 0
            batches = (
                (batch for row in task_rows for batch in pa.ipc.open_stream(row.batch))
                if read
                else task_rows
            )
            arrays = _partition_arrays(dataset, partition, batches, input_dim, read)
            yield (
                partition,
                arrays is not None,
                None if arrays is None else shipped.value(*arrays, partition),
            )

        done = self.context.runJob(rows, run, partitions)
        return {partition: result for partition, found, result in done if found}

    def close(self) -> None:
        self.windows.unpersist()
