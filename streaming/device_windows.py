"""Per-device event time: dedupe batches, buffer samples, emit sliding windows, quarantine the rest.

Each phone has its own clock (some are skewed), so event time advances per device: a device's
watermark is the latest sample time it sent minus the allowed lateness. Windows (aligned to the
slide) are emitted once the device's watermark passes their end, resampled by the shared
:mod:`common.windows` code; those below the coverage minimum go to quarantine with the reason.
A sample that arrives after all windows containing it were emitted is quarantined as late.
Resent batches (same ``batch_seq``) are dropped and reported as ``duplicate`` rows. A phone that
falls silent is flushed after ``idle_flush_s`` (its remaining windows emitted), keeping a small
tombstone so late arrivals cannot produce a window twice.

:func:`advance` is plain numpy/pandas over a :class:`DeviceState`; :func:`spark_step` adapts it
to ``applyInPandasWithState``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.settings import StreamSettings
from common.windows import gps_summary, resample, window_label, window_starts_containing
from streaming.schema import OUTPUT
from streaming.steps import UNPARSEABLE_KEY

OUTPUT_COLUMNS = [f.name for f in OUTPUT.fields]


@dataclass
class DeviceState:
    next_start: int | None = None  # earliest window not yet emitted
    max_t: int | None = None
    t: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    z: list[float] = field(default_factory=list)
    label: list[str | None] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    ingest: list[int] = field(default_factory=list)
    gps_t: list[int] = field(default_factory=list)
    gps_lat: list[float] = field(default_factory=list)
    gps_lon: list[float] = field(default_factory=list)
    seen_seq: list[int] = field(default_factory=list)
    seen_at: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DeviceState:
        return cls(**json.loads(text))


def _row(kind: str, device_id: str | None, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(OUTPUT_COLUMNS)
    row.update(kind=kind, device_id=device_id, **values)
    return row


def _quarantine(device_id: str | None, reason: str, **values: Any) -> dict[str, Any]:
    return _row("quarantine", device_id, reason=reason, **values)


def advance(
    state: DeviceState,
    device_id: str,
    rows: pd.DataFrame,
    settings: StreamSettings,
    *,
    now_ms: int,
    flush: bool = False,
) -> list[dict[str, Any]]:
    """Take one micro-batch of this device's rows; returns the rows to emit (state is updated)."""
    out: list[dict[str, Any]] = []
    window = settings.window
    if len(rows):
        rows = _drop_seen_batches(state, device_id, rows, now_ms, settings, out)
        rejected = rows[rows["reject_reason"].notna()]
        out += [
            _quarantine(device_id, r.reject_reason, batch_seq=r.batch_seq, t=r.t)
            for r in rejected.itertuples()
        ]
        clean = rows[rows["reject_reason"].isna()]
        accel = clean[clean["sensor"] == "accel"]
        if state.next_start is not None and len(accel):
            late = accel["t"].to_numpy() < state.next_start
            out += [
                _quarantine(device_id, "late", detail=f"windows before {state.next_start} emitted",
                            batch_seq=r.batch_seq, t=r.t)
                for r in accel[late].itertuples()
            ]  # fmt: skip
            accel = accel[~late]
        _buffer(state, accel, clean[clean["sensor"] == "gps"])
    if not state.t:
        return out
    if state.next_start is None:
        state.next_start = window_starts_containing(min(state.t), window)[0]
    watermark = None if flush else (state.max_t or 0) - int(settings.lateness_s * 1000)
    out += _emit(state, device_id, window_end_limit=watermark, settings=settings, now_ms=now_ms)
    return out


def _drop_seen_batches(
    state: DeviceState, device_id: str, rows: pd.DataFrame, now_ms: int,
    settings: StreamSettings, out: list[dict[str, Any]],
) -> pd.DataFrame:  # fmt: skip
    horizon = now_ms - int(settings.dedupe_horizon_s * 1000)
    kept = [(s, at) for s, at in zip(state.seen_seq, state.seen_at, strict=True) if at >= horizon]
    seen = {s for s, _ in kept}
    # A batch resent soon after may arrive in the same micro-batch: keep its first record only.
    first = rows.groupby("batch_seq")["record_offset"].transform("min")
    repeated = rows["record_offset"] != first
    duplicates = [
        int(seq) for seq, offsets in rows[repeated].groupby("batch_seq")["record_offset"]
        for _ in range(offsets.nunique())
    ]  # fmt: skip
    rows = rows[~repeated]
    incoming = pd.unique(rows["batch_seq"].astype("int64"))
    duplicates += [int(s) for s in incoming if s in seen]
    kept += [(int(s), now_ms) for s in incoming if s not in seen]
    state.seen_seq, state.seen_at = [s for s, _ in kept], [at for _, at in kept]
    out += [_row("duplicate", device_id, batch_seq=s) for s in duplicates]
    return rows[~rows["batch_seq"].isin(seen)]


def _buffer(state: DeviceState, accel: pd.DataFrame, gps: pd.DataFrame) -> None:
    if len(accel):
        state.t += accel["t"].astype("int64").tolist()
        for axis in "xyz":
            getattr(state, axis).extend(accel[axis].astype("float64").tolist())
        state.label += [None if pd.isna(v) else v for v in accel["label"]]
        state.seq += accel["batch_seq"].astype("int64").tolist()
        state.ingest += accel["ingest_ms"].astype("int64").tolist()
        top = int(accel["t"].max())
        state.max_t = top if state.max_t is None else max(state.max_t, top)
    if len(gps):
        state.gps_t += gps["t"].astype("int64").tolist()
        state.gps_lat += gps["lat"].astype("float64").tolist()
        state.gps_lon += gps["lon"].astype("float64").tolist()


