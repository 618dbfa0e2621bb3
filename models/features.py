"""Input layers that turn the lake's window tensor into what the encoders read.

Two options of :class:`~common.settings.ModelSettings` choose the first layer of a classifier:

* ``input_features="spectrum"`` (the default): :class:`WindowSpectrum`, the window's spectrum;
* ``input_features="samples"``: Keras' own ``Normalization`` standardises the samples, or with
  ``magnitude_channel`` :class:`WindowFeatures` does and adds their magnitude.

The magnitude channel
---------------------
The lake's tensor is ``samples × 3`` values in m/s², flattened sample by sample. This layer
standardises each axis with statistics of the training windows, frozen into the model, as
Keras' ``Normalization`` does for a model without the channel, and appends a fourth channel: the
acceleration's magnitude at every sample, standardised the same way. The magnitude does not
depend on how the phone sits in the pocket, which every phone does differently.

It is a trade-off, so it is off by default. On the training bench's windows (2026-11-24,
``bench/results/training-labels10-magnitude.json``), with 10 % of the phones annotating, it
raised held-out macro-F1 in every one of ten draws without pretraining (mean 0.879 → 0.929) and
in nine with it (0.889 → 0.921). With every phone's labels, in one run, it lowered it (0.973 /
0.968 / 0.963 → 0.930 / 0.945 / 0.940 in runs (a) / (b) / (c); their downstairs F1 was 0.61-0.69,
every other class's at least 0.97) and took longer to reach the target.

The spectrum
------------
Per axis: the window's mean (the direction of gravity, which tells sitting from standing) and
the log magnitude, ``log(1 + |rfft|)``, of every non-zero frequency of the signal less that
mean. A gait's spectrum hardly depends on where in the window its steps fall (a shift around
the window leaves it unchanged), where a dense layer on the samples must learn a step at every
offset. Each of these ``3 + 3 · samples // 2`` features is standardised with statistics of the
training windows (:func:`models.spectrum.spectrum_moments`, numpy only).

On the training bench (2026-11-24, ``bench/results/training-spectrum.json``) it raised
held-out macro-F1 with every phone's labels from 0.973 / 0.968 / 0.963 to 0.997 / 0.998 / 0.994
in runs (a) / (b) / (c), reaching the validation target sooner (60 / 56 / 40 s against 79 / 98 /
70 s in the samples' suite run; 10 / 10 / 12 rounds in all against 17 / 13 / 13), and with
10 % of the phones annotating from 0.889 with pretraining and 0.879 without to 0.988 and 0.985,
so it is the default.

The layers have no weights; their statistics live in their config, so a saved model needs Keras
and this module (registered as ``mbd>WindowFeatures`` and ``mbd>WindowSpectrum``;
:meth:`Registry.load_model` imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from models.spectrum import spectrum_width


@keras.saving.register_keras_serializable(package="mbd")
class WindowFeatures(keras.layers.Layer):
    """``(batch, samples·3)`` window tensors → ``(batch, samples·4)`` features: the standardised
    axes as they come, then the standardised magnitude of every sample."""

    def __init__(
        self,
        *,
        samples: int,
        axis_mean: Sequence[float],
        axis_std: Sequence[float],
        magnitude_mean: float,
        magnitude_std: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(axis_mean) != 3 or len(axis_std) != 3:
            raise ValueError(f"one mean and std per axis: got {list(axis_mean)}, {list(axis_std)}")
        self.samples = int(samples)
        self.axis_mean = [float(v) for v in axis_mean]
        self.axis_std = [float(v) for v in axis_std]
        self.magnitude_mean = float(magnitude_mean)
        self.magnitude_std = float(magnitude_std)

    def call(self, windows: Any) -> Any:
        xyz = ops.reshape(windows, (-1, self.samples, 3))
        mean = np.asarray(self.axis_mean, np.float32)
        std = np.asarray(self.axis_std, np.float32)
        axes = ops.reshape((xyz - mean) / std, (-1, self.samples * 3))
        magnitude = ops.sqrt(ops.sum(ops.square(xyz), axis=-1))
        standardised = (magnitude - self.magnitude_mean) / self.magnitude_std
        return ops.concatenate([axes, standardised], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        return (input_shape[0], self.samples * 4)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "samples": self.samples,
            "axis_mean": self.axis_mean,
            "axis_std": self.axis_std,
            "magnitude_mean": self.magnitude_mean,
            "magnitude_std": self.magnitude_std,
        }


@keras.saving.register_keras_serializable(package="mbd")
class WindowSpectrum(keras.layers.Layer):
    """``(batch, samples·3)`` window tensors → ``(batch, 3 + 3·(samples // 2))`` standardised
    spectrum features: each axis's mean, then each axis's log magnitude per frequency."""

    def __init__(
        self,
        *,
        samples: int,
        feature_mean: Sequence[float],
        feature_std: Sequence[float],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.samples = int(samples)
        self.features = spectrum_width(self.samples)
        if len(feature_mean) != self.features or len(feature_std) != self.features:
            raise ValueError(
                f"{self.samples} samples give {self.features} spectrum features: got "
                f"{len(feature_mean)} means and {len(feature_std)} standard deviations"
            )
        self.feature_mean = [float(v) for v in feature_mean]
        self.feature_std = [float(v) for v in feature_std]

    def call(self, windows: Any) -> Any:
        xyz = ops.transpose(ops.reshape(windows, (-1, self.samples, 3)), (0, 2, 1))
        mean = ops.mean(xyz, axis=-1)
        real, imaginary = ops.rfft(xyz - ops.expand_dims(mean, -1))
        magnitude = ops.sqrt(ops.square(real) + ops.square(imaginary))[..., 1:]
        spectrum = ops.reshape(ops.log1p(magnitude), (-1, self.features - 3))
        features = ops.concatenate([mean, spectrum], axis=-1)
        centre = np.asarray(self.feature_mean, np.float32)
        return (features - centre) / np.asarray(self.feature_std, np.float32)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        return (input_shape[0], self.features)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "samples": self.samples,
            "feature_mean": self.feature_mean,
            "feature_std": self.feature_std,
        }
