"""One simulated phone: its activity over time, its batches in the wire format, its faults.

A phone moves between activities as a Markov chain with realistic dwell times, and every
``interval_s`` produces one batch: accelerometer samples at ``rate_hz`` and GPS fixes at
``gps_hz``, in the format of DESIGN.md. Sample-level faults (dropped samples, null axes, spikes,
saturation, shuffled order, a skewed clock) are applied here; batch-level faults (resends, late
or out-of-order sending, going offline) are decided here and acted on by the fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from simulators.motion import ACTIVITIES, SPEED_M_S, PhoneBody, body_signal

# Mean dwell time in seconds per activity (log-normal around it).
DWELL_S = {"walking": 45.0, "jogging": 30.0, "upstairs": 15.0, "downstairs": 15.0,
           "sitting": 90.0, "standing": 30.0}  # fmt: skip
NEXT_ACTIVITY = {
    "walking": {
        "jogging": 0.2,
        "upstairs": 0.2,
        "downstairs": 0.2,
        "standing": 0.3,
        "sitting": 0.1,
    },
    "jogging": {"walking": 0.7, "standing": 0.3},
    "upstairs": {"walking": 0.6, "downstairs": 0.1, "standing": 0.3},
    "downstairs": {"walking": 0.6, "upstairs": 0.1, "standing": 0.3},
    "sitting": {"standing": 1.0},
    "standing": {"walking": 0.6, "sitting": 0.3, "jogging": 0.1},
}
SATURATION_M_S2 = 78.4532  # an 8 g sensor's full scale
EARTH_M_PER_DEG = 111_320.0


@dataclass(frozen=True, kw_only=True)
class FaultRates:
    """Probabilities of each fault: per sample, per batch, or per phone (clock skew)."""

    dropped_sample: float = 0.0
    null_axis: float = 0.0
    spike: float = 0.0
    saturation: float = 0.0
    shuffled_samples: float = 0.0  # per batch: samples arrive out of order within it
    resend: float = 0.0  # per batch: sent twice with the same batch_seq
    out_of_order: float = 0.0  # per batch: sent after the next one
    late: float = 0.0  # per batch: held back for late_delay_s
    late_delay_s: float = 15.0
    skewed_clock: float = 0.0  # per phone: its clock is off by up to max_skew_s
    max_skew_s: float = 30.0
    offline: float = 0.0  # per batch: the phone goes offline for offline_s, then bursts
    offline_s: float = 20.0

    @classmethod
    def preset(cls, name: str) -> FaultRates:
        if name == "none":
            return cls()
        if name == "light":
            return cls(dropped_sample=0.01, null_axis=0.002, spike=0.001, saturation=0.0005,
                       shuffled_samples=0.01, resend=0.01, out_of_order=0.01, late=0.005,
                       skewed_clock=0.05, offline=0.002)  # fmt: skip
        if name == "heavy":
            return cls(dropped_sample=0.05, null_axis=0.01, spike=0.005, saturation=0.002,
                       shuffled_samples=0.05, resend=0.05, out_of_order=0.05, late=0.02,
                       skewed_clock=0.2, offline=0.01)  # fmt: skip
        raise ValueError(f"fault preset {name!r} is not none, light or heavy")


@dataclass(kw_only=True)
class Batch:
    """A batch to send, with what the fleet must know about it."""

    body: dict[str, Any]
    activity: str  # the truth, whether or not the phone labels it
    resend: bool = False
    out_of_order: bool = False
    late: bool = False
    goes_offline: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.body["device_id"], self.body["batch_seq"]

    @property
    def readings(self) -> int:
        return len(self.body["accel"]) + len(self.body["gps"])


@dataclass(kw_only=True)
class Phone:
    device_id: str
    rng: np.random.Generator
    labelled: bool
    start_ms: int
    interval_s: float = 2.0
    rate_hz: float = 20.0
    gps_hz: float = 1.0
    faults: FaultRates = field(default_factory=FaultRates)
    dwell_scale: float = 1.0

    def __post_init__(self) -> None:
        self.body = PhoneBody.draw(self.rng)
        self.activity = str(self.rng.choice(ACTIVITIES))
        self.remaining_s = self._dwell(self.activity) * self.rng.uniform(0.2, 1.0)
        self.phase = float(self.rng.uniform(0, 2 * np.pi))
        # batch_seq is the batch's time slot since the epoch, not a count from 0: a phone (or a
        # simulator) that restarts goes on with new keys instead of reusing ones the pipeline
        # has already seen — those would be dropped downstream as resends.
        self.seq = self.start_ms // int(self.interval_s * 1000)
        self.clock_ms = self.start_ms
        skewed = self.rng.random() < self.faults.skewed_clock
        self.skew_ms = int(self.rng.uniform(-1, 1) * self.faults.max_skew_s * 1000) if skewed else 0
        self.lat = 53.35 + self.rng.uniform(-0.05, 0.05)
        self.lon = -6.26 + self.rng.uniform(-0.08, 0.08)
        self.heading = float(self.rng.uniform(0, 2 * np.pi))

    def _dwell(self, activity: str) -> float:
        return float(DWELL_S[activity] * self.dwell_scale * self.rng.lognormal(0.0, 0.4))

    def _advance_activity(self) -> None:
        self.remaining_s -= self.interval_s
        if self.remaining_s > 0:
            return
        choices = NEXT_ACTIVITY[self.activity]
        self.activity = str(self.rng.choice(list(choices), p=list(choices.values())))
        self.remaining_s = self._dwell(self.activity)

    def _accel(self, start_ms: int) -> list[dict[str, Any]]:
        n = max(1, round(self.interval_s * self.rate_hz))
        seconds = np.arange(n) / self.rate_hz
        samples, self.phase = body_signal(self.activity, seconds, self.phase, self.body, self.rng)
        times = start_ms + np.round(seconds * 1000).astype(np.int64) + self.skew_ms
        samples = np.round(samples, 4)
        faults, rng = self.faults, self.rng
        rows = [[int(t), *xyz] for t, xyz in zip(times.tolist(), samples.tolist(), strict=True)]
        sample_faults = (faults.dropped_sample, faults.spike, faults.saturation, faults.null_axis)
        if any(sample_faults):
            rows = self._damage(rows)
        out: list[dict[str, Any]] = [{"t": t, "x": x, "y": y, "z": z} for t, x, y, z in rows]
        if faults.shuffled_samples and rng.random() < faults.shuffled_samples:
            rng.shuffle(out)  # type: ignore[arg-type]
        return out

    def _damage(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Drop samples and corrupt axes at the configured per-sample rates."""
        faults, rng = self.faults, self.rng
        kept = []
        for row in rows:
            if rng.random() < faults.dropped_sample:
                continue
            if rng.random() < faults.spike:
                row[1 + rng.integers(3)] = float(rng.choice([-1, 1]) * rng.uniform(30, 70))
            if rng.random() < faults.saturation:
                row[1 + rng.integers(3)] = float(rng.choice([-1, 1]) * SATURATION_M_S2)
            if rng.random() < faults.null_axis:
                row[1 + rng.integers(3)] = None
            kept.append(row)
        return kept

    def _gps(self, start_ms: int) -> list[dict[str, Any]]:
        fixes = []
        count = max(1, round(self.interval_s * self.gps_hz))
        step_s = 1.0 / self.gps_hz
        speed = SPEED_M_S[self.activity]
        for i in range(count):
            self.heading += float(self.rng.normal(0.0, 0.15))
            distance = speed * step_s
            self.lat += distance * math.cos(self.heading) / EARTH_M_PER_DEG
            self.lon += (
                distance
                * math.sin(self.heading)
                / (EARTH_M_PER_DEG * math.cos(math.radians(self.lat)))
            )
            accuracy = float(self.rng.uniform(3.0, 12.0))
            jitter = accuracy / 3 / EARTH_M_PER_DEG
            fixes.append({
                "t": start_ms + int(i * step_s * 1000) + self.skew_ms,
                "lat": round(self.lat + float(self.rng.normal(0, jitter)), 7),
                "lon": round(self.lon + float(self.rng.normal(0, jitter)), 7),
                "acc_m": round(accuracy, 1),
            })  # fmt: skip
        return fixes

    def next_batch(self) -> Batch:
        """The batch covering the next ``interval_s`` seconds of this phone's life."""
        start_ms = self.clock_ms
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "batch_seq": self.seq,
            "sent_at": datetime.fromtimestamp(
                (start_ms + self.interval_s * 1000 + self.skew_ms) / 1000, UTC
            )
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "accel": self._accel(start_ms),
            "gps": self._gps(start_ms),
        }
        if self.labelled:
            body["label"] = self.activity
        faults, rng = self.faults, self.rng
        batch = Batch(
            body=body,
            activity=self.activity,
            resend=bool(faults.resend and rng.random() < faults.resend),
            out_of_order=bool(faults.out_of_order and rng.random() < faults.out_of_order),
            late=bool(faults.late and rng.random() < faults.late),
            goes_offline=bool(faults.offline and rng.random() < faults.offline),
        )
        self.seq += 1
        self.clock_ms += int(self.interval_s * 1000)
        self._advance_activity()
        return batch
