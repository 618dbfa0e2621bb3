"""The per-device windowing step, on plain pandas rows with explicit timestamps."""

from __future__ import annotations

import json

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
        "label": label, "ingest_ms": start_ms + 2500, "record_offset": seq * 10,
        "reject_reason": reject, "raw": None,
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


def test_a_resent_batch_is_dropped_and_reported() -> None:
    state = DeviceState()
    run(state, samples(T0, 4, seq=7))
    out = run(state, samples(T0, 4, seq=7))
    assert list(out["kind"]) == ["duplicate"] and out.iloc[0]["batch_seq"] == 7
    assert len(state.t) == 80  # the resent samples were not buffered twice


def test_a_batch_resent_within_one_micro_batch_is_dropped_too() -> None:
    state = DeviceState()
    again = samples(T0, 4, seq=7).assign(record_offset=71)
    out = run(state, pd.concat([samples(T0, 4, seq=7), again]))
    assert list(out.loc[out["kind"] == "duplicate", "batch_seq"]) == [7]
    assert len(state.t) == 80


def test_late_samples_are_quarantined_not_windowed_twice() -> None:
    state = DeviceState()
    run(state, samples(T0, 20, seq=0))  # emits windows up to [5, 15)
    out = run(state, samples(T0 + 2000, 1, seq=1))  # belongs to windows already emitted
    assert set(out["kind"]) == {"quarantine"} and set(out["reason"]) == {"late"}
    assert len(out) == 20


def test_rejected_samples_go_to_quarantine_with_their_reason() -> None:
    state = DeviceState()
    rows = samples(T0, 2, seq=0)
    rows.loc[3, "reject_reason"] = "null axis"
    rows.loc[5, "reject_reason"] = "spike"
    out = run(state, rows)
    quarantined = out[out["kind"] == "quarantine"]
    assert sorted(quarantined["reason"]) == ["null axis", "spike"]
    assert len(state.t) == 38


def test_out_of_order_samples_make_the_same_window() -> None:
    ordered, shuffled = DeviceState(), DeviceState()
    rows = samples(T0, 20, seq=0)
    a = run(ordered, rows)
    b = run(shuffled, rows.sample(frac=1.0, random_state=1))
    assert np.array_equal(np.stack(a["tensor"].dropna()), np.stack(b["tensor"].dropna()))


def test_window_label_rule_mixed_or_absent_is_null() -> None:
    state = DeviceState()
    rows = pd.concat([
        samples(T0, 5, seq=0, label="walking"), samples(T0 + 5000, 5, seq=1, label="jogging"),
        samples(T0 + 10_000, 5, seq=2, label=None), samples(T0 + 15_000, 6, seq=3),
    ])  # fmt: skip
    out = run(state, rows).set_index("window_start_ms")
    assert out.loc[T0, "label"] is None  # walking + jogging
    assert out.loc[T0 + 5000, "label"] is None  # jogging + unlabelled
    out = run(state, samples(T0 + 21_000, 10, seq=4))
    assert out.set_index("window_start_ms").loc[T0 + 15_000, "label"] == "walking"


def test_flush_emits_the_open_windows_of_a_silent_phone() -> None:
    state = DeviceState()
    run(state, samples(T0, 12, seq=0))
    out = run(state, pd.DataFrame(), flush=True)
    assert list(out["window_start_ms"]) == [T0 + 5000, T0 + 10_000]
    assert list(out["kind"]) == ["quarantine", "quarantine"]  # only 7 s and 2 s of 10 covered
    assert len(state.t) == 0 and state.next_start == T0 + 15_000


def test_gaps_are_skipped_without_walking_every_empty_window() -> None:
    state = DeviceState()
    run(state, samples(T0, 10, seq=0))
    out = run(state, samples(T0 + 86_400_000, 12, seq=1))  # a day later
    starts = list(out["window_start_ms"])
    assert len(starts) <= 4 and starts[-1] == T0 + 86_400_000


def test_state_survives_its_round_trip_through_the_state_store() -> None:
    state = DeviceState()
    rows = samples(T0, 12, seq=0)
    rows.loc[rows.index[::2], "label"] = None  # labelled and unlabelled samples
    run(state, rows)
    again = DeviceState.from_text(state.to_text())
    assert (again.next_start, again.max_t, again.labels) == (
        state.next_start,
        state.max_t,
        state.labels,
    )
    assert len(again.t) > 0 and len(again.seen_seq) == 1
    for name in DeviceState.ARRAY_FIELDS:
        assert np.array_equal(getattr(again, name), getattr(state, name)), name
    # and it carries on exactly as the state it was made from
    more = samples(T0 + 12_000, 8, seq=1)
    a, b = run(state, more), run(again, more)
    assert np.array_equal(np.stack(a["tensor"].dropna()), np.stack(b["tensor"].dropna()))


def test_a_state_written_as_json_lists_by_the_previous_version_carries_on() -> None:
    rows = samples(T0, 12, seq=0)
    reference = DeviceState()
    run(reference, rows)
    kept = rows[rows["t"] >= reference.next_start].iloc[::-1]  # arrival order need not be sorted
    old = {
        "next_start": reference.next_start, "max_t": reference.max_t,
        "t": kept["t"].tolist(), "x": kept["x"].tolist(), "y": kept["y"].tolist(),
        "z": kept["z"].tolist(), "label": kept["label"].tolist(), "seq": kept["batch_seq"].tolist(),
        "ingest": kept["ingest_ms"].tolist(), "gps_t": [], "gps_lat": [], "gps_lon": [],
        "seen_seq": [0], "seen_at": [T0 + 60_000],
    }  # fmt: skip
    state = DeviceState.from_text(json.dumps(old))
    assert np.array_equal(state.t, reference.t) and np.array_equal(state.xyz, reference.xyz)
    more = samples(T0 + 12_000, 8, seq=1)
    a, b = run(reference, more), run(state, more)
    assert list(a["window_start_ms"]) == list(b["window_start_ms"]) == [T0 + 5000]
    assert np.array_equal(a.iloc[0]["tensor"], b.iloc[0]["tensor"])
    assert list(run(state, samples(T0, 1, seq=0))["kind"]) == ["duplicate"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampling_matches_a_numpy_reference(seed: int) -> None:
    from common.windows import resample

    rng = np.random.default_rng(seed)
    window = WindowSettings()
    t = np.sort(rng.integers(T0, T0 + 10_000, size=180))
    xyz = rng.normal(0, 5, size=(180, 3))
    result = resample(t, xyz, T0, window)
    grid = T0 + np.arange(200) * 50.0
    _, first = np.unique(t, return_index=True)
    reference = np.column_stack([np.interp(grid, t[first], xyz[first, i]) for i in range(3)])
    assert np.allclose(result.tensor, reference, atol=1e-5)
    cells = np.unique((t - T0) // 50)
    assert result.coverage == pytest.approx(len(cells) / 200)
