"""What `mbd models list|show|promote|rollback` do and print, apart from argument parsing.

``infra/cli.py`` builds the :class:`~models.registry.Registry` from settings and prints the
text returned here. The figures come from each version's ``metrics.json`` as the trainer
(:mod:`models.job`) writes it: :func:`models.evaluation.evaluate`'s keys plus ``created_at``,
``data`` (window and device counts, e.g. ``train_windows``), ``timings`` and ``gate``;
figures a version lacks show as ``-`` or are left out.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

from models.registry import ModelVersion, Registry, RegistryError

logger = logging.getLogger(__name__)

Action = Literal["list", "show", "promote", "rollback"]

_SCALAR = r'(?:[-+\d.eE]+|"[^"\\\n]*")'
_FLAT_LIST = re.compile(rf"\[\n\s+({_SCALAR}(?:,\n\s+{_SCALAR})*)\n\s+\]")


def version_number(text: str) -> int:
    """``3`` or ``v3`` → 3 (an argparse ``type``)."""
    match = re.fullmatch(r"v?(\d+)", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a model version like 3 or v3")
    return int(match.group(1))


def trained_windows(metrics: dict[str, Any]) -> int | None:
    """How many windows the model was trained on, if the trainer recorded it."""
    for group in ("data", "counts"):
        counts = metrics.get(group)
        if isinstance(counts, dict) and isinstance(counts.get("train_windows"), int):
            return int(counts["train_windows"])
    value = metrics.get("train_windows")
    return value if isinstance(value, int) else None


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def format_versions(versions: list[ModelVersion], *, current: int | None) -> str:
    """A table of versions, oldest first; ``*`` marks the promoted one."""
    if not versions:
        return "no model versions yet"
    header = ("", "VERSION", "CREATED", "MACRO-F1", "ACCURACY", "WINDOWS")
    rows = [header]
    for version in versions:
        windows = trained_windows(version.metrics)
        rows.append(
            (
                "*" if version.version == current else "",
                version.name,
                version.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                _figure(version.metrics.get("macro_f1")),
                _figure(version.metrics.get("accuracy")),
                "-" if windows is None else str(windows),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def version_summary(version: ModelVersion, *, current: int | None) -> dict[str, Any]:
    """The figures of one version that `mbd models show` prints, as plain JSON."""
    metrics = version.metrics
    summary: dict[str, Any] = {
        "version": version.version,
        "current": version.version == current,
        "created_at": version.created_at.isoformat(timespec="seconds"),
        "path": str(version.path),
    }
    for key in (
        "accuracy", "macro_precision", "macro_recall", "macro_f1", "count", "classes",
        "per_class", "confusion_matrix", "data", "counts", "timings", "gate",
    ):  # fmt: skip
        if key in metrics:
            summary[key] = metrics[key]
    summary["report"] = str(version.report_path) if version.report_path.is_file() else None
    return summary


def format_version(version: ModelVersion, *, current: int | None) -> str:
    """:func:`version_summary` as indented JSON with each list of scalars on one line."""
    text = json.dumps(version_summary(version, current=current), indent=2, ensure_ascii=False)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)


def _compared(registry: Registry, chosen: ModelVersion, previous: int | None) -> str:
    """Both macro-F1 figures, each from its own metrics.json (held-out sets may differ)."""
    if previous is None or previous == chosen.version:
        return ""
    try:
        incumbent = registry.get(previous).macro_f1
    except RegistryError:
        return f" (was v{previous})"
    return f" (macro-F1 {_figure(chosen.macro_f1)}; was v{previous} with {_figure(incumbent)})"


def run_models_command(
    registry: Registry, *, action: Action, version: int | None = None, reason: str | None = None
) -> str:
    """Do one `mbd models` action and return what to print; RegistryError if it cannot."""
    if action == "list":
        return format_versions(registry.versions(), current=registry.current_version())
    if action == "show":
        current = registry.current_version()
        wanted = current if version is None else version
        if wanted is None:
            raise RegistryError(f"no model is promoted in {registry.root}; name a VERSION to show")
        return format_version(registry.get(wanted), current=current)
    previous = registry.current_version()
    if action == "promote":
        if version is None:
            raise ValueError("promote needs a VERSION")
        chosen = registry.promote(version, reason=reason or "promoted by hand with mbd models")
        note = _compared(registry, chosen, previous)
        return f"promoted {chosen.name}{note}; {registry.current_file} names {chosen.name}"
    if action == "rollback":
        chosen = registry.rollback(reason=reason or "rolled back by hand with mbd models")
        return f"rolled back from v{previous} to {chosen.name}; {registry.current_file} names it"
    raise ValueError(f"unknown models action {action!r}; known: list, show, promote, rollback")
