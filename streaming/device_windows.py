"""Per-device event time: dedupe batches, buffer samples, emit sliding windows, quarantine the rest.

Each phone has its own clock (some are skewed), so event time advances per device: a device's
watermark is the latest sample time it sent minus the allowed lateness. Windows (aligned to the
slide) are emitted once the device's watermark passes their end, resampled by the shared
:mod:`common.windows` code; those below the coverage minimum go to quarantine with the reason.
A sample that arrives after all windows containing it were emitted is quarantined as late.
Resent batches (same ``batch_seq``) are dropped and reported as ``duplicate`` rows. A phone that
falls silent is flushed after ``idle_flush_s`` (its remaining windows emitted), keeping a small
tombstone so late arrivals cannot produce a window twice.

The buffer is kept as numpy arrays sorted by time (ties in arrival order, so a window sees its
samples exactly as an arrival-ordered buffer would), which makes a window one slice found by
binary search. Between micro-batches it is stored as one compact binary document
(:meth:`DeviceState.to_text`): decoding it is a handful of ``frombuffer`` calls, not a parse of
every sample, which is what keeps a micro-batch of many phones cheap.

:func:`advance` is plain numpy/pandas over a :class:`DeviceState`; :func:`spark_step` adapts it
to ``applyInPandasWithState``.
"""

from __future__ import annotations

import base64
import json
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.settings import StreamSettings
from common.windows import gps_summary, resample, window_label, window_starts_containing
from streaming.schema import OUTPUT
from streaming.steps import UNPARSEABLE_KEY

OUTPUT_COLUMNS = [f.name for f in OUTPUT.fields]

# PySpark 4.0's applyInPandasWithState serializer pads each output batch with all-NA rows through
# pd.concat, which pandas 2.x warns about every time: a thousand lines of a drain's log that are
# PySpark's, not ours. Set here because the Python workers import this module to run the step.
warnings.filterwarnings(
    "ignore",
    message="The behavior of DataFrame concatenation with empty or all-NA entries",
    category=FutureWarning,
    module=r"pyspark\.sql\.pandas\.serializers",
)
NO_LABEL = -1
_FORMAT = 2  # version of the binary state document (1 was a JSON document of lists)
_HEADER = struct.Struct("<BI")  # format, length of the JSON header


def _empty(dtype: Any, *shape: int) -> np.ndarray:
    return np.empty((0, *shape), dtype=dtype)


