"""Held-out figures as metrics.json records them, checked against sums done by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.evaluation import evaluate

CLASSES = ["walking", "jogging", "sitting"]


def test_three_classes_match_hand_computed_figures() -> None:
    # true:  w w w j j s ; predicted: w w j j s s
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])

    metrics = evaluate(y_true, y_pred, CLASSES)

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    walking, jogging, sitting = (metrics["per_class"][name] for name in CLASSES)
    assert (walking["precision"], walking["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert walking["f1"] == pytest.approx(0.8)
    assert (jogging["precision"], jogging["recall"], jogging["f1"]) == pytest.approx(
        (0.5, 0.5, 0.5)
    )
    assert (sitting["precision"], sitting["recall"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert sitting["f1"] == pytest.approx(2 / 3)
    assert [walking["support"], jogging["support"], sitting["support"]] == [3, 2, 1]
    assert metrics["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["count"] == 6
    assert metrics["classes"] == CLASSES


def test_confusion_matrix_rows_are_true_classes_and_columns_predictions() -> None:
    # Two walking windows taken for sitting, one sitting window taken for jogging.
    metrics = evaluate(np.array([0, 0, 2, 1]), np.array([2, 2, 1, 1]), CLASSES)

    assert metrics["confusion_matrix"] == [[0, 0, 2], [0, 1, 0], [0, 1, 0]]


def test_perfect_predictions_score_one_everywhere() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])

    metrics = evaluate(labels, labels.copy(), CLASSES)

    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert metrics[key] == 1.0
    assert all(figures["f1"] == 1.0 for figures in metrics["per_class"].values())


def test_a_class_absent_from_truth_and_predictions_is_left_out_of_macro_means() -> None:
    metrics = evaluate(np.array([0, 1]), np.array([0, 1]), CLASSES)

    assert metrics["macro_f1"] == 1.0
    assert metrics["per_class"]["sitting"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
    }  # fmt: skip


def test_a_class_never_predicted_counts_with_zeros() -> None:
    metrics = evaluate(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), ["walking", "jogging"])

    assert metrics["per_class"]["jogging"]["precision"] == 0.0
    assert metrics["per_class"]["walking"]["precision"] == pytest.approx(0.5)
    assert metrics["macro_precision"] == pytest.approx(0.25)
    assert metrics["macro_recall"] == pytest.approx(0.5)


def test_result_is_plain_json() -> None:
    metrics = evaluate(np.array([0, 1, 2], dtype=np.int32), np.array([0, 2, 2]), CLASSES)

    assert json.loads(json.dumps(metrics)) == metrics


def test_mismatched_lengths_name_both_counts() -> None:
    with pytest.raises(ValueError, match=r"y_true has 3 windows but y_pred has 2"):
        evaluate(np.array([0, 1, 2]), np.array([0, 1]), CLASSES)


@pytest.mark.parametrize("bad", [3, -1])
def test_an_index_out_of_range_is_named(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"y_pred holds class index {bad}, outside 0..2"):
        evaluate(np.array([0, 1]), np.array([0, bad]), CLASSES)


def test_float_labels_and_empty_input_are_refused() -> None:
    with pytest.raises(ValueError, match="integer class indices"):
        evaluate(np.array([0.0, 1.0]), np.array([0, 1]), CLASSES)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(np.array([], dtype=int), np.array([], dtype=int), CLASSES)
