"""The retraining job: lake → parameter-averaged training → evaluation → registry → gate.

``train_once`` reads the lake's windows, splits them by device, trains on Spark (or any
runner), evaluates the candidate and the promoted model on the same held-out devices, writes a
complete version into the registry's staging area, publishes it and promotes it if the gate
allows. Until the final atomic switch nothing served changes, so a run that fails or is killed
leaves the promoted model as it was.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from common.settings import TrainSettings
from models.build import ModelSpec
from models.data import (
    NotEnoughData,
    WindowArrays,
    borrowed_validation_devices,
    channel_moments,
    class_weights,
    collect,
    lake_windows,
    mean_std,
)
from models.evaluation import evaluate
from models.promotion import should_promote
from models.registry import ModelVersion, Registry, RegistryError
from models.report import draw_report
from models.runners import LocalRunner, Runner, SparkRunner
from models.runtime import limit_tensorflow_threads
from models.spectrum import spectrum_moments
from models.trainer import RoundCallback, Trainer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    version: int
    promoted: bool
    reason: str
    metrics: dict[str, Any]


def _moments(x: np.ndarray, y: np.ndarray, partition: int) -> tuple[np.ndarray, int]:
    return channel_moments(x)


def _spectrum_moments(samples: int, x: np.ndarray, y: np.ndarray, partition: int) -> tuple:
    return spectrum_moments(x, samples)


def _class_counts(n_classes: int, x: np.ndarray, y: np.ndarray, partition: int) -> list[int]:
    return np.bincount(y[y >= 0], minlength=n_classes).tolist()


def _load_tensorflow(x: np.ndarray, y: np.ndarray, partition: int) -> None:
    """Start TensorFlow in the Spark worker that trains this partition, one thread per task."""
    limit_tensorflow_threads()
    import keras  # noqa: F401


def predict_classes(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=2048, verbose=0)).argmax(axis=1)


def _incumbent_f1(
    registry: Registry, holdout: WindowArrays, classes: list[str]
) -> tuple[int | None, float | None]:
    """(version, macro-F1 on these held-out windows) of the promoted model, or (None, None)."""
    current = registry.current_version()
    if current is None:
        return None, None
    try:
        model = registry.load_model(current)
    except RegistryError as error:
        log.error("promoted model v%d cannot be evaluated: %s", current, error)
        return current, None
    scored = evaluate(holdout.y, predict_classes(model, holdout.x), classes)
    return current, float(scored["macro_f1"])


def save_version(
    registry: Registry,
    model: Any,
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    devices: list[str] | None = None,
    title: str = "activity model",
) -> ModelVersion:
    """Write a complete version (model, config, metrics, report and the phones it learned from,
    which an erasure names) in staging and publish it."""
    staging = registry.staging()
    if devices is not None:
        (staging / "devices.json").write_text(json.dumps(devices))
    model.save(staging / "model.keras")
    (staging / "config.json").write_text(json.dumps(config, indent=1, default=str))
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    draw_report(metrics=metrics, history=metrics.get("history", []),
                path=staging / "report.png", title=title)  # fmt: skip
    return registry.publish(staging)


def train_once(
    spark: SparkSession,
    settings: TrainSettings,
    *,
    on_round: RoundCallback | None = None,
) -> TrainOutcome:
    """One full retraining run; raises NotEnoughData when the lake cannot support it."""
    from pyspark.sql import functions as F

    began = time.perf_counter()
    classes = list(settings.wire.classes)
    input_dim = settings.window.samples * 3
    registry = Registry(settings.registry.dir)
    try:
        registry.recover()
    except RegistryError as error:  # the gate then treats the promoted model as unusable
        log.error("%s", error)
    snapshot = lake_windows(spark, settings, as_of=settings.as_of)
    windows = snapshot.windows
    lake_total = windows.count()
    lake_devices = sorted(row.device_id for row in windows.select("device_id").distinct().collect())
    holdout = collect(windows.where("split = 'holdout' AND y >= 0"), input_dim)
    validation = collect(windows.where("split = 'validation' AND y >= 0"), input_dim)
    train_windows = windows.where("split = 'train'")
    borrowed: list[str] = []
    if len(validation) == 0:  # no labelled phone hashed to validation: borrow training phones
        labelled_devices = train_windows.where("y >= 0").select("device_id").distinct()
        borrowed = borrowed_validation_devices(
            [row.device_id for row in labelled_devices.collect()], settings
        )
        if borrowed:
            log.info("validating on training phones %s: no labelled validation phone", borrowed)
            taken = F.col("device_id").isin(borrowed)
            validation = collect(train_windows.where(taken & (F.col("y") >= 0)), input_dim)
            train_windows = train_windows.where(~taken)
    runner: Runner
    if settings.runner == "local":
        arrays = collect(train_windows, input_dim)
        runner = LocalRunner(arrays.x, arrays.y)
    else:
        runner = SparkRunner(train_windows, partitions=settings.partitions, input_dim=input_dim)
    try:
        per_partition = runner.map_partitions(functools.partial(_class_counts, len(classes)))
        train_counts = np.sum(per_partition, axis=0)
        labelled = int(train_counts.sum())
        if labelled < settings.min_labelled_windows:
            raise NotEnoughData(
                f"{labelled} labelled training windows in version {snapshot.version} of "
                f"{settings.lake.uri}, "
                f"need at least {settings.min_labelled_windows}"
            )
        for name, part in (("held-out", holdout), ("validation", validation)):
            if len(part) == 0:
                raise NotEnoughData(
                    f"no labelled windows from {name} devices; the lake needs more labelled "
                    "phones (devices are split by a hash of their id)"
                )
        mean, std = mean_std(runner.map_partitions(_moments))
        spectrum = None
        if settings.model.input_features == "spectrum":
            per_partition = functools.partial(_spectrum_moments, input_dim // 3)
            spectrum = mean_std(runner.map_partitions(per_partition))
        spec = ModelSpec.from_settings(
            settings.model, input_dim=input_dim, classes=classes, axis_mean=mean[:3],
            axis_std=std[:3], magnitude=(mean[3], std[3]), spectrum=spectrum,
        )  # fmt: skip
        loaded: dict[str, float] = {}
        if isinstance(runner, SparkRunner):  # (the local runner trains in this process)
            # Every worker starts TensorFlow now, not inside the first round: the rounds'
            # figures (and the progress display) then show training, not a worker's start.
            loading = time.perf_counter()
            runner.map_partitions(_load_tensorflow)
            loaded["load-tensorflow"] = round(time.perf_counter() - loading, 3)
        trainer = Trainer(
            spec=spec,
            runner=runner,
            validation=(validation.x, validation.y),
            settings=settings,
            class_weights=class_weights(train_counts.tolist(), settings.class_weighting),
            on_round=on_round,
        )
        result = trainer.run()
    finally:
        runner.close()
    metrics = evaluate(holdout.y, predict_classes(result.classifier, holdout.x), classes)
    incumbent, incumbent_f1 = _incumbent_f1(registry, holdout, classes)
    promote, reason = should_promote(
        candidate_f1=float(metrics["macro_f1"]),
        incumbent_f1=incumbent_f1,
        floor=settings.promote_floor,
        incumbent_version=incumbent,
    )
    metrics.update(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data={
            "lake_version": snapshot.version,
            "lake_windows": lake_total,
            "lake_devices": len(lake_devices),
            "erased_devices_excluded": len(snapshot.erased),
            "train_windows": runner.count,
            "train_labelled_windows": labelled,
            "train_labelled_per_class": dict(zip(classes, train_counts.tolist(), strict=True)),
            "validation_windows": len(validation),
            "validation_devices_borrowed_from_training": borrowed,
            "holdout_windows": len(holdout),
            "holdout_devices": len(set(holdout.device_id.tolist())),
            "train_devices": windows.where("split = 'train'")
            .select("device_id")
            .distinct()
            .count(),
        },
        timings={
            **loaded,
            **result.seconds,
            "total": round(time.perf_counter() - began, 3),
        },
        gate={"incumbent": incumbent, "incumbent_macro_f1": incumbent_f1, "reason": reason},
        history=result.history,
        spark_master=spark.sparkContext.master,
        partitions=runner.partitions,
        runner=settings.runner,
    )
    config = {"spec": spec.to_json(), "train": json.loads(settings.model_dump_json())}
    version = save_version(registry, result.classifier, config=config, metrics=metrics,
                           devices=lake_devices,
                           title=f"activity model, {len(holdout)} held-out windows")  # fmt: skip
    if promote:
        registry.promote(version.version, reason=reason)
    log.info("v%d %s: %s", version.version, "promoted" if promote else "not promoted", reason)
    return TrainOutcome(version.version, promote, reason, metrics)
