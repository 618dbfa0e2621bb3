"""Parameter averaging: the master model is the sample-weighted mean of the partial models.

Numpy only, so the maths is tested without Spark or TensorFlow. A partial model is the list
of its weight arrays (Keras' ``get_weights()`` order) and the number of samples it learnt from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Weights = list[np.ndarray]


def average_weights(partials: Sequence[tuple[Sequence[np.ndarray], int]]) -> Weights:
    """Σ nᵢ·wᵢ / Σ nᵢ for every weight array; partials that saw no sample count for nothing."""
    counted = [(weights, count) for weights, count in partials if count > 0]
    if any(count < 0 for _, count in partials):
        raise ValueError(f"sample counts must not be negative: {[c for _, c in partials]}")
    if not counted:
        raise ValueError(f"no partial model saw any sample ({len(partials)} partials)")
    shapes = [tuple(np.shape(array)) for array in counted[0][0]]
    for index, (weights, _) in enumerate(counted):
        other = [tuple(np.shape(array)) for array in weights]
        if other != shapes:
            raise ValueError(f"partial {index} has weight shapes {other}, expected {shapes}")
    total = float(sum(count for _, count in counted))
    averaged = []
    for position, shape in enumerate(shapes):
        acc = np.zeros(shape, dtype=np.float64)
        for weights, count in counted:
            acc += np.asarray(weights[position], dtype=np.float64) * (count / total)
        averaged.append(acc.astype(np.asarray(counted[0][0][position]).dtype))
    return averaged


def weighted_mean(values: Sequence[tuple[float, int]]) -> float:
    """Sample-weighted mean of per-partial figures such as the training loss."""
    total = sum(count for _, count in values)
    if total <= 0:
        raise ValueError("no samples to average over")
    return float(sum(value * count for value, count in values) / total)
