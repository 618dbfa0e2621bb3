"""Wires the retraining service: a Spark session, the live display, one run or a schedule."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from typing import Any

from rich.console import Console

from common.settings import JvmSettings, TrainSettings
from common.spark import build_spark_session
from models.job import TrainOutcome, train_once
from models.progress import TrainingDisplay
from models.schedule import run_schedule

log = logging.getLogger(__name__)


def _summary(outcome: TrainOutcome) -> dict[str, Any]:
    m = outcome.metrics
    return {
        "version": outcome.version,
        "promoted": outcome.promoted,
        "reason": outcome.reason,
        "accuracy": round(m["accuracy"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "windows": m["data"]["lake_windows"],
        "seconds": m["timings"]["total"],
    }


def train(settings: TrainSettings, *, every_s: float | None = None, quiet: bool = False) -> int:
    """``mbd train``: one run (exit 0 whether or not it was promoted), or one every ``every_s``."""
    console = Console(stderr=True)
    spark = build_spark_session(settings.spark, JvmSettings(), app_name="mbd-train")
    display = TrainingDisplay(settings, console=console)
    on_round = None if quiet else display
    if every_s is None:
        with contextlib.nullcontext() if quiet else display:
            outcome = train_once(spark, settings, on_round=on_round)
        console.print(json.dumps(_summary(outcome)))
        return 0

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def report(outcome: TrainOutcome | None, why: str) -> None:
        console.print(json.dumps(_summary(outcome)) if outcome else why)

    log.info("retraining every %.0f s from %s", every_s, settings.lake.uri)
    run_schedule(spark, settings, every_s=every_s, stop=stop, on_round=None, on_outcome=report)
    return 0
