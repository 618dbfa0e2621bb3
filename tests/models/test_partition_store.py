"""The windows a Spark task keeps for its executor: any Python worker of the executor finds the
windows another one read, and a new dataset's read removes the earlier ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from models import runners


@pytest.fixture(autouse=True)
def executor(tmp_path, monkeypatch):
    """An executor's local directory, as Spark names it to its Python workers, and a Python
    worker that has kept nothing yet."""
    monkeypatch.setenv("SPARK_LOCAL_DIRS", f"{tmp_path / 'a'},{tmp_path / 'b'}")
    monkeypatch.setattr(runners, "_partition_cache", {})
    return tmp_path


def _batches(x: np.ndarray, y: np.ndarray, size: int = 3) -> list[pa.RecordBatch]:
    tensors = pa.array([row.tolist() for row in x], pa.list_(pa.float32()))
    table = pa.table({"tensor": tensors, "y": pa.array(y, pa.int32())})
    return table.to_batches(max_chunksize=size)


def _windows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(-1, 3, n).astype(np.int32)


def _another_worker(monkeypatch) -> None:
    """The next call runs in a Python worker of the same executor that never read the windows."""
    monkeypatch.setattr(runners, "_partition_cache", {})


def test_a_worker_that_never_read_the_windows_finds_them_on_its_executor(monkeypatch) -> None:
    x, y = _windows(10)
    read = runners._partition_arrays("run1", 0, iter(_batches(x, y)), 4, read=True)
    _another_worker(monkeypatch)
    found = runners._partition_arrays("run1", 0, iter([]), 4, read=False)

    assert read is not None and found is not None
    for mine, theirs in zip(found, (x, y), strict=True):
        np.testing.assert_array_equal(mine, theirs)
        assert type(mine) is np.ndarray and mine.dtype == theirs.dtype
    assert runners._partition_arrays("run1", 1, iter([]), 4, read=False) is None


def test_the_store_is_in_the_first_local_directory(executor) -> None:
    x, y = _windows(2)
    runners._partition_arrays("run1", 3, iter(_batches(x, y)), 4, read=True)

    assert [p.name for p in (executor / "a" / "mbd-windows").iterdir()] == ["run1-3"]
    assert not (executor / "b").exists()


def test_a_partition_without_windows_is_kept_as_empty(monkeypatch) -> None:
    runners._partition_arrays("run1", 0, iter([]), 4, read=True)
    _another_worker(monkeypatch)
    x, y = runners._partition_arrays("run1", 0, iter([]), 4, read=False)

    assert x.shape == (0, 4) and x.dtype == np.float32
    assert y.shape == (0,) and y.dtype == np.int32


def test_reading_a_new_dataset_forgets_the_earlier_ones(monkeypatch, executor) -> None:
    x, y = _windows(6)
    runners._partition_arrays("run10", 0, iter(_batches(x, y)), 4, read=True)
    runners._partition_arrays("run10", 1, iter(_batches(x, y)), 4, read=True)
    newer, labels = _windows(5, seed=1)
    runners._partition_arrays("run1", 0, iter(_batches(newer, labels)), 4, read=True)

    assert sorted(p.name for p in (executor / "a" / "mbd-windows").iterdir()) == ["run1-0"]
    assert list(runners._partition_cache) == [("run1", 0)]
    _another_worker(monkeypatch)
    assert runners._partition_arrays("run10", 0, iter([]), 4, read=False) is None


def test_a_second_read_of_a_partition_keeps_the_windows_stored_first(monkeypatch) -> None:
    """Two tasks of one partition (a retried or speculative task) both store: one copy stays."""
    x, y = _windows(4)
    runners._partition_arrays("run1", 0, iter(_batches(x, y)), 4, read=True)
    _another_worker(monkeypatch)
    runners._partition_arrays("run1", 0, iter(_batches(x, y)), 4, read=True)
    _another_worker(monkeypatch)
    found_x, _ = runners._partition_arrays("run1", 0, iter([]), 4, read=False)

    np.testing.assert_array_equal(found_x, x)
    assert [p.name for p in runners._store_dir().iterdir()] == ["run1-0"]


def test_a_store_that_cannot_be_written_leaves_the_reading_worker_its_windows(
    monkeypatch, executor
) -> None:
    (executor / "a").write_text("not a directory")  # the store cannot be made
    x, y = _windows(4)
    read = runners._partition_arrays("run1", 0, iter(_batches(x, y)), 4, read=True)
    again = runners._partition_arrays("run1", 0, iter([]), 4, read=False)
    _another_worker(monkeypatch)

    assert read is not None and again is not None
    np.testing.assert_array_equal(again[0], x)
    assert runners._partition_arrays("run1", 0, iter([]), 4, read=False) is None
