"""The spectrum input: the layer matches its numpy twin, ignores where in the window a step
falls, saves and reloads, and its settings fail fast."""

from __future__ import annotations

import os

import numpy as np
import pytest

from common.settings import ModelSettings
from models.build import ModelSpec, build_autoencoder, build_classifier, build_encoder_stack
from models.data import mean_std
from models.spectrum import spectrum_features, spectrum_moments

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLASSES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")
SAMPLES = 16  # 3 means + 3 × 8 frequencies


def windows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES)
    xyz = rng.normal(0, 0.5, (n, SAMPLES, 3)) + np.array([0.5, 9.8, 1.0])
    xyz[:, :, 1] += 3 * np.sin(2 * np.pi * t / 8 + rng.uniform(0, 6, (n, 1)))
    return xyz.reshape(n, SAMPLES * 3).astype(np.float32)


def spectrum_spec(train: np.ndarray) -> ModelSpec:
    statistics = mean_std([spectrum_moments(part, SAMPLES) for part in np.array_split(train, 3)])
    return ModelSpec.from_settings(
        ModelSettings(encoder_units=(16, 8), dropout=0.0, input_features="spectrum"),
        input_dim=SAMPLES * 3, classes=CLASSES, axis_mean=(0, 9.8, 0), axis_std=(1, 1, 1),
        magnitude=(9.8, 1.0), spectrum=statistics,
    )  # fmt: skip


def test_the_layer_standardises_the_numpy_features_with_the_partitions_statistics() -> None:
    train = windows(300, seed=1)
    spec = spectrum_spec(train)
    assert spec.layer_input_dim(0) == 3 + 3 * (SAMPLES // 2) == len(spec.spectrum_mean or ())
    features = np.asarray(build_encoder_stack(spec, 0)(train))
    raw = spectrum_features(train, SAMPLES)
    expected = (raw - raw.mean(axis=0)) / raw.std(axis=0)  # statistics summed over 3 partitions
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(raw[:, :3], train.reshape(-1, SAMPLES, 3).mean(axis=1), rtol=1e-5)


def test_an_empty_partition_adds_nothing_to_the_statistics() -> None:
    train = windows(50, seed=6)
    empty = np.zeros((0, SAMPLES * 3), np.float32)  # a Spark partition without windows
    sums, count = spectrum_moments(empty, SAMPLES)
    assert count == 0 and sums.shape == (2, 3 + 3 * (SAMPLES // 2)) and not sums.any()
    with_empty = mean_std([spectrum_moments(train, SAMPLES), (sums, count)])
    for mine, theirs in zip(with_empty, mean_std([spectrum_moments(train, SAMPLES)]), strict=True):
        np.testing.assert_allclose(mine, theirs)


def test_a_step_reads_the_same_wherever_in_the_window_it_falls() -> None:
    spec = spectrum_spec(windows(100, seed=2))
    stack = build_encoder_stack(spec, 0)
    window = windows(1, seed=3).reshape(SAMPLES, 3)
    shifted = np.roll(window, 5, axis=0)  # the same gait, five samples later
    assert not np.allclose(window, shifted)
    np.testing.assert_allclose(
        np.asarray(stack(shifted.reshape(1, -1))), np.asarray(stack(window.reshape(1, -1))),
        rtol=1e-4, atol=1e-4,
    )  # fmt: skip


def test_a_spectrum_model_saves_reloads_and_pretrains_on_the_features(tmp_path) -> None:
    import keras

    spec = spectrum_spec(windows(100, seed=4))
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert build_autoencoder(spec, 0).input_shape == (None, spec.layer_input_dim(0))
    model = build_classifier(spec)
    x = windows(8, seed=5)
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_the_settings_fail_fast() -> None:
    with pytest.raises(ValueError, match=r"needs MBD_MODEL_INPUT_FEATURES=samples; input_fea"):
        ModelSettings(magnitude_channel=True)
    with pytest.raises(ValueError, match=r"input_features is 'spectrum': give its features"):
        ModelSpec.from_settings(
            ModelSettings(input_features="spectrum"), input_dim=SAMPLES * 3, classes=CLASSES,
            axis_mean=(0, 0, 0), axis_std=(1, 1, 1),
        )  # fmt: skip
    from models.features import WindowSpectrum

    with pytest.raises(ValueError, match=r"16 samples give 27 spectrum features: got 3 means"):
        WindowSpectrum(samples=SAMPLES, feature_mean=[0.0] * 3, feature_std=[1.0] * 27)
