"""Splitting by device and reading the lake into training arrays."""

from __future__ import annotations

import numpy as np
import pytest

from common.settings import LakeSettings, TrainSettings
from models.data import (
    borrowed_validation_devices,
    channel_moments,
    class_weights,
    collect,
    device_split,
    lake_windows,
    mean_std,
)
from simulators.windows import hide_labels, simulate_windows, write_lake


def test_the_split_is_by_device_stable_and_near_its_fractions() -> None:
    settings = TrainSettings(holdout_fraction=0.2, validation_fraction=0.1)
    devices = [f"phone-{i}" for i in range(5000)]
    splits = [device_split(d, settings) for d in devices]
    assert splits == [device_split(d, settings) for d in devices]
    assert splits.count("holdout") / 5000 == pytest.approx(0.2, abs=0.02)
    assert splits.count("validation") / 5000 == pytest.approx(0.1, abs=0.02)
    other_salt = TrainSettings(split_salt="another")
    assert [device_split(d, other_salt) for d in devices] != splits


def test_spark_reads_the_lake_with_the_same_split_and_no_phone_on_two_sides(spark, tmp_path):
    settings = TrainSettings(lake=LakeSettings(uri=tmp_path))
    windows = hide_labels(simulate_windows(devices=30, seconds_per_device=60, seed=4),
                          keep_fraction=0.5)  # fmt: skip
    write_lake(windows, tmp_path)
    snapshot = lake_windows(spark, settings)
    assert snapshot.version == 0 and snapshot.erased == frozenset()
    frame = snapshot.windows
    rows = frame.select("device_id", "split", "y").collect()
    assert len(rows) == len(windows)
    assert all(r.split == device_split(r.device_id, settings) for r in rows)
    sides = {}
    for r in rows:
        sides.setdefault(r.device_id, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    classes = settings.wire.classes
    expected = sorted(classes.index(v) if v else -1 for v in windows["label"])
    assert sorted(r.y for r in rows) == expected

    arrays = collect(frame, settings.window.samples * 3)
    assert arrays.x.shape == (len(windows), 600) and arrays.x.dtype == np.float32
    first = windows.sort_values(["device_id", "window_start_ms"]).iloc[0]
    where = np.flatnonzero(arrays.device_id == first["device_id"])
    assert any(np.array_equal(arrays.x[i], first["tensor"]) for i in where)


def test_windows_of_another_window_size_are_left_out(spark, tmp_path):
    windows = simulate_windows(devices=2, seconds_per_device=30, seed=1)
    windows["tensor"] = [t[:300] for t in windows["tensor"]]
    write_lake(windows, tmp_path)
    settings = TrainSettings(lake=LakeSettings(uri=tmp_path))
    assert lake_windows(spark, settings).windows.count() == 0


def test_normalisation_statistics_and_class_weights() -> None:
    x = np.array([[1.0, 10.0, 0.0, 3.0, 10.0, 0.0]], np.float32)
    mean, std = mean_std([channel_moments(x[:, :3]), channel_moments(x[:, 3:])])
    magnitudes = np.array([101.0, 109.0]) ** 0.5  # of (1, 10, 0) and (3, 10, 0)
    np.testing.assert_allclose(mean, [2.0, 10.0, 0.0, magnitudes.mean()])
    np.testing.assert_allclose(std, [1.0, 0.0, 0.0, magnitudes.std()], atol=1e-6)
    assert class_weights([30, 10, 0]) == (40 / 60, 40 / 20, 0.0)
    assert class_weights([30, 10, 0], "sqrt") == pytest.approx(((40 / 60) ** 0.5, 2**0.5, 0.0))
    assert class_weights([30, 10], "none") is None


def test_a_small_fleet_borrows_training_phones_for_validation_stably() -> None:
    settings = TrainSettings(validation_fraction=0.1)
    phones = [f"sim-phone-{i:06d}" for i in range(8)]
    chosen = borrowed_validation_devices(phones, settings)
    assert len(chosen) == 1 and chosen[0] in phones
    assert borrowed_validation_devices(list(reversed(phones)), settings) == chosen
    assert len(borrowed_validation_devices([f"p{i}" for i in range(40)], settings)) == 4
    assert borrowed_validation_devices(["only-one"], settings) == []
