"""The driver's validation figures each round: what Keras's ``evaluate`` gives, without it."""

from __future__ import annotations

import numpy as np
import pytest

from models.runtime import outputs
from models.trainer import classification_figures, reconstruction_loss


@pytest.fixture
def windows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.normal(size=(500, 12)).astype(np.float32), rng.integers(0, 3, 500)


def test_classification_figures_are_evaluates(windows) -> None:
    import keras

    x, y = windows
    keras.utils.set_random_seed(2)
    classifier = keras.Sequential([
        keras.Input((12,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    classifier.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, accuracy = classifier.evaluate(x, y, verbose=0)
    assert classification_figures(classifier, x, y) == pytest.approx((loss, accuracy), rel=1e-5)


def test_reconstruction_loss_is_evaluates(windows) -> None:
    import keras

    x, _ = windows
    keras.utils.set_random_seed(3)
    autoencoder = keras.Sequential([
        keras.Input((12,)), keras.layers.GaussianNoise(1.0), keras.layers.Dense(4),
        keras.layers.Dense(12),
    ])  # fmt: skip
    autoencoder.compile(loss="mse")
    assert reconstruction_loss(autoencoder, x) == pytest.approx(
        autoencoder.evaluate(x, x, verbose=0), rel=1e-5
    )


def test_outputs_in_chunks_are_predicts(windows) -> None:
    import keras

    x, _ = windows
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(5)])
    np.testing.assert_allclose(outputs(model, x, chunk=64), model.predict(x, verbose=0), rtol=1e-5)
    assert outputs(model, x[:0]).shape == (0, 5)
