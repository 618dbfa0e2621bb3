"""Rounds of partial training, in this process: equality with plain Keras, the two phases."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pytest

from common.settings import ModelSettings, TrainSettings
from models import partial as partial_module
from models.build import ModelSpec, build_autoencoder, build_classifier, build_encoder_stack
from models.partial import RoundTask, cached_model, epoch_batches, train_partial
from models.runners import LocalRunner
from models.spectrum import spectrum_width
from models.trainer import Trainer, _EarlyStop

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLASSES = ("still", "moving")


def two_activities(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of 10 samples × 3 axes: still ones near gravity, moving ones with a bounce."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    t = np.arange(10)
    bounce = 3.0 * np.sin(t[None, :] * 1.3 + rng.uniform(0, 6, (n, 1)))
    x = np.zeros((n, 10, 3), np.float32)
    x[:, :, 1] = 9.8 + bounce * y[:, None]
    x += rng.normal(0, 0.3, x.shape)
    return x.reshape(n, 30).astype(np.float32), y


def small_spec(*, magnitude_channel: bool = False) -> ModelSpec:
    return spec_of_a_run("samples+magnitude" if magnitude_channel else "samples", 0.0)


def spec_of_a_run(input_features: str, shift: float) -> ModelSpec:
    """The small model as one scheduled run would have it: its statistics moved by ``shift``."""
    features = input_features.split("+")
    width = spectrum_width(10)
    return ModelSpec.from_settings(
        ModelSettings(encoder_units=(12, 6), dropout=0.0, noise_stddev=0.1,
                      input_features=features[0], magnitude_channel="magnitude" in features),
        input_dim=30, classes=CLASSES, axis_mean=(shift, 9.8 + shift, 0.0),
        axis_std=(0.3 + shift, 2.0, 0.3), magnitude=(9.8 + shift, 2.0 + shift),
        spectrum=(tuple(np.linspace(-1, 1, width) + shift), (1.0 + shift,) * width),
    )  # fmt: skip


def assert_plain_keras_gives(
    weights: list, model: Any, start: list, inputs: np.ndarray, targets: np.ndarray, loss: str
) -> None:
    """``weights`` are what plain Keras gives: ``model`` from ``start``, a fresh Adam at 0.01,
    two epochs of batches of 16 in the given order."""
    import keras

    model.set_weights(start)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(inputs, targets, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for mine, theirs in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("windows", [96, 100])  # 100: each epoch ends on a batch of 4
def test_one_finetune_round_equals_plain_keras_training_from_the_same_weights(
    windows: int,
) -> None:
    import keras

    spec = small_spec()
    x, y = two_activities(windows, seed=3)
    keras.utils.set_random_seed(5)
    start = build_classifier(spec).get_weights()
    task = RoundTask(spec=spec, phase="finetune", weights=start, epochs=2, batch_size=16,
                     learning_rate=0.01, seed=0, shuffle=False)  # fmt: skip
    partial = train_partial(task, x, y)

    assert partial.count == windows
    assert_plain_keras_gives(partial.weights, build_classifier(spec), start, x, y,
                             "sparse_categorical_crossentropy")  # fmt: skip


def test_epoch_batches_repeat_the_windows_in_order_ending_each_epoch_on_a_short_batch() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    weights = np.linspace(0, 1, 10, dtype=np.float32)
    stream = iter(epoch_batches(x, x[:, 0] * 2, weights, batch_size=4))
    batches = [next(stream) for _ in range(6)]  # two epochs of 4 + 4 + 2

    assert [len(inputs) for inputs, _, _ in batches] == [4, 4, 2] * 2
    seen = np.concatenate([np.asarray(inputs)[:, 0] for inputs, _, _ in batches])
    assert seen.tolist() == list(range(10)) * 2
    targets = np.concatenate([np.asarray(t) for _, t, _ in batches])
    assert targets.tolist() == (np.arange(10) * 2).tolist() * 2
    assert np.concatenate([np.asarray(w) for *_, w in batches]).tolist() == weights.tolist() * 2


@pytest.mark.parametrize("input_features", ["samples", "samples+magnitude", "spectrum"])
def test_a_later_run_trains_with_its_own_statistics(input_features: str) -> None:
    """The workers keep their compiled models from run to run; a run's statistics still reach
    its training: its round equals plain Keras training of that run's classifier."""
    import keras

    x, y = two_activities(96, seed=3)
    first, later = spec_of_a_run(input_features, 0.0), spec_of_a_run(input_features, 0.5)
    keras.utils.set_random_seed(5)
    start = build_classifier(later).get_weights()
    for spec in (first, later):
        task = RoundTask(spec=spec, phase="finetune", weights=start, epochs=2, batch_size=16,
                         learning_rate=0.01, shuffle=False)  # fmt: skip
        partial = train_partial(task, x, y)

    assert_plain_keras_gives(partial.weights, build_classifier(later), start, x, y,
                             "sparse_categorical_crossentropy")  # fmt: skip


