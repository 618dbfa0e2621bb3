"""Windows: the one implementation that turns raw samples into the model's input.

The streaming job and ``POST /v1/predict`` both call these functions, so training and serving
never skew. A window of ``length`` seconds is resampled onto a fixed grid of ``rate × length``
points by linear interpolation of each axis (edges held); its coverage is the share of grid
cells (one sampling period wide) that hold at least one real sample. A window is usable only
when its coverage reaches the configured minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.settings import WindowSettings

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class WindowTensor:
    tensor: np.ndarray  # (samples, 3) float32, m/s²
    coverage: float
    samples_used: int


def window_starts_containing(t_ms: int, settings: WindowSettings) -> list[int]:
    """Starts (epoch ms, aligned to the slide) of every window that contains ``t_ms``."""
    slide, length = settings.slide_ms, settings.length_ms
    last = (t_ms // slide) * slide
    first = last - ((length - 1) // slide) * slide
    return [start for start in range(first, last + 1, slide) if start <= t_ms < start + length]


def resample(
    t_ms: np.ndarray, xyz: np.ndarray, start_ms: int, settings: WindowSettings
) -> WindowTensor:
    """Resample one window's samples (any order, duplicates allowed) onto the fixed grid."""
    n = settings.samples
    period_ms = 1000.0 / settings.rate_hz
    inside = (t_ms >= start_ms) & (t_ms < start_ms + settings.length_ms)
    t, values = t_ms[inside].astype(np.float64), np.asarray(xyz, dtype=np.float64)[inside]
    if len(t) == 0:
        return WindowTensor(np.zeros((n, 3), np.float32), 0.0, 0)
    order = np.argsort(t, kind="stable")
    t, values = t[order], values[order]
    keep = np.concatenate(([True], np.diff(t) > 0))  # one value per instant: the first
    t, values = t[keep], values[keep]
    grid = start_ms + np.arange(n) * period_ms
    tensor = np.column_stack([np.interp(grid, t, values[:, axis]) for axis in range(3)])
    cells = np.unique(np.floor((t - start_ms) / period_ms).astype(np.int64))
    coverage = float(np.count_nonzero((cells >= 0) & (cells < n))) / n
    return WindowTensor(tensor.astype(np.float32), coverage, len(t))


def window_label(labels: Sequence[str | None]) -> str | None:
    """The label all samples agree on; mixed or absent labels give None."""
    distinct = set(labels)
    if len(distinct) != 1:
        return None
    (label,) = distinct
    return label


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def gps_summary(t_ms: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[float | None, float]:
    """(mean speed m/s, distance m) along the fixes in time order; speed is None for < 2 fixes."""
    if len(t_ms) < 2:
        return None, 0.0
    order = np.argsort(t_ms, kind="stable")
    t, la, lo = t_ms[order], lat[order], lon[order]
    distance = sum(haversine_m(la[i], lo[i], la[i + 1], lo[i + 1]) for i in range(len(t) - 1))
    span_s = (t[-1] - t[0]) / 1000.0
    return (distance / span_s if span_s > 0 else None), distance
