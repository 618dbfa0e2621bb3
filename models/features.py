"""The magnitude channel: the first layer of a classifier with ``ModelSettings.magnitude_channel``.

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

The layer has no weights; its statistics live in its config, so a saved model needs Keras and
this module (registered as ``mbd>WindowFeatures``; :meth:`Registry.load_model` imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


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
