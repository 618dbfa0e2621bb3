"""One partial model's round of training: what every Spark task (or the local runner) runs.

A :class:`RoundTask` is broadcast to the workers each round: the model spec, the phase, the
master weights to start from and the optimiser settings. :func:`train_partial` trains a partial
model on the worker's own windows for ``epochs`` epochs with a fresh Adam and returns its weights
and sample count, to be averaged by the driver.

TensorFlow is imported inside the functions, limited to one thread per task, and each worker
process builds and compiles every model once, then only swaps weights and resets the optimiser
state: a round costs training, not graph building.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.build import ModelSpec
from models.runtime import limit_tensorflow_threads

Phase = Literal["pretrain", "finetune"]


@dataclass(frozen=True, kw_only=True)
class RoundTask:
    spec: ModelSpec
    phase: Phase
    layer: int = 0  # the encoder layer being pretrained
    round: int = 0
    weights: list[np.ndarray]  # of the autoencoder (pretrain) or the classifier (finetune)
    encoder_weights: dict[str, list[np.ndarray]] = field(default_factory=dict)  # for features
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    shuffle: bool = True
    class_weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PartialResult:
    weights: list[np.ndarray]
    count: int
    loss: float
    seconds: float = 0.0  # spent in train_partial, to tell training from the round's overhead


_models: dict[tuple[str, str, int], Any] = {}


def cached_model(spec: ModelSpec, kind: str, layer: int = 0) -> Any:
    """This process's compiled model of ``kind`` (classifier, autoencoder, stack) for ``spec``."""
    import keras

    from models.build import build_autoencoder, build_classifier, build_encoder_stack

    key = (repr(spec), kind, layer)
    if key not in _models:
        if kind == "classifier":
            model = build_classifier(spec)
            model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
        elif kind == "autoencoder":
            model = build_autoencoder(spec, layer)
            model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
        elif kind == "stack":
            model = build_encoder_stack(spec, layer)
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        _models[key] = model
    return _models[key]


def reset_optimizer(model: Any, learning_rate: float) -> None:
    """Give the compiled model a fresh Adam state (as a new optimiser would have) at this rate."""
    optimizer = model.optimizer
    for variable in optimizer.variables:
        if variable is optimizer.iterations:
            variable.assign(0)
        elif variable.path.endswith("learning_rate"):
            variable.assign(learning_rate)
        else:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))


def layer_features(spec: ModelSpec, layer: int, encoder_weights: dict, x: np.ndarray) -> np.ndarray:
    """What encoder layer ``layer`` reads: the window tensors through the normaliser and the
    already pretrained layers below it."""
    stack = cached_model(spec, "stack", layer)
    for name, weights in encoder_weights.items():
        if any(item.name == name for item in stack.layers):
            stack.get_layer(name).set_weights(weights)
    return np.asarray(stack.predict(x, batch_size=2048, verbose=0))


def train_partial(
    task: RoundTask, x: np.ndarray, y: np.ndarray, *, partition: int = 0
) -> PartialResult:
    """Train a partial model from the task's weights on this partition's windows.

    ``x``: (n, input_dim) float32 window tensors; ``y``: class index per window, -1 when
    unlabelled (fine-tuning uses the labelled ones only, pretraining all of them).
    """
    began = time.perf_counter()
    if task.phase == "finetune":
        x, y = x[y >= 0], y[y >= 0]
    if len(x) == 0:
        return PartialResult([np.asarray(w) for w in task.weights], 0, float("nan"))
    limit_tensorflow_threads()
    import keras

    keras.utils.set_random_seed(task.seed * 1_000_003 + task.round * 1009 + partition)
    if task.shuffle:
        order = np.random.default_rng([task.seed, task.round, partition]).permutation(len(x))
        x, y = x[order], y[order]
    sample_weight = None
    if task.phase == "pretrain":
        model = cached_model(task.spec, "autoencoder", task.layer)
        inputs = layer_features(task.spec, task.layer, task.encoder_weights, x)
        targets: np.ndarray = inputs
    else:
        model = cached_model(task.spec, "classifier")
        inputs, targets = x, y
        if task.class_weights is not None:
            sample_weight = np.asarray(task.class_weights, np.float32)[y]
    model.set_weights(task.weights)
    reset_optimizer(model, task.learning_rate)
    history = model.fit(
        inputs,
        targets,
        sample_weight=sample_weight,
        epochs=task.epochs,
        batch_size=task.batch_size,
        shuffle=False,  # the order is the seeded permutation above
        verbose=0,
    )
    return PartialResult(model.get_weights(), len(x), float(history.history["loss"][-1]),
                         seconds=time.perf_counter() - began)  # fmt: skip
