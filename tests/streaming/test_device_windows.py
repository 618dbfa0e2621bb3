"""The per-device windowing step, on plain pandas rows with explicit timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.settings import StreamSettings, WindowSettings
from streaming.device_windows import DeviceState, advance

T0 = 1_795_341_600_000  # aligned to the 5 s slide
SETTINGS = StreamSettings(lateness_s=0, window=WindowSettings())


def samples(start_ms: int, seconds: float, *, seq: int, label: str | None = "walking",
            rate_hz: float = 20.0, reject: str | None = None) -> pd.DataFrame:  # fmt: skip
    n = int(seconds * rate_hz)
    t = start_ms + (np.arange(n) * 1000 / rate_hz).astype(np.int64)
    return pd.DataFrame({
        "device_key": "d1", "device_id": "d1", "batch_seq": seq, "sensor": "accel", "t": t,
        "x": np.sin(t / 1000.0), "y": 9.81, "z": 0.1, "lat": np.nan, "lon": np.nan,
        "label": label, "ingest_ms": start_ms + 2500, "reject_reason": reject, "raw": None,
    })  # fmt: skip


def run(state: DeviceState, rows: pd.DataFrame, *, flush: bool = False) -> pd.DataFrame:
    return pd.DataFrame(advance(state, "d1", rows, SETTINGS, now_ms=T0 + 60_000, flush=flush))


def test_windows_are_emitted_when_the_device_watermark_passes_their_end() -> None:
    state = DeviceState()
    out = run(state, samples(T0, 12, seq=0))  # t in [0, 12) s: only [0, 10) has ended
    assert list(out["window_start_ms"]) == [T0 - 5000, T0]
    first, second = out.iloc[0], out.iloc[1]
    assert first["kind"] == "quarantine" and first["reason"] == "low coverage"
    assert second["kind"] == "window" and second["coverage"] == 1.0
    assert len(second["tensor"]) == 200 * 3 and second["label"] == "walking"
    out = run(state, samples(T0 + 12_000, 8, seq=1))
    assert list(out["window_start_ms"]) == [T0 + 5000]  # [10, 20) ends after the last sample
    assert list(out.iloc[0]["batch_seqs"]) == [0, 1]
