"""The window's spectrum in numpy: what :class:`models.features.WindowSpectrum` computes before
standardising, and a partition's share of the statistics it standardises with. Numpy only, so
Spark tasks, tests and the layer's width share it without Keras."""

from __future__ import annotations

import numpy as np


def spectrum_width(samples: int) -> int:
    """How many spectrum features a window of ``samples`` samples gives: per axis its mean and
    the magnitude of each of its ``samples // 2`` non-zero frequencies."""
    return 3 + 3 * (samples // 2)


def spectrum_features(windows: np.ndarray, samples: int) -> np.ndarray:
    """The features of :class:`models.features.WindowSpectrum` before standardising, in numpy:
    ``(n, samples·3)`` window tensors → ``(n, 3 + 3·(samples // 2))``; ``n`` may be 0 (an
    empty partition)."""
    xyz = windows.reshape(-1, samples, 3).transpose(0, 2, 1).astype(np.float64)
    mean = xyz.mean(axis=-1)
    magnitude = np.abs(np.fft.rfft(xyz - mean[..., None], axis=-1))[..., 1:]
    spectrum = np.log1p(magnitude).reshape(len(xyz), spectrum_width(samples) - 3)
    return np.concatenate([mean, spectrum], axis=1)


def spectrum_moments(windows: np.ndarray, samples: int) -> tuple[np.ndarray, int]:
    """(sum, sum of squares) of every spectrum feature as a (2, features) array, and the number
    of windows behind it: a partition's share of the standardising statistics."""
    features = spectrum_features(windows, samples)
    return np.stack([features.sum(axis=0), np.square(features).sum(axis=0)]), len(features)