def _emit(
    state: DeviceState, device_id: str, *, window_end_limit: int | None,
    settings: StreamSettings, now_ms: int,
) -> list[dict[str, Any]]:  # fmt: skip
    window = settings.window
    out: list[dict[str, Any]] = []
    t = np.asarray(state.t, dtype=np.int64)
    xyz = np.column_stack([state.x, state.y, state.z])
    gps_t = np.asarray(state.gps_t, dtype=np.int64)
    start = state.next_start
    assert start is not None
    last_t = int(t.max())
    while (window_end_limit is None and start <= last_t) or (
        window_end_limit is not None and start + window.length_ms <= window_end_limit
    ):
        inside = (t >= start) & (t < start + window.length_ms)
        if not inside.any():
            later = t[t >= start]
            if len(later) == 0:
                start = last_t + 1  # nothing more to emit
                break
            # Skip a silent stretch in one step rather than window by window.
            start = max(
                start + window.slide_ms, window_starts_containing(int(later.min()), window)[0]
            )
            continue
        out.append(_window_row(state, device_id, start, t, xyz, inside, gps_t, settings, now_ms))
        start += window.slide_ms
    state.next_start = (
        (start // window.slide_ms) * window.slide_ms if start % window.slide_ms else start
    )
    _prune(state)
    return out


def _window_row(
    state: DeviceState, device_id: str, start: int, t: np.ndarray, xyz: np.ndarray,
    inside: np.ndarray, gps_t: np.ndarray, settings: StreamSettings, now_ms: int,
) -> dict[str, Any]:  # fmt: skip
    window = settings.window
    end = start + window.length_ms
    result = resample(t[inside], xyz[inside], start, window)
    seqs = sorted({state.seq[i] for i in np.flatnonzero(inside)})
    common_values = {"window_start_ms": start, "window_end_ms": end, "batch_seqs": seqs,
                     "samples": result.samples_used, "coverage": result.coverage}  # fmt: skip
    if result.coverage < window.min_coverage:
        detail = f"coverage {result.coverage:.2f} below {window.min_coverage:.2f}"
        return _quarantine(device_id, "low coverage", detail=detail, **common_values)
    in_gps = (gps_t >= start) & (gps_t < end)
    speed, distance = gps_summary(
        gps_t[in_gps],
        np.asarray(state.gps_lat)[in_gps],
        np.asarray(state.gps_lon)[in_gps],
    )
    labels = [state.label[i] for i in np.flatnonzero(inside)]
    ingest = max(state.ingest[i] for i in np.flatnonzero(inside))
    return _row(
        "window", device_id, tensor=result.tensor.reshape(-1).tolist(), label=window_label(labels),
        mean_speed_m_s=speed, distance_m=distance, ingest_lag_ms=int(ingest - end),
        **common_values,
    )  # fmt: skip


def _prune(state: DeviceState) -> None:
    """Forget samples no unemitted window can contain."""
    keep = [i for i, t in enumerate(state.t) if t >= (state.next_start or 0)]
    for name in ("t", "x", "y", "z", "label", "seq", "ingest"):
        values = getattr(state, name)
        setattr(state, name, [values[i] for i in keep])
    keep_gps = [i for i, t in enumerate(state.gps_t) if t >= (state.next_start or 0)]
    for name in ("gps_t", "gps_lat", "gps_lon"):
        values = getattr(state, name)
        setattr(state, name, [values[i] for i in keep_gps])


DRAIN_IDLE_MS = 1000


def spark_step(settings: StreamSettings, *, drain: bool = False):
    """The function for ``applyInPandasWithState`` (picklable: it closes over settings only).

    ``drain``: flush a phone as soon as a micro-batch brings it nothing, and keep no tombstone,
    so that an available-now run emits every open window and then ends.
    """
    idle_ms = DRAIN_IDLE_MS if drain else int(settings.idle_flush_s * 1000)
    tombstone_ms = int(settings.dedupe_horizon_s * 1000)

    def step(key: tuple[str], batches: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        import time

        (device_key,) = key
        now_ms = int(time.time() * 1000)
        rows = pd.concat(list(batches), ignore_index=True) if not state.hasTimedOut else None
        if device_key == UNPARSEABLE_KEY:
            assert rows is not None
            yield pd.DataFrame(
                [_quarantine(None, r.reject_reason, raw=r.raw) for r in rows.itertuples()],
                columns=OUTPUT_COLUMNS,
            )
            return
        current = DeviceState.from_json(state.get[0]) if state.exists else DeviceState()
        if state.hasTimedOut:
            if not current.t:  # a tombstone that has outlived the dedupe horizon
                state.remove()
                return
            out = advance(current, device_key, pd.DataFrame(), settings, now_ms=now_ms, flush=True)
            if drain:
                state.remove()
            else:
                state.update((current.to_json(),))
                state.setTimeoutDuration(tombstone_ms)
        else:
            out = advance(current, device_key, rows, settings, now_ms=now_ms)
            state.update((current.to_json(),))
            state.setTimeoutDuration(idle_ms)
        if out:
            yield pd.DataFrame(out, columns=OUTPUT_COLUMNS)

    return step
