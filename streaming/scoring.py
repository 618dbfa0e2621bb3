"""Live inference: every micro-batch's new windows scored by the promoted model → mbd.predictions.

The driver reads ``CURRENT`` once per micro-batch and ships that version number with the
batch, so every task of the batch scores with the same version. Each Python worker loads a
version once (:func:`models.serving.load_version`) and keeps it until a batch names another;
windows reach it as Arrow batches and are scored together, never row by row. Predictions are
written with Spark's Kafka sink, key = device_id, value = the JSON of ``common.schema.Prediction``.

A replayed micro-batch (after a crash) scores its windows again, so a prediction can appear
twice: readers keep the latest per device, which makes that harmless. Scoring never holds up
the lake: without a promoted model, or when scoring fails, the windows are written all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.settings import StreamSettings
from models.registry import Registry, RegistryError

log = logging.getLogger(__name__)

SCORED = "device_id string, window_start_ms long, window_end_ms long, activity string, " \
         "probabilities array<double>"  # fmt: skip
_loaded: dict[str, Any] = {}  # per Python worker: registry folder → LoadedModel


def _model(registry_dir: str, version: int) -> Any:
    from models.runtime import limit_tensorflow_threads
    from models.serving import load_version

    current = _loaded.get(registry_dir)
    if current is None or current.version != version:
        limit_tensorflow_threads()
        _loaded[registry_dir] = load_version(Registry(Path(registry_dir)), version)
    return _loaded[registry_dir]


def score_batches(
    batches: Iterator[pa.RecordBatch], *, registry_dir: str, version: int
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of windows → Arrow batches of (window, activity, probabilities)."""
    model = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        model = model or _model(registry_dir, version)
        tensors = batch.column("tensor")
        x = tensors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        probabilities = model.predict(x.reshape(batch.num_rows, -1))
        yield pa.RecordBatch.from_pydict({
            "device_id": batch.column("device_id"),
            "window_start_ms": batch.column("window_start_ms"),
            "window_end_ms": batch.column("window_end_ms"),
            "activity": pa.array(model.activities(probabilities), pa.string()),
            "probabilities": pa.array(list(probabilities.astype(np.float64)),
                                      pa.list_(pa.float64())),
        })  # fmt: skip


def prediction_records(scored: DataFrame, classes: list[str], version: int) -> DataFrame:
    """Scored windows → Kafka records (key, value) in the ``Prediction`` format."""
    names = F.array(*[F.lit(name) for name in classes])
    value = F.to_json(
        F.struct(
            "device_id",
            "window_start_ms",
            "window_end_ms",
            "activity",
            F.map_from_arrays(names, F.col("probabilities")).alias("probabilities"),
            F.lit(version).alias("model_version"),
            (F.unix_micros(F.current_timestamp()) / 1000).cast("long").alias("scored_at_ms"),
        )
    )
    return scored.select(F.col("device_id").alias("key"), value.alias("value"))


class LiveScorer:
    """The ``scorer`` of :class:`streaming.sink.LakeWriter`: returns predictions published."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry.dir)
        self.errors = 0

    def __call__(self, windows: DataFrame, batch_id: int, count: int) -> int:
        try:
            version = self.registry.current_version()
            if version is None:
                return 0
            classes = list(self.registry.get(version).config["spec"]["classes"])
        except (RegistryError, KeyError, TypeError) as error:
            self.errors += 1
            log.error("batch %d not scored: the promoted model is unreadable: %s", batch_id, error)
            return 0
        registry_dir = str(self.settings.registry.dir.resolve())

        def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return score_batches(batches, registry_dir=registry_dir, version=version)

        began = time.perf_counter()
        try:
            scored = windows.select(
                "device_id", "window_start_ms", "window_end_ms", "tensor"
            ).mapInArrow(score, SCORED)
            (
                prediction_records(scored, classes, version)
                .write.format("kafka")
                .option("kafka.bootstrap.servers", self.settings.kafka.bootstrap_servers)
                .option("topic", self.settings.kafka.predictions_topic)
                .save()
            )
        except Exception as error:  # scoring must never stop the lake
            self.errors += 1
            log.error("batch %d: scoring with v%d failed: %s", batch_id, version, error)
            return 0
        log.info("batch %d: %d windows scored by v%d in %.0f ms", batch_id, count, version,
                 (time.perf_counter() - began) * 1000)  # fmt: skip
        return count
