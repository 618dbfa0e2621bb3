"""Hiding labels of simulated windows: per window, or per phone as annotating users do."""

from __future__ import annotations

import pandas as pd
import pytest

from simulators.windows import hide_labels


def labelled_windows(phones: int, per_phone: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device_id": [f"phone-{p:03d}" for p in range(phones) for _ in range(per_phone)],
            "window_start_ms": [5_000 * w for _ in range(phones) for w in range(per_phone)],
            "label": ["walking"] * (phones * per_phone),
        }
    )


def test_by_window_keeps_about_the_fraction_on_every_phone_and_leaves_the_input_alone() -> None:
    windows = labelled_windows(phones=20, per_phone=500)
    kept = hide_labels(windows, keep_fraction=0.1, seed=3)
    labelled = kept["label"].notna()
    assert labelled.mean() == pytest.approx(0.1, abs=0.01)
    assert kept.loc[labelled, "device_id"].nunique() == 20
    assert windows["label"].notna().all()
    assert kept.equals(hide_labels(windows, keep_fraction=0.1, seed=3))


def test_by_device_keeps_every_label_of_exactly_that_share_of_phones_and_none_of_the_rest() -> None:
    windows = labelled_windows(phones=150, per_phone=8)
    kept = hide_labels(windows, keep_fraction=0.1, seed=3, by="device")
    labelled_per_phone = kept.groupby("device_id")["label"].count()
    assert (labelled_per_phone == 8).sum() == 15
    assert (labelled_per_phone == 0).sum() == 135
    other = hide_labels(windows, keep_fraction=0.1, seed=4, by="device")
    assert set(other.dropna()["device_id"]) != set(kept.dropna()["device_id"])


@pytest.mark.parametrize("by", ["window", "device"])
def test_the_extremes_keep_all_or_nothing(by: str) -> None:
    windows = labelled_windows(phones=10, per_phone=3)
    assert hide_labels(windows, keep_fraction=1.0, by=by)["label"].notna().all()  # type: ignore[arg-type]
    assert hide_labels(windows, keep_fraction=0.0, by=by)["label"].isna().all()  # type: ignore[arg-type]


def test_a_fraction_outside_zero_to_one_or_an_unknown_mode_is_refused() -> None:
    windows = labelled_windows(phones=2, per_phone=2)
    with pytest.raises(ValueError, match=r"got 1\.5"):
        hide_labels(windows, keep_fraction=1.5)
    with pytest.raises(ValueError, match="'user'"):
        hide_labels(windows, keep_fraction=0.5, by="user")  # type: ignore[arg-type]
