"""Retraining on a schedule: one run every interval, skipped while too little new data arrived.

A run that fails is logged and changes nothing that is served (see :mod:`models.job`); the
schedule goes on with the next interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from common.settings import TrainSettings
from models.data import NotEnoughData, lake_windows
from models.job import TrainOutcome, train_once
from models.registry import Registry
from models.trainer import RoundCallback

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def lake_window_count(spark: SparkSession, settings: TrainSettings) -> int:
    """Usable windows in the lake now (0 when it has none yet)."""
    try:
        return lake_windows(spark, settings).windows.count()
    except NotEnoughData:  # no table yet
        return 0


def windows_at_last_version(registry: Registry) -> int:
    """Lake windows when the newest version was trained (0 before the first)."""
    versions = registry.versions()
    if not versions:
        return 0
    return int(versions[-1].metrics.get("data", {}).get("lake_windows", 0))


def due(spark: SparkSession, settings: TrainSettings) -> tuple[bool, str]:
    """Whether enough new windows arrived since the last version to train again."""
    registry = Registry(settings.registry.dir)
    now, before = lake_window_count(spark, settings), windows_at_last_version(registry)
    new = now - before
    if registry.versions() and new < settings.min_new_windows:
        return False, f"{new} new windows since the last version, need {settings.min_new_windows}"
    return True, f"{new} new windows ({now} in the lake)"


def run_schedule(
    spark: SparkSession,
    settings: TrainSettings,
    *,
    every_s: float,
    stop: threading.Event,
    on_round: RoundCallback | None = None,
    on_outcome: Callable[[TrainOutcome | None, str], None] | None = None,
) -> None:
    """Train every ``every_s`` seconds until ``stop`` is set."""
    report = on_outcome or (lambda outcome, why: None)
    while not stop.is_set():
        began = time.monotonic()
        try:
            go, why = due(spark, settings)
            if go:
                outcome = train_once(spark, settings, on_round=on_round)
                report(outcome, outcome.reason)
            else:
                log.info("retraining skipped: %s", why)
                report(None, f"skipped: {why}")
        except NotEnoughData as error:
            log.warning("retraining skipped: %s", error)
            report(None, f"skipped: {error}")
        except Exception as error:
            log.exception("retraining failed; the promoted model is unchanged")
            report(None, f"failed: {type(error).__name__}: {error}")
        stop.wait(max(0.0, every_s - (time.monotonic() - began)))
