"""Builders of registry contents for tests: a tiny saved Keras model and complete versions."""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from models.registry import ModelVersion, Registry

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@cache
def tiny_model_bytes() -> bytes:
    """A saved ``.keras`` file of a 4-input, 2-class softmax model (built once per run)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def publish_version(
    registry: Registry,
    *,
    macro_f1: float = 0.8,
    model_bytes: bytes | None = None,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Write a complete version into a staging folder and publish it."""
    staging = registry.staging()
    (staging / "model.keras").write_bytes(
        tiny_model_bytes() if model_bytes is None else model_bytes
    )
    (staging / "config.json").write_text(json.dumps({"encoder_units": [4]}))
    figures = {
        "macro_f1": macro_f1,
        "accuracy": 0.9,
        "created_at": "2025-05-01T12:00:00+00:00",
        "data": {"train_windows": 1234, "holdout_windows": 321},
        **(metrics or {}),
    }
    (staging / "metrics.json").write_text(json.dumps(figures))
    return registry.publish(staging)
