"""Keras models built from configuration: shapes, normalisation, save and reload."""

from __future__ import annotations

import os

import numpy as np
import pytest

from common.settings import ModelSettings
from models.build import (
    ModelSpec,
    build_autoencoder,
    build_classifier,
    build_encoder_stack,
    copy_encoder,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLASSES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")


def spec(*, magnitude_channel: bool = True, **changes: object) -> ModelSpec:
    settings = ModelSettings(encoder_units=(16, 8), dropout=0.0, input_features="samples",
                             magnitude_channel=magnitude_channel)  # fmt: skip
    base = ModelSpec.from_settings(
        settings,
        input_dim=30,
        classes=CLASSES,
        axis_mean=(0.0, 9.8, 1.0),
        axis_std=(2, 4, 1),
        magnitude=(9.0, 2.0),
    )
    return ModelSpec.from_json({**base.to_json(), **changes})


def test_classifier_outputs_a_distribution_over_the_classes() -> None:
    model = build_classifier(spec())
    probabilities = np.asarray(model(np.random.default_rng(0).normal(size=(5, 30)).astype("f4")))
    assert probabilities.shape == (5, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    names = [layer.name for layer in model.layers]
    assert names[1:] == ["normalise", "encoder_0", "encoder_1", "activity"]


def test_the_frozen_features_standardise_each_axis_and_the_magnitude() -> None:
    stack = build_encoder_stack(spec(), 0)
    samples = np.random.default_rng(2).normal(5.0, 4.0, size=(10, 3)).astype(np.float32)
    features = np.asarray(stack(samples.reshape(1, 30)))[0]  # sample by sample, as the lake
    assert features.shape == (40,) == (spec().layer_input_dim(0),)
    axes = (samples - [0.0, 9.8, 1.0]) / [2.0, 4.0, 1.0]
    np.testing.assert_allclose(features[:30], axes.reshape(30), rtol=1e-5, atol=1e-5)
    magnitudes = np.linalg.norm(samples, axis=1)
    np.testing.assert_allclose(features[30:], (magnitudes - 9.0) / 2.0, rtol=1e-5, atol=1e-5)


def test_without_the_channel_keras_normalization_standardises_each_axis() -> None:
    stack = build_encoder_stack(spec(magnitude_channel=False), 0)
    assert type(stack.get_layer("normalise")).__name__ == "Normalization"  # loads anywhere
    window = np.tile(np.array([2.0, 17.8, 1.0], np.float32), 10)[None, :]  # mean + (1, 2, 0) std
    np.testing.assert_allclose(
        np.asarray(stack(window))[0], np.tile([1.0, 2.0, 0.0], 10), atol=1e-5
    )


def test_a_spec_without_the_magnitude_channel_reads_the_axes_alone() -> None:
    # as every model saved before the channel existed: its config has no magnitude fields
    old = {k: v for k, v in spec().to_json().items() if not k.startswith("magnitude")}
    s = ModelSpec.from_json(old)
    assert s.magnitude_mean is None and s.layer_input_dim(0) == 30
    assert build_encoder_stack(s, 0).output_shape == (None, 30)
    off = ModelSpec.from_settings(
        ModelSettings(input_features="samples"), input_dim=30, classes=CLASSES,
        axis_mean=(0, 0, 0), axis_std=(1, 1, 1), magnitude=(9.8, 2.0),
    )  # fmt: skip
    assert off.magnitude_mean is None
    with pytest.raises(ValueError, match=r"magnitude_channel is on: give the magnitude"):
        ModelSpec.from_settings(
            ModelSettings(magnitude_channel=True, input_features="samples"), input_dim=30,
            classes=CLASSES, axis_mean=(0, 0, 0), axis_std=(1, 1, 1),
        )  # fmt: skip


@pytest.mark.parametrize("magnitude_channel", [True, False])
def test_saved_model_reloads_with_the_same_predictions(tmp_path, magnitude_channel: bool) -> None:
    import keras

    model = build_classifier(spec(magnitude_channel=magnitude_channel))
    x = np.random.default_rng(1).normal(9, 3, size=(8, 30)).astype("f4")
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6)


def test_autoencoder_reconstructs_its_layer_input_and_its_encoder_moves_across() -> None:
    s = spec()
    first, second = build_autoencoder(s, 0), build_autoencoder(s, 1)
    assert first.input_shape == (None, 40) and first.output_shape == (None, 40)
    assert second.input_shape == (None, 16) and second.output_shape == (None, 16)
    classifier = build_classifier(s)
    copy_encoder(second, classifier, 1)
    for mine, theirs in zip(
        classifier.get_layer("encoder_1").get_weights(),
        second.get_layer("encoder").get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(mine, theirs)


def test_spec_round_trips_through_json_and_rejects_odd_input() -> None:
    s = spec()
    assert ModelSpec.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="input_dim 31"):
        ModelSpec.from_settings(
            ModelSettings(), input_dim=31, classes=CLASSES, axis_mean=(0, 0, 0), axis_std=(1, 1, 1)
        )


def test_model_settings_name_bad_sizes() -> None:
    assert ModelSettings(encoder_units="64, 32").encoder_units == (64, 32)
    with pytest.raises(ValueError, match=r"encoder_units must be one or more positive sizes"):
        ModelSettings(encoder_units=(64, 0))


def test_model_settings_refuse_corruption_that_keras_cannot_build() -> None:
    assert ModelSettings(noise_stddev=1.0).noise_stddev == 1.0
    with pytest.raises(ValueError, match=r"noise_stddev[\s\S]*less than or equal to 1"):
        ModelSettings(noise_stddev=1.5)
