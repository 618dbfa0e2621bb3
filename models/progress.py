"""The live training display: one progress bar per phase, advanced by every round."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from common.settings import TrainSettings


class TrainingDisplay:
    """``on_round`` callback for :class:`models.trainer.Trainer` that draws bars with rich."""

    def __init__(self, settings: TrainSettings, *, console: Console | None = None) -> None:
        self.settings = settings
        self.progress = Progress(
            TextColumn("{task.fields[phase]:<12}"),
            BarColumn(),
            TextColumn("round {task.completed:>3.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TrainingDisplay:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, entry: dict[str, Any]) -> None:
        phase = entry["phase"]
        if phase not in self.tasks:
            for task in self.tasks.values():  # an earlier phase stopped early: show it complete
                self.progress.update(task, total=self.progress.tasks[task].completed)
            rounds = (
                self.settings.finetune_rounds
                if phase == "finetune"
                else self.settings.pretrain_rounds
            )
            self.tasks[phase] = self.progress.add_task("", total=rounds, phase=phase, figures="")
        figures = f"loss {entry['loss']:.4f}  val loss {entry['val_loss']:.4f}"
        if entry.get("val_accuracy") is not None:
            figures += f"  val acc {entry['val_accuracy']:.3f}"
        self.progress.update(self.tasks[phase], advance=1, figures=figures)
