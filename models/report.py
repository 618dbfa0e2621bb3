"""The PNG report stored next to every model version: how it scores and how training went.

Three panels: the confusion matrix on held-out windows (rows normalised to recall, cells
annotated with counts), the loss per round and the validation accuracy per round, one line
per training phase. Drawn on a bare ``matplotlib.figure.Figure`` with the Agg renderer, so
it needs no display and leaves pyplot's global state alone (training may run in threads).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger(__name__)


def _phases(history: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rounds grouped by phase, in the order phases first appear, each sorted by round."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in history:
        grouped.setdefault(str(entry.get("phase", "training")), []).append(entry)
    return {
        phase: sorted(rounds, key=lambda entry: entry.get("round", 0))
        for phase, rounds in grouped.items()
    }


def _series(rounds: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(entry.get("round", i), entry.get(key)) for i, entry in enumerate(rounds, 1)]
    kept = [(int(x), float(y)) for x, y in points if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _say_nothing(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey")
    axes.set_xticks([])
    axes.set_yticks([])


def _draw_confusion(axes: Axes, metrics: dict[str, Any]) -> None:
    axes.set_title("Confusion matrix (held-out, row-normalised)")
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=float)
    if matrix.ndim != 2 or matrix.size == 0 or matrix.shape[0] != matrix.shape[1]:
        _say_nothing(axes, "no confusion matrix")
        return
    n = matrix.shape[0]
    classes = [str(name) for name in metrics.get("classes") or []]
    if len(classes) != n:
        classes = [str(i) for i in range(n)]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for true in range(n):
        for predicted in range(n):
            colour = "white" if share[true, predicted] > 0.5 else "black"
            axes.text(
                predicted, true, f"{int(matrix[true, predicted])}",
                ha="center", va="center", fontsize=8, color=colour,
            )  # fmt: skip
    axes.set_xticks(range(n), classes, rotation=45, ha="right")
    axes.set_yticks(range(n), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")


def _draw_loss(axes: Axes, phases: dict[str, list[dict[str, Any]]]) -> None:
    axes.set_title("Loss per round")
    drawn = False
    for phase, rounds in phases.items():
        x, y = _series(rounds, "loss")
        if x:
            line = axes.plot(x, y, marker=".", label=f"{phase} train")[0]
            drawn = True
            vx, vy = _series(rounds, "val_loss")
            if vx:
                axes.plot(vx, vy, ls="--", color=line.get_color(), label=f"{phase} val")
    if not drawn:
        _say_nothing(axes, "no rounds recorded")
        return
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("loss")
    axes.legend(fontsize=7)


def _draw_accuracy(axes: Axes, phases: dict[str, list[dict[str, Any]]]) -> None:
    axes.set_title("Validation accuracy per round")
    drawn = False
    for phase, rounds in phases.items():
        x, y = _series(rounds, "val_accuracy")
        if x:
            axes.plot(x, y, marker=".", label=phase)
            drawn = True
    if not drawn:
        _say_nothing(axes, "no validation accuracy recorded")
        return
    axes.set_ylim(0.0, 1.0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("accuracy")
    axes.legend(fontsize=7)


def _subtitle(metrics: dict[str, Any]) -> str:
    parts = [
        f"{label} {metrics[key]:.3f}"
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
        if isinstance(metrics.get(key), int | float)
    ]
    if isinstance(metrics.get("count"), int):
        parts.append(f"{metrics['count']} held-out windows")
    return ", ".join(parts)


def draw_report(
    *, metrics: dict[str, Any], history: list[dict[str, Any]], path: Path, title: str
) -> Path:
    """Draw the three-panel report for one model version as a PNG at ``path``.

    ``metrics`` is what :func:`models.evaluation.evaluate` returns (missing parts are shown
    as such); ``history`` holds one dict per training round with ``phase``, ``round``,
    ``loss`` and optionally ``val_loss`` and ``val_accuracy``. Returns ``path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"report path {path} must end in .png")
    figure = Figure(figsize=(16, 5), layout="constrained")
    FigureCanvasAgg(figure)
    confusion, loss, accuracy = figure.subplots(1, 3, width_ratios=[1.2, 1, 1])
    phases = _phases(history)
    _draw_confusion(confusion, metrics)
    _draw_loss(loss, phases)
    _draw_accuracy(accuracy, phases)
    subtitle = _subtitle(metrics)
    figure.suptitle(f"{title}\n{subtitle}" if subtitle else title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    logger.info("model report drawn at %s", path)
    return path
