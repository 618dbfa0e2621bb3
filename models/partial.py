"""One partial model's round of training: what every Spark task (or the local runner) runs.

A :class:`RoundTask` is broadcast to the workers each round: the model spec, the phase, the
master weights to start from and the optimiser settings. :func:`train_partial` trains a partial
model on the worker's own windows for ``epochs`` epochs with a fresh Adam and returns its weights
and sample count, to be averaged by the driver.

TensorFlow is imported inside the functions, limited to one thread per task, and each worker
process builds and compiles every model once, then only swaps weights and resets the optimiser
state: a round costs training, not graph building. The window tensors pass through the run's
normaliser first (a model with no weights, built once per run); the models that train read
its output, so their shape depends on no run's statistics and they serve every run that
their worker lives through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.build import ModelSpec
from models.runtime import limit_tensorflow_threads, outputs

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


# Per Python worker: the compiled models without their normaliser, by the spec's shape, and the
# normaliser of the latest spec, by the spec with its statistics.
_models: dict[tuple[str, str, int], Any] = {}
ModelKind = Literal["normaliser", "classifier", "autoencoder", "stack"]


def cached_model(spec: ModelSpec, kind: ModelKind, layer: int = 0) -> Any:
    """This process's model of ``kind`` for ``spec``: the ``normaliser`` (window tensors →
    normalised features), or, reading those features, the compiled ``classifier`` or
    ``autoencoder`` of a layer, or the encoder ``stack`` below a layer.

    Only the normaliser carries a run's statistics, and it only predicts. The models that
    train are built once per shape and serve every run the worker lives through (Spark ends a
    Python worker idle for a minute): each model that Keras 3.15 fits leaves a few MB behind in
    TensorFlow when dropped, even after ``clear_session``, so a worker that rebuilt them for
    every run grew run after run (``python -m bench.retraining``). What a model draws at
    random (noise, dropout) is reseeded for every round by :func:`train_partial`, so a round
    does not depend on what its worker trained before.
    """
    from models.build import (
        build_autoencoder,
        build_classifier,
        build_encoder_stack,
        build_normaliser,
    )

    if kind == "normaliser":
        key = (repr(spec), kind, layer)
        for old in [k for k in _models if k[1] == kind and k != key]:
            del _models[old]
    else:
        key = (repr(spec.without_statistics()), kind, layer)
    if key not in _models:
        if kind == "normaliser":
            model = build_normaliser(spec)
        elif kind == "classifier":
            model = _compiled(
                build_classifier(spec, normalise=False), "sparse_categorical_crossentropy"
            )
        elif kind == "autoencoder":
            model = _compiled(build_autoencoder(spec, layer), "mse")
        elif kind == "stack":
            model = build_encoder_stack(spec, layer, normalise=False)
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        _models[key] = model
    return _models[key]


def _compiled(model: Any, loss: str) -> Any:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(), loss=loss)
    # Adam's slots are made now, eagerly. Made by the first fit, inside its traced step, each
    # slot leaves TensorFlow functions behind that outlive the model (Keras 3.15, TF 2.21).
    model.optimizer.build(model.trainable_variables)
    return model


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


def reseed(model: Any, seed: int) -> None:
    """Restart the random draws of the model's layers (noise, dropout) from ``seed``: they keep
    their own generators, which ``keras.utils.set_random_seed`` does not reset."""
    for layer in model.layers:
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.asarray([seed, 0], dtype=generator.state.dtype))


def normalised(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """Window tensors → what encoder layer 0 reads, through the spec's own normaliser."""
    return outputs(cached_model(spec, "normaliser"), x)


def layer_features(
    spec: ModelSpec, layer: int, encoder_weights: dict, features: np.ndarray
) -> np.ndarray:
    """What encoder layer ``layer`` reads: normalised features through the already pretrained
    layers below it."""
    if layer == 0:
        return features
    stack = cached_model(spec, "stack", layer)
    for name, weights in encoder_weights.items():
        if any(item.name == name for item in stack.layers):
            stack.get_layer(name).set_weights(weights)
    return outputs(stack, features)


def epoch_batches(
    inputs: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray | None, batch_size: int
) -> Any:
    """The windows in their order, in batches, epoch after epoch, as one ``tf.data`` stream with
    no background threads: the batches ``fit`` makes of numpy arrays with ``shuffle=False``.

    ``fit`` on numpy arrays makes a new iterator for every epoch, and a ``tf.data`` iterator with
    background threads (autotuning, an injected prefetch) often waited about 0.6 s when it was
    dropped, the CPU idle: in most layer-0 pretraining rounds on this project's VM, once at the
    second epoch's start and once at the end of ``fit``. This stream is iterated for all epochs
    and runs in the caller's thread; a task has one CPU, so prefetching gained nothing.
    """
    import tensorflow as tf

    columns = (inputs, targets) if sample_weight is None else (inputs, targets, sample_weight)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    batches = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size).repeat()
    return batches.with_options(options)


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

    seed = task.seed * 1_000_003 + task.round * 1009 + partition
    keras.utils.set_random_seed(seed)
    if task.shuffle:
        order = np.random.default_rng([task.seed, task.round, partition]).permutation(len(x))
        x, y = x[order], y[order]
    sample_weight = None
    features = normalised(task.spec, x)
    if task.phase == "pretrain":
        model = cached_model(task.spec, "autoencoder", task.layer)
        inputs = layer_features(task.spec, task.layer, task.encoder_weights, features)
        targets: np.ndarray = inputs
    else:
        model = cached_model(task.spec, "classifier")
        inputs, targets = features, y
        if task.class_weights is not None:
            sample_weight = np.asarray(task.class_weights, np.float32)[y]
    model.set_weights(task.weights)
    reset_optimizer(model, task.learning_rate)
    reseed(model, seed)
    history = model.fit(
        epoch_batches(inputs, targets, sample_weight, task.batch_size),
        epochs=task.epochs,
        steps_per_epoch=math.ceil(len(inputs) / task.batch_size),
        shuffle=False,  # the order is the seeded permutation above (Keras warns if left on)
        verbose=0,
    )
    return PartialResult(model.get_weights(), len(x), float(history.history["loss"][-1]),
                         seconds=time.perf_counter() - began)  # fmt: skip
