"""The parameter-averaging maths, without Spark or TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from models.averaging import average_weights, weighted_mean


def test_average_is_weighted_by_sample_count() -> None:
    a = [np.array([[1.0, 2.0]]), np.array([0.0])]
    b = [np.array([[3.0, 6.0]]), np.array([4.0])]
    averaged = average_weights([(a, 1), (b, 3)])
    np.testing.assert_allclose(averaged[0], [[2.5, 5.0]])
    np.testing.assert_allclose(averaged[1], [3.0])


def test_equal_counts_give_the_plain_mean_and_keep_dtype() -> None:
    rng = np.random.default_rng(0)
    parts = [[rng.normal(size=(4, 3)).astype(np.float32)] for _ in range(5)]
    averaged = average_weights([(p, 10) for p in parts])
    assert averaged[0].dtype == np.float32
    np.testing.assert_allclose(averaged[0], np.mean([p[0] for p in parts], axis=0), rtol=1e-6)


def test_a_partial_without_samples_counts_for_nothing() -> None:
    seen = [np.array([2.0, 2.0])]
    empty = [np.array([100.0, -100.0])]
    np.testing.assert_allclose(average_weights([(seen, 7), (empty, 0)])[0], [2.0, 2.0])


def test_one_partial_is_returned_unchanged() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    np.testing.assert_array_equal(average_weights([(weights, 42)])[0], weights[0])


def test_mismatched_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"partial 1 has weight shapes \[\(3,\)\]"):
        average_weights([([np.zeros(2)], 1), ([np.zeros(3)], 1)])


def test_no_samples_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no partial model saw any sample"):
        average_weights([([np.zeros(2)], 0), ([np.zeros(2)], 0)])
    with pytest.raises(ValueError, match="must not be negative"):
        average_weights([([np.zeros(2)], -1)])


def test_weighted_mean_of_losses() -> None:
    assert weighted_mean([(1.0, 1), (4.0, 2)]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        weighted_mean([(1.0, 0)])
