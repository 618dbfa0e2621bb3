"""Lake-shaped windows straight from simulated phones, without the gateway, Kafka or Spark.

Training benchmarks and tests need many windows; running them through the whole pipeline would
take as long as the phones' lives. This produces the same rows the streaming job writes: the same
phones (``Phone``), the same resampling and labelling code (``common.windows``), one row per
window with enough coverage. It also keeps the true activity of every window (``activity``,
``None`` when the phone changed activity inside it), which the lake cannot know, so experiments
can choose afterwards which windows carry a label.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from common.settings import WindowSettings
from common.windows import resample, window_label
from simulators.phone import Phone

WINDOW_COLUMNS = ["device_id", "window_start_ms", "window_end_ms", "tensor", "label", "activity"]


def _phone_windows(
    phone: Phone, seconds: float, settings: WindowSettings
) -> Iterator[tuple[int, np.ndarray, str | None]]:
    """(window start, tensor, activity or None) of every usable window in ``seconds`` of life."""
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    activities: list[np.ndarray] = []
    batches = max(1, round(seconds / phone.interval_s))
    for _ in range(batches):
        batch = phone.next_batch()
        accel = batch.body["accel"]
        times.append(np.fromiter((s["t"] for s in accel), np.int64, len(accel)))
        values.append(np.array([(s["x"], s["y"], s["z"]) for s in accel], np.float64))
        activities.append(np.full(len(accel), batch.activity, dtype=object))
    t, xyz, truth = np.concatenate(times), np.concatenate(values), np.concatenate(activities)
    first = -(-int(t.min()) // settings.slide_ms) * settings.slide_ms
    for start in range(first, int(t.max()) - settings.length_ms + 2, settings.slide_ms):
        inside = (t >= start) & (t < start + settings.length_ms)
        window = resample(t[inside], xyz[inside], start, settings)
        if window.coverage >= settings.min_coverage:
            yield start, window.tensor, window_label(truth[inside].tolist())


def simulate_windows(
    *,
    devices: int,
    seconds_per_device: float,
    seed: int = 0,
    settings: WindowSettings | None = None,
    start_ms: int = 1_795_341_600_000,
    device_prefix: str = "sim-phone-",
) -> pd.DataFrame:
    """Windows of ``devices`` simulated phones, every one labelled with its true activity.

    ``label`` follows the lake's rule (the activity when the whole window agrees, else None);
    use :func:`hide_labels` to keep only some of them.
    """
    settings = settings or WindowSettings()
    rows: list[tuple[str, int, int, np.ndarray, str | None, str | None]] = []
    for index in range(devices):
        phone = Phone(
            device_id=f"{device_prefix}{index:06d}",
            rng=np.random.default_rng([seed, index]),
            labelled=True,
            start_ms=start_ms,
            rate_hz=settings.rate_hz,
        )
        for start, tensor, activity in _phone_windows(phone, seconds_per_device, settings):
            end = start + settings.length_ms
            rows.append((phone.device_id, start, end, tensor.ravel(), activity, activity))
    return pd.DataFrame(rows, columns=WINDOW_COLUMNS)


def hide_labels(
    windows: pd.DataFrame,
    *,
    keep_fraction: float,
    seed: int = 0,
    by: Literal["window", "device"] = "window",
) -> pd.DataFrame:
    """A copy in which only ``keep_fraction`` of the windows keep a label.

    ``by="window"`` draws every window on its own, so every phone keeps about that share of its
    labels. ``by="device"`` is how labels arrive in the product (only some users annotate):
    ``round(keep_fraction × phones)`` phones, drawn at random, keep all their labels and the
    others none, so a model must carry what it learns from a few phones over to the rest.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be within [0, 1], got {keep_fraction}")
    out = windows.copy()
    rng = np.random.default_rng(seed)
    if by == "window":
        hidden = rng.random(len(out)) >= keep_fraction
    elif by == "device":
        phones = np.unique(out["device_id"].to_numpy(str))
        annotating = rng.choice(phones, size=round(keep_fraction * len(phones)), replace=False)
        hidden = ~out["device_id"].isin(annotating).to_numpy()
    else:
        raise ValueError(f"by must be 'window' or 'device', got {by!r}")
    out.loc[hidden, "label"] = None
    return out


def write_lake(windows: pd.DataFrame, lake_dir: Path) -> Path:
    """Append windows to the lake's Delta table of windows, as the streaming job does."""
    from deltalake import write_deltalake

    path = lake_dir / "windows"
    starts = windows["window_start_ms"].to_numpy(np.int64)
    table = pa.table(
        {
            "device_id": pa.array(windows["device_id"], pa.string()),
            "window_start_ms": pa.array(starts),
            "window_end_ms": pa.array(windows["window_end_ms"].to_numpy(np.int64)),
            "tensor": pa.array([np.asarray(t, np.float32) for t in windows["tensor"]],
                               pa.list_(pa.float32())),
            "label": pa.array(windows["label"], pa.string()),
            "date": pa.array(pd.to_datetime(starts, unit="ms").strftime("%Y-%m-%d")),
        }
    )  # fmt: skip
    write_deltalake(str(path), table, mode="append", partition_by=["date"])
    return path
