"""Where partial models train: Spark partitions (the cluster) or this process (a baseline).

A runner holds the training windows and applies a function ``fn(x, y, partition)`` to every
partition's windows, returning the results to the driver. :class:`SparkRunner` keeps the
windows in a persisted DataFrame split into ``partitions``; each task gets its windows as Arrow
batches (``mapInArrow``), turns them into numpy once and keeps them in its Python worker for
the next rounds, and ships the function through a broadcast variable. :class:`LocalRunner` is
the same contract on in-memory arrays, for single-process training and tests.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from models.data import arrow_to_numpy

if TYPE_CHECKING:
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


# Per Python worker: the windows of the partitions this worker has seen, for one dataset only.
_partition_cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def _partition_arrays(
    dataset: str, partition: int, batches: Iterator[pa.RecordBatch], input_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    key = (dataset, partition)
    if key not in _partition_cache:
        for old in [k for k in _partition_cache if k[0] != dataset]:
            del _partition_cache[old]
        chunks = [arrow_to_numpy(batch, input_dim) for batch in batches if batch.num_rows]
        if chunks:
            x = np.concatenate([c[0] for c in chunks])
            y = np.concatenate([c[1] for c in chunks])
        else:
            x, y = np.zeros((0, input_dim), np.float32), np.zeros(0, np.int32)
        _partition_cache[key] = (x, y)
    else:
        for _ in batches:  # drain unread input, or Spark will not reuse this worker
            pass
    return _partition_cache[key]


RESULT_SCHEMA = "partition int, result binary"


class SparkRunner:
    """Training windows spread over ``partitions`` Spark partitions, persisted between rounds."""

    def __init__(self, windows: DataFrame, *, partitions: int, input_dim: int) -> None:
        from pyspark import StorageLevel

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

    def map_partitions(self, fn: PartitionFn) -> list[Any]:
        spark = self.windows.sparkSession
        shipped = spark.sparkContext.broadcast(fn)
        dataset, input_dim = self.dataset, self.input_dim

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            context = TaskContext.get()
            partition = context.partitionId() if context else 0
            x, y = _partition_arrays(dataset, partition, batches, input_dim)
            result = pickle.dumps(shipped.value(x, y, partition), protocol=5)
            yield pa.RecordBatch.from_pydict(
                {"partition": [partition], "result": [result]},
                schema=pa.schema([("partition", pa.int32()), ("result", pa.binary())]),
            )

        try:
            rows = self.windows.mapInArrow(run, RESULT_SCHEMA).collect()
        finally:
            shipped.destroy()
        return [pickle.loads(row.result) for row in sorted(rows, key=lambda r: r.partition)]

    def close(self) -> None:
        self.windows.unpersist()