def test_a_later_run_pretrains_a_deeper_layer_on_its_own_statistics() -> None:
    """Pretraining layer 1: the window tensors through the later run's normaliser and the
    pretrained layer 0, then one round of its autoencoder, as plain Keras does it."""
    import keras

    x, _ = two_activities(96, seed=7)
    y = np.full(96, -1, np.int32)  # pretraining reads unlabelled windows too
    first, later = (
        dataclasses.replace(spec_of_a_run("spectrum", shift), noise_stddev=0.0)
        for shift in (0.0, 0.5)
    )
    keras.utils.set_random_seed(8)
    encoder_0 = build_classifier(later).get_layer("encoder_0").get_weights()
    start = build_autoencoder(later, 1).get_weights()
    for spec in (first, later):
        task = RoundTask(spec=spec, phase="pretrain", layer=1, weights=start,
                         encoder_weights={"encoder_0": encoder_0}, epochs=2, batch_size=16,
                         learning_rate=0.01, shuffle=False)  # fmt: skip
        partial = train_partial(task, x, y)

    stack = build_encoder_stack(later, 1)
    stack.get_layer("encoder_0").set_weights(encoder_0)
    features = np.asarray(stack.predict(x, verbose=0))
    assert partial.count == 96
    assert_plain_keras_gives(partial.weights, build_autoencoder(later, 1), start, features,
                             features, "mse")  # fmt: skip


def test_runs_with_new_statistics_share_the_models_that_train_and_keep_one_normaliser() -> None:
    """What a worker keeps does not grow with the runs it serves: each model that Keras fits
    and then drops leaves memory behind (bench/retraining.py measures it)."""
    first, later = spec_of_a_run("spectrum", 0.0), spec_of_a_run("spectrum", 0.5)
    for kind, layer in (("classifier", 0), ("autoencoder", 1), ("stack", 1)):
        assert cached_model(first, kind, layer) is cached_model(later, kind, layer)
    assert cached_model(first, "normaliser") is not cached_model(later, "normaliser")
    assert [key for key in partial_module._models if key[1] == "normaliser"] == [
        (repr(later), "normaliser", 0)
    ]


def test_a_round_does_not_depend_on_what_its_worker_trained_before() -> None:
    """Noise and dropout draw from generators of their own, reseeded every round."""
    spec = dataclasses.replace(spec_of_a_run("samples", 0.0), dropout=0.3)
    x, y = two_activities(64, seed=9)
    start = build_classifier(spec).get_weights()
    task = RoundTask(spec=spec, phase="finetune", weights=start, epochs=1, batch_size=16)
    alone = train_partial(task, x, y)
    train_partial(dataclasses.replace(task, round=1), x, y)  # draws from the dropout generator
    again = train_partial(task, x, y)
    for a, b in zip(alone.weights, again.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_every_round_starts_from_a_fresh_optimiser() -> None:
    spec = small_spec()
    x, y = two_activities(64, seed=4)
    start = build_classifier(spec).get_weights()
    task = RoundTask(spec=spec, phase="finetune", weights=start, epochs=1, batch_size=16,
                     learning_rate=0.01, shuffle=False)  # fmt: skip
    first, again = train_partial(task, x, y), train_partial(task, x, y)
    for a, b in zip(first.weights, again.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_finetuning_ignores_unlabelled_windows_and_an_empty_partition_counts_zero() -> None:
    spec = small_spec()
    x, y = two_activities(40, seed=5)
    y[:25] = -1
    start = build_classifier(spec).get_weights()
    task = RoundTask(spec=spec, phase="finetune", weights=start, batch_size=8)
    assert train_partial(task, x, y).count == 15
    assert train_partial(task, x[:0], y[:0]).count == 0


@pytest.mark.parametrize("magnitude_channel", [False, True])
def test_both_phases_train_a_classifier_that_separates_the_activities(
    magnitude_channel: bool,
) -> None:
    x, y = two_activities(600, seed=6)
    val_x, val_y = two_activities(200, seed=7)
    y[::2] = -1  # half the training windows carry no label: pretraining still uses them
    rounds: list[dict] = []
    settings = TrainSettings(pretrain_rounds=2, finetune_rounds=8, batch_size=32,
                             learning_rate=0.01, learning_rate_decay=1.0, patience=3)  # fmt: skip
    spec = small_spec(magnitude_channel=magnitude_channel)
    assert spec.layer_input_dim(0) == (40 if magnitude_channel else 30)
    trainer = Trainer(spec=spec, runner=LocalRunner(x, y), validation=(val_x, val_y),
                      settings=settings, on_round=rounds.append)  # fmt: skip
    result = trainer.run()
    phases = [entry["phase"] for entry in rounds]
    assert phases[:4] == ["pretrain-0", "pretrain-0", "pretrain-1", "pretrain-1"]
    assert phases.count("finetune") >= 1
    assert rounds[0]["windows"] == 600 and rounds[-1]["windows"] == 300
    predicted = np.asarray(result.classifier(val_x)).argmax(axis=1)
    assert (predicted == val_y).mean() >= 0.95
    assert set(result.seconds) == {"pretrain-0", "pretrain-1", "finetune"}
    # every round says how long its partials trained within the time the runner took
    assert all(0 < entry["partial_s"] <= entry["map_s"] for entry in rounds)


def test_early_stop_keeps_the_best_round_and_waits_patience_rounds() -> None:
    stop = _EarlyStop(patience=2, min_delta=0.01)
    best = [np.array([1.0])]
    assert not stop.update(1.0, [np.array([0.0])])
    assert not stop.update(0.5, best)
    assert not stop.update(0.495, [np.array([2.0])])  # within min_delta: not an improvement
    assert stop.update(0.6, [np.array([3.0])])
    assert stop.best == 0.5 and stop.best_weights is best
