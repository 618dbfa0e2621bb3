"""Builders for the API tests: a small real classifier in a registry, samples and predictions."""

from __future__ import annotations

import json
import os
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from common.schema import Prediction
from common.settings import DEFAULT_CLASSES
from models.registry import ModelVersion, Registry

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = DEFAULT_CLASSES
INPUT_DIM = 600  # 10 s at 20 Hz × 3 axes: the default window settings


def spec_json(encoder_units: tuple[int, ...] = (16,)) -> dict[str, Any]:
    from models.build import ModelSpec
    from models.spectrum import spectrum_width

    width = spectrum_width(INPUT_DIM // 3)  # the default input: the window's spectrum
    spec = ModelSpec(
        input_dim=INPUT_DIM, classes=CLASSES, encoder_units=encoder_units, activation="relu",
        noise_stddev=0.0, dropout=0.0, axis_mean=(0.0, 9.8, 0.0), axis_std=(3.0, 3.0, 3.0),
        spectrum_mean=(0.5,) * width, spectrum_std=(2.0,) * width,
    )  # fmt: skip
    return spec.to_json()


@cache
def classifier_bytes(seed: int = 0, encoder_units: tuple[int, ...] = (16,)) -> bytes:
    """A saved ``.keras`` activity classifier over 600 inputs and the six WISDM classes."""
    import keras

    from models.build import ModelSpec, build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(ModelSpec.from_json(spec_json(encoder_units)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


@cache
def metrics_and_report() -> tuple[dict[str, Any], bytes]:
    """Figures as the trainer writes them and the PNG report drawn from them."""
    from models.evaluation import evaluate
    from models.report import draw_report

    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(CLASSES), 300)
    predicted = np.where(rng.random(300) < 0.8, truth, rng.integers(0, len(CLASSES), 300))
    metrics = evaluate(truth, predicted, CLASSES)
    history = [{"phase": "finetune", "round": r, "loss": 1 / r, "val_accuracy": 0.5 + r / 20}
               for r in range(1, 6)]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = draw_report(metrics=metrics, history=history, path=Path(folder) / "report.png",
                           title="test model")  # fmt: skip
        return {**metrics, "history": history}, path.read_bytes()


def publish_classifier(
    registry: Registry,
    *,
    seed: int = 0,
    macro_f1: float | None = None,
    model_bytes: bytes | None = None,
    report: bool = True,
) -> ModelVersion:
    """Publish a complete version: model, config with the class list, metrics, report."""
    staging = registry.staging()
    model = classifier_bytes(seed) if model_bytes is None else model_bytes
    (staging / "model.keras").write_bytes(model)
    config = {"spec": spec_json(), "train": {"encoder_units": [16]}}
    (staging / "config.json").write_text(json.dumps(config))
    metrics, png = metrics_and_report()
    figures = {**metrics, "created_at": "2026-01-02T03:04:05+00:00",
               "data": {"train_windows": 1200 + seed, "holdout_windows": 300}}  # fmt: skip
    if macro_f1 is not None:
        figures["macro_f1"] = macro_f1
    (staging / "metrics.json").write_text(json.dumps(figures))
    if report:
        (staging / "report.png").write_bytes(png)
    return registry.publish(staging)


def accel_samples(
    *, end_ms: int | None = None, seconds: float = 10.0, rate_hz: float = 20.0, seed: int = 0
) -> list[dict[str, Any]]:
    """``seconds`` of wire-format accelerometer samples ending at ``end_ms`` (default: now)."""
    end_ms = end_ms if end_ms is not None else int(time.time() * 1000)
    rng = np.random.default_rng(seed)
    count = round(seconds * rate_hz)
    step = 1000.0 / rate_hz
    samples = []
    for i in range(count):
        t = end_ms - round((count - 1 - i) * step)
        phase = 2 * np.pi * 2.0 * i / rate_hz
        samples.append({
            "t": t,
            "x": float(2.0 * np.sin(phase) + rng.normal(0, 0.3)),
            "y": float(9.8 + 3.0 * np.cos(phase) + rng.normal(0, 0.3)),
            "z": float(rng.normal(0, 0.5)),
        })  # fmt: skip
    return samples


def prediction(
    device_id: str,
    activity: str = "walking",
    *,
    window_end_ms: int | None = None,
    model_version: int = 1,
) -> Prediction:
    end = window_end_ms if window_end_ms is not None else int(time.time() * 1000)
    rest = (1.0 - 0.75) / (len(CLASSES) - 1)
    return Prediction(
        device_id=device_id,
        window_start_ms=end - 10_000,
        window_end_ms=end,
        activity=activity,
        probabilities={name: 0.75 if name == activity else rest for name in CLASSES},
        model_version=model_version,
        scored_at_ms=end + 1500,
    )
