"""The PNG report stored with each model version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.evaluation import evaluate
from models.report import draw_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history() -> list[dict]:
    rounds = [
        {"phase": phase, "round": r, "loss": 1.0 / r, "val_loss": 1.2 / r, "val_accuracy": None}
        for phase in ("pretrain-1", "pretrain-2")
        for r in range(1, 4)
    ]
    rounds += [
        {"phase": "finetune", "round": r, "loss": 0.9 / r, "val_loss": 1.0 / r,
         "val_accuracy": 0.5 + 0.1 * r}
        for r in range(1, 5)
    ]  # fmt: skip
    return rounds


def test_report_is_a_png_of_plausible_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 6, size=200))
    classes = ["walking", "jogging", "upstairs", "downstairs", "sitting", "standing"]
    metrics = evaluate(y_true, y_pred, classes)

    path = draw_report(
        metrics=metrics, history=_history(), path=tmp_path / "v1" / "report.png", title="v1"
    )

    assert path == tmp_path / "v1" / "report.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 20_000 < len(data) < 2_000_000


def test_empty_history_and_metrics_still_draw(tmp_path: Path) -> None:
    path = draw_report(metrics={}, history=[], path=tmp_path / "report.png", title="nothing yet")

    assert path.read_bytes().startswith(PNG_MAGIC)


def test_report_path_must_be_png(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"report\.jpg must end in \.png"):
        draw_report(metrics={}, history=[], path=tmp_path / "report.jpg", title="x")
