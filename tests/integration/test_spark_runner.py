"""SparkRunner: the windows reach an executor once; later rounds read no rows from Spark, and a
task on an executor without the windows gets them again."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from models.data import channel_moments
from models.job import _class_counts, _moments
from models.runners import SparkRunner

pytestmark = pytest.mark.integration


def _frame(spark, n: int, dim: int = 6):
    rng = np.random.default_rng(3)
    x = rng.normal(9.0, 3.0, size=(n, dim)).astype(np.float32)
    y = rng.integers(-1, 3, n).astype(np.int32)  # -1: unlabelled
    rows = [
        (f"phone-{i % 5}", 1_000 * i, t.tolist(), int(c))
        for i, (t, c) in enumerate(zip(x, y, strict=True))
    ]
    frame = spark.createDataFrame(
        rows, "device_id string, window_start_ms long, tensor array<float>, y int"
    )
    return frame, x, y


def _counting_passes(runner: SparkRunner) -> list[tuple[bool, frozenset[int]]]:
    """Record every pass the runner makes: (read the windows?, partitions)."""
    passes: list[tuple[bool, frozenset[int]]] = []
    run = runner._run

    def recorded(rows, shipped, partitions, *, read=False):
        passes.append((read, frozenset(partitions)))
        return run(rows, shipped, partitions, read=read)

    runner._run = recorded  # type: ignore[method-assign]
    return passes


def test_every_round_gives_each_partition_its_own_windows(spark) -> None:
    frame, x, y = _frame(spark, 400)
    runner = SparkRunner(frame, partitions=2, input_dim=x.shape[1])
    passes = _counting_passes(runner)
    try:
        rounds = [runner.map_partitions(_moments) for _ in range(8)]
        counts = runner.map_partitions(functools.partial(_class_counts, 3))
        # rounds that find their windows read none of the cached partitions' rows
        placed = (runner.placement.getNumPartitions(), runner.placement.count())
    finally:
        runner.close()

    whole, samples = channel_moments(x)
    for moments in rounds:
        assert [count for _, count in moments] == [count for _, count in rounds[0]]
        assert sum(count for _, count in moments) == samples
        np.testing.assert_allclose(sum(m for m, _ in moments), whole, rtol=1e-5)
    assert np.sum(counts, axis=0).tolist() == np.bincount(y[y >= 0], minlength=3).tolist()
    assert placed == (2, 0)
    # the first round sends the windows; after it, every round finds them on the executor,
    # whichever of its Python workers runs the task
    assert passes[0] == (True, frozenset({0, 1}))
    assert [read for read, _ in passes[1:]] == [False] * len(rounds)


def test_workers_without_the_windows_read_them_again(spark) -> None:
    frame, x, _ = _frame(spark, 300)
    runner = SparkRunner(frame, partitions=3, input_dim=x.shape[1])
    passes = _counting_passes(runner)
    try:
        before = runner.map_partitions(_moments)
        runner.dataset = "another"  # as if every task now ran in a worker that never had them
        after = runner.map_partitions(_moments)
    finally:
        runner.close()

    assert passes == [
        (True, frozenset({0, 1, 2})),
        (False, frozenset({0, 1, 2})),  # sent no windows: nobody has them
        (True, frozenset({0, 1, 2})),
    ]
    for (mine, n), (theirs, m) in zip(after, before, strict=True):
        assert n == m
        np.testing.assert_allclose(mine, theirs)


def test_an_empty_partition_is_answered_every_round(spark) -> None:
    frame, x, _ = _frame(spark, 2)
    runner = SparkRunner(frame, partitions=4, input_dim=x.shape[1])
    try:
        rounds = [runner.map_partitions(_moments) for _ in range(3)]
    finally:
        runner.close()

    for moments in rounds:
        assert len(moments) == 4  # two partitions have no windows
        assert sum(count for _, count in moments) == 2 * x.shape[1] // 3
