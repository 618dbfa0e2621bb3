"""Live inference: every micro-batch's new windows scored by the promoted model → mbd.predictions.

The lake writer hands over the windows of a micro-batch, already collected to the driver as an
Arrow table (see :mod:`streaming.sink`). The driver reads ``CURRENT`` once per micro-batch, keeps
the version it names loaded (:func:`models.serving.load_version`, reloaded when another version
is promoted) and scores all of the batch's windows in one call, never row by row. Scoring
happens there rather than in Spark tasks because a micro-batch brings one window per phone per
slide — a few hundred tensors that a dense model scores in milliseconds — while every Spark job
per micro-batch costs a fixed scheduling delay. Predictions go to Kafka through an idempotent
producer, key = device_id, value = the JSON of ``common.schema.Prediction``, flushed before the
micro-batch ends.

A replayed micro-batch (after a crash) scores its windows again, so a prediction can appear
twice: readers keep the latest per device, which makes that harmless. Scoring never holds up
the lake: without a promoted model, or when scoring fails, the windows are written all the same.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from common.kafka import make_producer
from common.settings import StreamSettings
from models.registry import Registry, RegistryError

log = logging.getLogger(__name__)


def window_tensors(windows: pa.Table) -> np.ndarray:
    """The ``tensor`` column as one float32 matrix, one flattened window per row."""
    tensors = windows.column("tensor").combine_chunks()
    flat = tensors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(windows), -1)


def prediction_values(
    windows: pa.Table, probabilities: np.ndarray, classes: tuple[str, ...], version: int
) -> list[tuple[bytes, bytes]]:
    """(key, value) records in the ``Prediction`` format, one per window."""
    scored_at_ms = int(time.time() * 1000)
    best = np.argmax(probabilities, axis=1)
    columns = windows.select(["device_id", "window_start_ms", "window_end_ms"]).to_pydict()
    records = []
    for i, (device, start, end) in enumerate(
        zip(columns["device_id"], columns["window_start_ms"], columns["window_end_ms"], strict=True)
    ):
        value = {
            "device_id": device, "window_start_ms": start, "window_end_ms": end,
            "activity": classes[best[i]],
            "probabilities": dict(zip(classes, probabilities[i].tolist(), strict=True)),
            "model_version": version, "scored_at_ms": scored_at_ms,
        }  # fmt: skip
        records.append((device.encode(), json.dumps(value, separators=(",", ":")).encode()))
    return records


class LiveScorer:
    """The ``scorer`` of :class:`streaming.sink.LakeWriter`: returns predictions published."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry.dir)
        self.errors = 0
        self._model: Any = None  # the LoadedModel of the version last scored with
        self._producer: Any = None

    def _loaded(self, version: int) -> Any:
        from models.runtime import limit_tensorflow_threads
        from models.serving import load_version

        if self._model is None or self._model.version != version:
            limit_tensorflow_threads()  # the driver shares the cores with Spark's tasks
            self._model = load_version(self.registry, version)
        return self._model

    def _publish(self, records: list[tuple[bytes, bytes]]) -> None:
        if self._producer is None:
            self._producer = make_producer(self.settings.kafka, client_id="mbd-stream-scorer")
        topic = self.settings.kafka.predictions_topic
        sent = [self._producer.send(topic, key=key, value=value) for key, value in records]
        self._producer.flush(timeout=60)
        for future in sent:
            future.get(timeout=0)  # raises if the broker refused a record

    def __call__(self, windows: pa.Table, batch_id: int, count: int) -> int:
        began = time.perf_counter()
        version = None
        try:
            version = self.registry.current_version()
            if version is None:
                return 0
            model = self._loaded(version)
            probabilities = model.predict(window_tensors(windows))
            self._publish(prediction_values(windows, probabilities, model.classes, version))
        except RegistryError as error:
            self.errors += 1
            log.error("batch %d not scored: the promoted model is unreadable: %s", batch_id, error)
            return 0
        except Exception as error:  # scoring must never stop the lake
            self.errors += 1
            log.error("batch %d: scoring with v%s failed: %s", batch_id, version, error)
            return 0
        log.info("batch %d: %d windows scored by v%d in %.0f ms", batch_id, count, version,
                 (time.perf_counter() - began) * 1000)  # fmt: skip
        return count
