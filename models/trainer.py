"""Parameter-averaged training: greedy layer-wise pretraining, then fine-tuning, in rounds.

Every round the driver broadcasts the master weights in a :class:`RoundTask`, each partition
trains a partial model on its windows (:func:`train_partial`), and the master becomes the
sample-weighted average of the partials (:func:`average_weights`). A phase stops when its
validation loss has not improved by ``min_delta`` for ``patience`` rounds (or at its round
limit) and keeps the best master it saw.

Phase 1 pretrains each encoder layer as a denoising autoencoder on all windows, labelled or
not; phase 2 fine-tunes the stacked encoders under the softmax head on the labelled windows.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.settings import TrainSettings
from models.averaging import average_weights, weighted_mean
from models.build import (
    ModelSpec,
    build_autoencoder,
    build_classifier,
    build_encoder_stack,
    copy_encoder,
    sync_encoders,
)
from models.partial import PartialResult, RoundTask, train_partial
from models.runners import Runner
from models.runtime import outputs

log = logging.getLogger(__name__)

RoundCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainingResult:
    classifier: Any  # keras.Model
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class _EarlyStop:
    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.waited = 0

    def update(self, loss: float, weights: list[np.ndarray]) -> bool:
        """Record a round; True when the phase should stop."""
        if loss < self.best - self.min_delta or self.best_weights is None:
            self.best, self.best_weights, self.waited = loss, weights, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


def reconstruction_loss(autoencoder: Any, features: np.ndarray) -> float:
    """The autoencoder's mean squared error on ``features``, as ``evaluate`` gives it."""
    import keras

    return float(keras.losses.MeanSquaredError()(features, outputs(autoencoder, features)))


def classification_figures(classifier: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(sparse cross-entropy, accuracy) of the classifier on ``x``, as ``evaluate`` gives them."""
    import keras

    probabilities = outputs(classifier, x)
    loss = keras.losses.SparseCategoricalCrossentropy()(y, probabilities)
    return float(loss), float(np.mean(probabilities.argmax(axis=1) == y))


def _partial_round(task: RoundTask, x: np.ndarray, y: np.ndarray, partition: int) -> PartialResult:
    return train_partial(task, x, y, partition=partition)


class Trainer:
    def __init__(
        self,
        *,
        spec: ModelSpec,
        runner: Runner,
        validation: tuple[np.ndarray, np.ndarray],
        settings: TrainSettings,
        class_weights: tuple[float, ...] | None = None,
        on_round: RoundCallback | None = None,
        pretrain: bool = True,
        target_accuracy: float | None = None,
    ) -> None:
        self.spec, self.runner, self.settings = spec, runner, settings
        self.val_x, self.val_y = validation
        self.class_weights = class_weights
        self.on_round = on_round or (lambda _: None)
        self.pretrain = pretrain and settings.pretrain_rounds > 0
        self.target_accuracy = target_accuracy
        self.history: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def _task(self, **fields: Any) -> RoundTask:
        s = self.settings
        return RoundTask(
            spec=self.spec,
            epochs=s.local_epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate * s.learning_rate_decay ** fields["round"],
            seed=s.seed,
            class_weights=self.class_weights,
            **fields,
        )

    def _round(self, task: RoundTask) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The averaged weights, and the round's figures for the history."""
        began = time.perf_counter()
        partials: list[PartialResult] = self.runner.map_partitions(
            functools.partial(_partial_round, task)
        )
        mapped = time.perf_counter() - began
        seen = [(p.weights, p.count) for p in partials]
        losses = [(p.loss, p.count) for p in partials if p.count]
        weights = average_weights(seen)
        return weights, {
            "loss": weighted_mean(losses),
            "windows": sum(p.count for p in partials),
            # the slowest partial's training, and the round's wall time around the partials
            "partial_s": round(max(p.seconds for p in partials), 3),
            "map_s": round(mapped, 3),
        }

    def _record(self, **entry: Any) -> None:
        entry["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        self.history.append(entry)
        log.info(
            "%s round %d: loss %.4f, validation loss %.4f%s",
            entry["phase"],
            entry["round"],
            entry["loss"],
            entry["val_loss"],
            "" if entry["val_accuracy"] is None else f", accuracy {entry['val_accuracy']:.3f}",
        )
        self.on_round(entry)

    def _pretrain_layer(self, classifier: Any, layer: int) -> None:
        autoencoder = build_autoencoder(self.spec, layer)
        stack = build_encoder_stack(self.spec, layer)
        sync_encoders(classifier, stack)
        val_features = outputs(stack, self.val_x)
        encoders = {
            f"encoder_{j}": classifier.get_layer(f"encoder_{j}").get_weights() for j in range(layer)
        }
        stop = _EarlyStop(self.settings.patience, self.settings.min_delta)
        weights = autoencoder.get_weights()
        for round_ in range(self.settings.pretrain_rounds):
            task = self._task(
                phase="pretrain", layer=layer, round=round_, weights=weights,
                encoder_weights=encoders,
            )  # fmt: skip
            weights, figures = self._round(task)
            autoencoder.set_weights(weights)
            val_loss = reconstruction_loss(autoencoder, val_features)
            self._record(phase=f"pretrain-{layer}", round=round_, val_loss=val_loss,
                         val_accuracy=None, **figures)  # fmt: skip
            if stop.update(val_loss, weights):
                break
        autoencoder.set_weights(stop.best_weights or weights)
        copy_encoder(autoencoder, classifier, layer)

    def _finetune(self, classifier: Any) -> None:
        import keras

        # compiled for whoever loads the saved model; the rounds' figures do not use it
        classifier.compile(
            optimizer=keras.optimizers.Adam(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        stop = _EarlyStop(self.settings.patience, self.settings.min_delta)
        weights = classifier.get_weights()
        for round_ in range(self.settings.finetune_rounds):
            task = self._task(phase="finetune", round=round_, weights=weights)
            weights, figures = self._round(task)
            classifier.set_weights(weights)
            val_loss, val_accuracy = classification_figures(classifier, self.val_x, self.val_y)
            self._record(phase="finetune", round=round_, val_loss=val_loss,
                         val_accuracy=val_accuracy, **figures)  # fmt: skip
            reached = self.target_accuracy is not None and val_accuracy >= self.target_accuracy
            if stop.update(val_loss, weights) or reached:
                break
        classifier.set_weights(stop.best_weights or weights)

    def run(self) -> TrainingResult:
        import keras

        keras.utils.set_random_seed(self.settings.seed)
        classifier = build_classifier(self.spec)
        seconds: dict[str, float] = {}
        if self.pretrain:
            for layer in range(len(self.spec.encoder_units)):
                began = time.perf_counter()
                self._pretrain_layer(classifier, layer)
                seconds[f"pretrain-{layer}"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        self._finetune(classifier)
        seconds["finetune"] = round(time.perf_counter() - began, 3)
        return TrainingResult(classifier, self.history, seconds)