@dataclass(eq=False)
class DeviceState:
    """One phone's buffer: accelerometer samples and GPS fixes sorted by time, seen batches."""

    next_start: int | None = None  # earliest window not yet emitted
    max_t: int | None = None
    due_ms: int | None = None  # processing time its idle flush (or tombstone's end) is due
    t: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    xyz: np.ndarray = field(default_factory=lambda: _empty(np.float64, 3))
    label: np.ndarray = field(default_factory=lambda: _empty(np.int16))  # codes into `labels`
    seq: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    ingest: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    gps_t: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    gps_latlon: np.ndarray = field(default_factory=lambda: _empty(np.float64, 2))
    seen_seq: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    seen_at: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    labels: list[str] = field(default_factory=list)

    ARRAY_FIELDS = (
        "t", "xyz", "label", "seq", "ingest", "gps_t", "gps_latlon", "seen_seq", "seen_at"
    )  # fmt: skip

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "next_start": self.next_start, "max_t": self.max_t, "due_ms": self.due_ms,
            "labels": self.labels,
            "sizes": [len(self.t), len(self.gps_t), len(self.seen_seq)],
        }, separators=(",", ":")).encode()  # fmt: skip
        parts = [np.ascontiguousarray(getattr(self, name)).tobytes() for name in self.ARRAY_FIELDS]
        return b"".join([_HEADER.pack(_FORMAT, len(header)), header, *parts])

    @classmethod
    def from_bytes(cls, blob: bytes) -> DeviceState:
        version, length = _HEADER.unpack_from(blob)
        if version != _FORMAT:
            raise ValueError(f"device state format {version}, expected {_FORMAT}")
        header = json.loads(blob[_HEADER.size : _HEADER.size + length])
        n, g, s = header["sizes"]
        offset = _HEADER.size + length
        shapes = {"t": (np.int64, n), "xyz": (np.float64, n, 3), "label": (np.int16, n),
                  "seq": (np.int64, n), "ingest": (np.int64, n), "gps_t": (np.int64, g),
                  "gps_latlon": (np.float64, g, 2), "seen_seq": (np.int64, s),
                  "seen_at": (np.int64, s)}  # fmt: skip
        arrays = {}
        for name in cls.ARRAY_FIELDS:
            dtype, *shape = shapes[name]
            count = int(np.prod(shape))
            arrays[name] = np.frombuffer(blob, dtype, count, offset).reshape(shape)
            offset += count * np.dtype(dtype).itemsize
        return cls(next_start=header["next_start"], max_t=header["max_t"],
                   due_ms=header.get("due_ms"),  # absent from states written before it
                   labels=header["labels"], **arrays)  # fmt: skip

    def to_text(self) -> str:
        """The state column's value (a string column: see ``streaming.schema.STATE``)."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> DeviceState:
        if text.startswith("{"):  # written by a version that kept the state as JSON lists
            return cls.from_json_lists(json.loads(text))
        return cls.from_bytes(base64.b64decode(text))

    @classmethod
    def from_json_lists(cls, old: dict[str, Any]) -> DeviceState:
        """The state of a checkpoint written before the binary document (lists in arrival order)."""
        state = cls(next_start=old["next_start"], max_t=old["max_t"])
        state.seen_seq = np.asarray(old["seen_seq"], dtype=np.int64)
        state.seen_at = np.asarray(old["seen_at"], dtype=np.int64)
        accel = {name: np.asarray(old[name]) for name in ("t", "x", "y", "z")}
        accel["label"] = np.asarray(old["label"], dtype=object)
        accel["batch_seq"], accel["ingest_ms"] = np.asarray(old["seq"]), np.asarray(old["ingest"])
        gps = {"t": np.asarray(old["gps_t"]), "lat": np.asarray(old["gps_lat"]),
               "lon": np.asarray(old["gps_lon"])}  # fmt: skip
        max_t = state.max_t
        _buffer(state, accel, gps)
        state.max_t = max_t
        return state

    def label_codes(self, values: np.ndarray) -> np.ndarray:
        codes = np.full(len(values), NO_LABEL, dtype=np.int16)
        present = pd.notna(values)
        for name in pd.unique(values[present]):
            if name not in self.labels:
                self.labels.append(name)
            codes[values == name] = self.labels.index(name)
        return codes


class Emitted:
    """The rows one call emits, gathered column by column (``streaming.schema.OUTPUT``)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: str, device_id: str | None, **values: Any) -> None:
        row = dict.fromkeys(OUTPUT_COLUMNS)
        row.update(kind=kind, device_id=device_id, **values)
        self.rows.append(row)

    def quarantine_each(self, device_id: str | None, reasons: np.ndarray, **columns: Any) -> None:
        """One quarantine row per reason; array columns run alongside, scalars are repeated."""
        n = len(reasons)
        if n:
            block = {"kind": "quarantine", "device_id": device_id, "reason": reasons, **columns}
            block = {name: block.get(name) for name in OUTPUT_COLUMNS}
            self.rows.extend(pd.DataFrame(block, index=range(n)).to_dict("records"))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=OUTPUT_COLUMNS)

    def __len__(self) -> int:
        return len(self.rows)


_INPUT_COLUMNS = (
    "batch_seq", "record_offset", "reject_reason", "sensor", "t", "x", "y", "z", "lat", "lon",
    "label", "ingest_ms", "raw",
)  # fmt: skip

Columns = dict[str, np.ndarray]


def _take(columns: Columns, mask: np.ndarray) -> Columns:
    return {name: values[mask] for name, values in columns.items()}


def advance(
    state: DeviceState,
    device_id: str,
    rows: pd.DataFrame,
    settings: StreamSettings,
    *,
    now_ms: int,
    flush: bool = False,
) -> pd.DataFrame:
    """Take one micro-batch of this device's rows; returns the rows to emit (state is updated)."""
    out = Emitted()
    window = settings.window
    if len(rows):
        # Plain arrays from here on: a pandas selection per step cost more than the windowing.
        columns = {name: rows[name].to_numpy() for name in _INPUT_COLUMNS}
        unseen = _unseen_batch_mask(state, device_id, columns, now_ms, settings, out)
        columns = _take(columns, unseen)
        reasons = columns["reject_reason"]
        rejected = pd.notna(reasons)
        out.quarantine_each(
            device_id, reasons[rejected], batch_seq=columns["batch_seq"][rejected],
            t=columns["t"][rejected], raw=columns["raw"][rejected],
        )  # fmt: skip
        sensor = columns["sensor"]
        accel = _take(columns, ~rejected & (sensor == "accel"))
        gps = _take(columns, ~rejected & (sensor == "gps"))
        if state.next_start is not None and len(accel["t"]):
            late = accel["t"].astype(np.int64) < state.next_start
            out.quarantine_each(
                device_id, np.full(int(late.sum()), "late", dtype=object),
                detail=f"windows before {state.next_start} emitted",
                batch_seq=accel["batch_seq"][late], t=accel["t"][late],
            )  # fmt: skip
            accel = _take(accel, ~late)
        _buffer(state, accel, gps)
    if not len(state.t):
        return out.frame()
    if state.next_start is None:
        state.next_start = window_starts_containing(int(state.t[0]), window)[0]
    watermark = None if flush else (state.max_t or 0) - int(settings.lateness_s * 1000)
    _emit(state, device_id, window_end_limit=watermark, settings=settings, out=out)
    return out.frame()


