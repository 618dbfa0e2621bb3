"""Classification figures for a model on held-out windows: what ``metrics.json`` records.

Numpy only, so the numbers the promotion gate compares are computed the same way on the
driver, in tests and in benchmarks. Classes are named by index into ``classes``; the
confusion matrix has true classes as rows and predicted classes as columns, in that order.

Macro averages are means over the classes that occur: a class with no true windows and
no predictions says nothing about the model and is left out. A class that has windows but
was never predicted (or was predicted but has no windows) counts with its zeros. Any
ratio whose denominator is zero is 0.0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _class_indices(values: np.ndarray, *, name: str, n_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one class index per window, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = array[(array < 0) | (array >= n_classes)]
    if bad.size:
        raise ValueError(
            f"{name} holds class index {int(bad[0])}, outside 0..{n_classes - 1} "
            f"for {n_classes} classes"
        )
    return array


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are true classes, columns predicted ones."""
    pairs = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1 and the confusion matrix.

    ``y_true`` and ``y_pred`` are integer class indices into ``classes``, one per window.
    The result is plain JSON (floats, ints, lists, dicts), ready for ``metrics.json``.
    """
    names = [str(name) for name in classes]
    if not names:
        raise ValueError("classes is empty; need the name of every class index")
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}")
    n_classes = len(names)
    truth = _class_indices(y_true, name="y_true", n_classes=n_classes)
    predicted = _class_indices(y_pred, name="y_pred", n_classes=n_classes)
    if truth.size != predicted.size:
        raise ValueError(
            f"y_true has {truth.size} windows but y_pred has {predicted.size}; "
            "need one prediction per window"
        )
    if truth.size == 0:
        raise ValueError("nothing to evaluate: y_true and y_pred are empty")

    matrix = confusion_matrix(truth, predicted, n_classes)
    hits = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)

    per_class: dict[str, dict[str, float | int]] = {}
    counted: list[tuple[float, float, float]] = []
    for index, name in enumerate(names):
        precision = _ratio(hits[index], predicted_count[index])
        recall = _ratio(hits[index], support[index])
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(support[index]),
        }
        if support[index] or predicted_count[index]:
            counted.append((precision, recall, f1))
    absent = [name for i, name in enumerate(names) if not support[i] and not predicted_count[i]]
    if absent:
        logger.debug("classes %s have no windows and no predictions: not in macro means", absent)

    macro = np.mean(counted, axis=0) if counted else np.zeros(3)
    return {
        "accuracy": _ratio(hits.sum(), truth.size),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "classes": names,
        "count": int(truth.size),
    }
