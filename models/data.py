"""The training data: lake windows, split by device, as numpy arrays or Spark partitions.

Devices, never windows, are split: a stable hash of ``salt:device_id`` puts every phone in
``holdout`` (evaluation and the promotion gate), ``validation`` (when to stop) or ``train``,
in Python and in Spark alike, so a phone stays on its side of the split across every retraining
run and a held-out phone never reaches the training windows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

from common.erasure import ErasedDevices
from common.lake import WINDOWS, local_path, open_table, table_uri
from common.settings import TrainSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

Split = Literal["train", "validation", "holdout"]
HASH_SPAN = float(1 << 32)


class NotEnoughData(RuntimeError):
    """The lake holds too few windows (or labelled windows) to train on."""


def _bucket(device_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{device_id}".encode()).hexdigest()
    return int(digest[:8], 16) / HASH_SPAN


def device_split(device_id: str, settings: TrainSettings) -> Split:
    bucket = _bucket(device_id, settings.split_salt)
    if bucket < settings.holdout_fraction:
        return "holdout"
    if bucket < settings.holdout_fraction + settings.validation_fraction:
        return "validation"
    return "train"


def borrowed_validation_devices(labelled_train_devices: Sequence[str],
                                settings: TrainSettings) -> list[str]:  # fmt: skip
    """Training phones to validate on when no validation phone carries labels (a small fleet).

    The same share as ``validation_fraction`` (at least one, never all), chosen by the hash so
    the choice is stable; held-out phones are never touched.
    """
    if len(labelled_train_devices) < 2:
        return []
    share = round(len(labelled_train_devices) * settings.validation_fraction)
    count = min(max(1, share), len(labelled_train_devices) - 1)
    ranked = sorted(labelled_train_devices, key=lambda d: _bucket(d, settings.split_salt))
    return ranked[-count:]


def split_column(device_id: Column, settings: TrainSettings) -> Column:
    """:func:`device_split` as a Spark expression."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.concat(F.lit(f"{settings.split_salt}:"), device_id), 256)
    bucket = F.conv(F.substring(digest, 1, 8), 16, 10).cast("double") / HASH_SPAN
    holdout, validation = settings.holdout_fraction, settings.validation_fraction
    return (
        F.when(bucket < holdout, "holdout")
        .when(bucket < holdout + validation, "validation")
        .otherwise("train")
    )


def label_index(label: Column, classes: Sequence[str]) -> Column:
    """Class index of the label, -1 for a window without one (or with a class not configured)."""
    from pyspark.sql import functions as F

    position = F.array_position(F.array(*[F.lit(name) for name in classes]), label)
    return F.coalesce(position.cast("int") - 1, F.lit(-1))


@dataclass(frozen=True)
class LakeSnapshot:
    """The windows of one version of the lake's windows table, erased phones left out."""

    windows: DataFrame
    version: int
    erased: frozenset[str]


class SnapshotGone(ValueError):
    """The version asked for names files that a vacuum (after an erasure) has removed."""


def _check_files_present(uri: str, version: int) -> None:
    table = open_table(uri, version=version)
    missing = [
        file
        for file in table.file_uris()
        if (path := local_path(file)) is not None and not path.exists()
    ]
    if missing:
        raise SnapshotGone(
            f"version {version} of {uri} needs {len(missing)} files that were vacuumed (an "
            f"erasure or `mbd lake compact` removed them, e.g. {missing[0]}); train on a later "
            "version"
        )


def lake_windows(
    spark: SparkSession, settings: TrainSettings, *, as_of: int | None = None
) -> LakeSnapshot:
    """Windows of the lake as (device_id, window_start_ms, tensor, y, split), read by Spark
    from version ``as_of`` of the windows table (default: the newest)."""
    from pyspark.sql import functions as F

    uri = table_uri(settings.lake, WINDOWS)
    table = open_table(uri)
    if table is None:
        raise NotEnoughData(f"no lake windows at {uri}: has the streaming job written any?")
    newest = table.version()
    version = newest if as_of is None else as_of
    if version > newest:
        raise SnapshotGone(f"the windows table of {uri} has versions up to {newest}, not {as_of}")
    _check_files_present(uri, version)
    erased = ErasedDevices(settings.lake).current()
    input_dim = settings.window.samples * 3
    windows = spark.read.format("delta").option("versionAsOf", version).load(uri)
    if erased:
        windows = windows.where(~F.col("device_id").isin(sorted(erased)))
    frame = windows.where(F.size("tensor") == input_dim).select(
        "device_id",
        "window_start_ms",
        F.col("tensor").cast("array<float>").alias("tensor"),
        label_index(F.col("label"), settings.wire.classes).alias("y"),
        split_column(F.col("device_id"), settings).alias("split"),
    )
    return LakeSnapshot(frame, version, erased)


def arrow_to_numpy(
    table: pa.Table | pa.RecordBatch, input_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (n, input_dim), y int32 (n,)) from Arrow columns ``tensor`` and ``y``."""
    tensors = table.column("tensor")
    if isinstance(tensors, pa.ChunkedArray):
        tensors = tensors.combine_chunks()
    flat = tensors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    x = flat.reshape(len(table), input_dim)
    y = table.column("y").to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return x, y


@dataclass(frozen=True)
class WindowArrays:
    """Windows collected to the driver: tensors, class indices and their devices."""

    x: np.ndarray
    y: np.ndarray
    device_id: np.ndarray

    @property
    def labelled(self) -> WindowArrays:
        keep = self.y >= 0
        return WindowArrays(self.x[keep], self.y[keep], self.device_id[keep])

    def __len__(self) -> int:
        return len(self.y)


def collect(windows: DataFrame, input_dim: int) -> WindowArrays:
    table = windows.select("tensor", "y", "device_id").toArrow()
    x, y = arrow_to_numpy(table, input_dim)
    devices = np.asarray(table.column("device_id").to_pylist(), dtype=object)
    return WindowArrays(x, y, devices)


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(sum, sum of squares) per channel (x, y, z, magnitude) as a (2, 4) array, and the number
    of samples behind it."""
    samples = x.reshape(-1, 3).astype(np.float64)
    channels = np.column_stack([samples, np.sqrt(np.square(samples).sum(axis=1))])
    return np.stack([channels.sum(axis=0), np.square(channels).sum(axis=0)]), len(samples)


def mean_std(moments: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    total = sum(count for _, count in moments)
    if total == 0:
        raise NotEnoughData("no training samples to normalise with")
    sums = np.sum([m for m, _ in moments], axis=0)
    mean = sums[0] / total
    std = np.sqrt(np.maximum(sums[1] / total - np.square(mean), 0.0))
    return mean, std


def class_weights(
    counts: Sequence[int], mode: Literal["balanced", "sqrt", "none"] = "balanced"
) -> tuple[float, ...] | None:
    """Loss weight per class from its count: ``balanced`` n / (k · nᵢ), so every class weighs
    the same; ``sqrt`` the square root of that (rare classes count more, without swamping the
    common ones); ``none``: no weights. Absent classes get 0."""
    if mode == "none":
        return None
    present = [c for c in counts if c > 0]
    total, k = sum(present), len(present)
    power = 1.0 if mode == "balanced" else 0.5
    return tuple((total / (k * c)) ** power if c > 0 else 0.0 for c in counts)