def _unseen_batch_mask(
    state: DeviceState, device_id: str, columns: Columns, now_ms: int,
    settings: StreamSettings, out: Emitted,
) -> np.ndarray:  # fmt: skip
    """The rows to keep: those of batches not seen before, each batch from its first record.

    Records the batches as seen, and emits a ``duplicate`` row for every batch sent again.
    """
    horizon = now_ms - int(settings.dedupe_horizon_s * 1000)
    recent = state.seen_at >= horizon
    seen_seq, seen_at = state.seen_seq[recent], state.seen_at[recent]
    seq = columns["batch_seq"].astype(np.int64)
    offset = columns["record_offset"].astype(np.int64)
    # A batch resent soon after may arrive in the same micro-batch: keep its first record only.
    pairs = np.unique(np.stack([seq, offset]), axis=1)  # distinct (seq, offset), sorted
    first_of_batch = np.r_[True, pairs[0, 1:] != pairs[0, :-1]]
    duplicates = pairs[0, ~first_of_batch].tolist()
    seqs, first = pairs[0, first_of_batch], pairs[1, first_of_batch]
    keep = offset == first[np.searchsorted(seqs, seq)]
    incoming = pd.unique(seq[keep])
    already = np.isin(incoming, seen_seq)
    duplicates += incoming[already].tolist()
    fresh = incoming[~already]
    state.seen_seq = np.concatenate([seen_seq, fresh])
    state.seen_at = np.concatenate([seen_at, np.full(len(fresh), now_ms, dtype=np.int64)])
    for s in duplicates:
        out.add("duplicate", device_id, batch_seq=int(s))
    return keep & ~np.isin(seq, seen_seq)


def _merge(old: np.ndarray, new: np.ndarray, *columns: tuple[np.ndarray, np.ndarray]):
    """Old (sorted) and new times merged in time order, ties in arrival order; columns follow."""
    order = np.argsort(np.concatenate([old, new]), kind="stable")
    merged = [np.concatenate([old, new])[order]]
    return merged + [np.concatenate([a, b])[order] for a, b in columns]


def _matrix(columns: Columns, names: Iterable[str]) -> np.ndarray:
    return np.stack([columns[name].astype(np.float64) for name in names], axis=1)


def _buffer(state: DeviceState, accel: Columns, gps: Columns) -> None:
    if len(accel["t"]):
        t = accel["t"].astype(np.int64)
        xyz = _matrix(accel, "xyz")
        label = state.label_codes(accel["label"])
        seq = accel["batch_seq"].astype(np.int64)
        ingest = accel["ingest_ms"].astype(np.int64)
        state.t, state.xyz, state.label, state.seq, state.ingest = _merge(
            state.t, t, (state.xyz, xyz), (state.label, label), (state.seq, seq),
            (state.ingest, ingest),
        )  # fmt: skip
        top = int(t.max())
        state.max_t = top if state.max_t is None else max(state.max_t, top)
    if len(gps["t"]):
        latlon = _matrix(gps, ("lat", "lon"))
        state.gps_t, state.gps_latlon = _merge(
            state.gps_t, gps["t"].astype(np.int64), (state.gps_latlon, latlon)
        )


def _emit(
    state: DeviceState, device_id: str, *, window_end_limit: int | None,
    settings: StreamSettings, out: Emitted,
) -> None:  # fmt: skip
    window = settings.window
    t = state.t
    start = state.next_start
    assert start is not None
    last_t = int(t[-1])
    while (window_end_limit is None and start <= last_t) or (
        window_end_limit is not None and start + window.length_ms <= window_end_limit
    ):
        lo, hi = np.searchsorted(t, [start, start + window.length_ms])
        if lo == hi:
            if lo == len(t):
                start = last_t + 1  # nothing more to emit
                break
            # Skip a silent stretch in one step rather than window by window.
            start = max(start + window.slide_ms, window_starts_containing(int(t[lo]), window)[0])
            continue
        _window_row(state, device_id, start, slice(int(lo), int(hi)), settings, out)
        start += window.slide_ms
    state.next_start = (
        (start // window.slide_ms) * window.slide_ms if start % window.slide_ms else start
    )
    _prune(state)


def _window_row(
    state: DeviceState, device_id: str, start: int, inside: slice, settings: StreamSettings,
    out: Emitted,
) -> None:  # fmt: skip
    window = settings.window
    end = start + window.length_ms
    result = resample(state.t[inside], state.xyz[inside], start, window)
    seqs = np.unique(state.seq[inside]).tolist()
    common_values = {"window_start_ms": start, "window_end_ms": end, "batch_seqs": seqs,
                     "samples": result.samples_used, "coverage": result.coverage}  # fmt: skip
    if result.coverage < window.min_coverage:
        detail = f"coverage {result.coverage:.2f} below {window.min_coverage:.2f}"
        out.add("quarantine", device_id, reason="low coverage", detail=detail, **common_values)
        return
    g_lo, g_hi = np.searchsorted(state.gps_t, [start, end])
    latlon = state.gps_latlon[g_lo:g_hi]
    speed, distance = gps_summary(state.gps_t[g_lo:g_hi], latlon[:, 0], latlon[:, 1])
    labels = [None if c == NO_LABEL else state.labels[c] for c in np.unique(state.label[inside])]
    ingest = int(state.ingest[inside].max())
    out.add(
        "window", device_id, tensor=result.tensor.reshape(-1), label=window_label(labels),
        mean_speed_m_s=speed, distance_m=distance, ingest_lag_ms=ingest - end, **common_values,
    )  # fmt: skip


def _prune(state: DeviceState) -> None:
    """Forget samples no unemitted window can contain (the buffers are sorted by time)."""
    keep_from = state.next_start or 0
    first = int(np.searchsorted(state.t, keep_from))
    for name in ("t", "xyz", "label", "seq", "ingest"):
        setattr(state, name, getattr(state, name)[first:])
    first_gps = int(np.searchsorted(state.gps_t, keep_from))
    state.gps_t, state.gps_latlon = state.gps_t[first_gps:], state.gps_latlon[first_gps:]


DRAIN_IDLE_MS = 1000


def spark_step(settings: StreamSettings, *, drain: bool = False):
    """The function for ``applyInPandasWithState`` (picklable: it closes over settings only).

    ``drain``: flush a phone as soon as a micro-batch brings it nothing, and keep no tombstone,
    so that an available-now run emits every open window and then ends.

    A timer is never set further ahead than ``settings.timer_s``: when it fires before the
    phone's flush (or its tombstone's end) is due, it is set again. Spark keeps each timer in
    the checkpoint, so this is what bounds how long a draining run started on a normal run's
    checkpoint waits for the phones that run left open: a drain acts on every timer that fires.
    """
    idle_ms = DRAIN_IDLE_MS if drain else int(settings.idle_flush_s * 1000)
    tombstone_ms = int(settings.dedupe_horizon_s * 1000)
    timer_ms = int(settings.timer_s * 1000)

    def keep_until(state, current: DeviceState, now_ms: int, due_ms: int) -> None:
        """Store ``current``, due at ``due_ms``, with its timer at most ``timer_s`` ahead."""
        current.due_ms = due_ms
        state.update((current.to_text(),))
        state.setTimeoutDuration(max(1, min(due_ms - now_ms, timer_ms)))

    def on_timer(device_key: str, state, now_ms: int) -> pd.DataFrame | None:
        current = DeviceState.from_text(state.get[0])
        if not drain and current.due_ms is not None and now_ms < current.due_ms:
            state.update(state.get)  # not due yet: the same state, its timer set again
            state.setTimeoutDuration(min(current.due_ms - now_ms, timer_ms))
            return None
        if not len(current.t):  # a tombstone that has outlived the dedupe horizon
            state.remove()
            return None
        out = advance(current, device_key, pd.DataFrame(), settings, now_ms=now_ms, flush=True)
        if drain:
            state.remove()
        else:
            keep_until(state, current, now_ms, now_ms + tombstone_ms)
        return out

    def step(key: tuple[str], batches: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        import time

        (device_key,) = key
        now_ms = int(time.time() * 1000)
        if state.hasTimedOut:  # never the unparseable records' key: it keeps no state
            out = on_timer(device_key, state, now_ms)
        else:
            frames = list(batches)
            # Usually one frame a phone: concatenating it alone would only copy it.
            rows = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            if device_key == UNPARSEABLE_KEY:
                quarantined = Emitted()
                reasons, raw = rows["reject_reason"].to_numpy(), rows["raw"].to_numpy()
                quarantined.quarantine_each(None, reasons, raw=raw)
                yield quarantined.frame()
                return
            current = DeviceState.from_text(state.get[0]) if state.exists else DeviceState()
            out = advance(current, device_key, rows, settings, now_ms=now_ms)
            keep_until(state, current, now_ms, now_ms + idle_ms)
        if out is not None and len(out):
            yield out

    return step
