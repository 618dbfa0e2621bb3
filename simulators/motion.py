"""How a phone in a trouser pocket moves: the accelerometer signal of each activity.

The signal is built in the body frame (vertical, forward, lateral) and turned into the phone's
frame by the posture (upright, or thigh horizontal when sitting) and the phone's own placement:

* gravity: +g along the body's vertical, so its direction in the phone frame tells the posture;
* gait: a periodic vertical bounce at the step frequency with harmonics, a forward surge and a
  lateral sway at half the step frequency (one stride = two steps). Jogging steps faster and
  bounces harder; upstairs is slow with a long push-up and a quick drop (asymmetric cycle);
  downstairs has sharp heel-strike impacts and a lower mean (the body keeps dropping);
* still postures: small physiological tremor and slow sway.

Every phone draws its own placement rotation, gait speed and strength, sensor bias and noise.
All of it is numpy; a batch of samples is generated in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

G = 9.80665
ACTIVITIES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")


@dataclass(frozen=True, kw_only=True)
class Gait:
    step_hz: float
    vertical: float  # m/s² amplitude of the bounce
    forward: float
    lateral: float
    asymmetry: float  # > 0: slow rise, quick fall (stairs up); < 0 the reverse
    impact: float  # m/s² of the heel-strike pulse
    vertical_offset: float  # mean vertical acceleration beyond gravity
    thigh_pitch_deg: float  # forward lean of the thigh carrying the phone


GAITS: dict[str, Gait] = {
    "walking": Gait(step_hz=1.9, vertical=3.2, forward=1.6, lateral=0.9, asymmetry=0.0,
                    impact=1.0, vertical_offset=0.0, thigh_pitch_deg=5.0),
    "jogging": Gait(step_hz=2.8, vertical=9.5, forward=4.0, lateral=2.2, asymmetry=0.1,
                    impact=6.0, vertical_offset=0.0, thigh_pitch_deg=12.0),
    "upstairs": Gait(step_hz=1.4, vertical=2.4, forward=1.2, lateral=0.7, asymmetry=0.7,
                     impact=0.5, vertical_offset=0.6, thigh_pitch_deg=25.0),
    "downstairs": Gait(step_hz=1.8, vertical=3.6, forward=1.8, lateral=1.1, asymmetry=-0.6,
                       impact=5.0, vertical_offset=-0.8, thigh_pitch_deg=-8.0),
}  # fmt: skip

STILL_TREMOR = {"sitting": 0.06, "standing": 0.15}
SITTING_THIGH_PITCH_DEG = 80.0


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix from angles in radians (z-y-x order)."""
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))  # fmt: skip
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


# Body axes (vertical, forward, lateral) onto an upright phone in a front pocket: the screen
# faces forward-ish, so the phone's y axis is the body's vertical, z forward, x lateral.
BODY_TO_UPRIGHT_PHONE = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def thigh_pitch(deg: float) -> np.ndarray:
    """The thigh (and the phone on it) pitched forward by ``deg``."""
    a = np.radians(deg)
    # In body coordinates (vertical, forward, lateral): rotate vertical towards forward.
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, kw_only=True)
class PhoneBody:
    """What makes one phone's signal its own."""

    placement: np.ndarray  # 3x3 rotation of the phone in its pocket
    gait_speed: float  # multiplies step frequencies
    gait_strength: float  # multiplies amplitudes
    bias: np.ndarray  # m/s² per phone axis
    noise: float  # m/s² standard deviation of sensor noise

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PhoneBody:
        placement = rotation(
            yaw=rng.uniform(-0.35, 0.35),  # phone turned in the pocket
            pitch=rng.uniform(-0.25, 0.25),
            roll=rng.uniform(-0.25, 0.25),
        )
        return cls(
            placement=placement,
            gait_speed=float(rng.uniform(0.85, 1.15)),
            gait_strength=float(rng.uniform(0.8, 1.2)),
            bias=rng.normal(0.0, 0.15, size=3),
            noise=float(rng.uniform(0.05, 0.25)),
        )


def _cycle(phase: np.ndarray, asymmetry: float) -> np.ndarray:
    """One step's vertical waveform, zero-mean, peak about 1.

    ``asymmetry`` warps time within the cycle: > 0 makes the rise slow and the fall quick (a
    push up a stair), < 0 the reverse (a drop onto the step below).
    """
    warped = phase - asymmetry * 0.7 * np.sin(phase)
    return (np.sin(warped) + 0.35 * np.sin(2 * warped + 0.6)) / 1.2


def _impacts(phase: np.ndarray) -> np.ndarray:
    """A short pulse at each heel strike (phase 0 of every step)."""
    within = np.mod(phase, 2 * np.pi) / (2 * np.pi)
    distance = np.minimum(within, 1.0 - within)
    return np.exp(-((distance / 0.04) ** 2))


def body_signal(
    activity: str,
    seconds: np.ndarray,
    start_phase: float,
    body: PhoneBody,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Accelerometer samples (n×3, phone frame, m/s²) at ``seconds``, and the gait phase after.

    ``seconds`` are times since the start of the batch; the phase carries on across batches so
    gait cycles stay continuous.
    """
    n = len(seconds)
    body_acc = np.zeros((n, 3))  # columns: vertical, forward, lateral
    if activity in GAITS:
        gait = GAITS[activity]
        freq = gait.step_hz * body.gait_speed * (1.0 + rng.normal(0.0, 0.02))
        phase = start_phase + 2 * np.pi * freq * seconds
        amp = body.gait_strength
        body_acc[:, 0] = (
            gait.vertical_offset
            + amp * gait.vertical * _cycle(phase, gait.asymmetry)
            + amp * gait.impact * _impacts(phase)
        )
        body_acc[:, 1] = amp * gait.forward * np.sin(phase + np.pi / 2)
        body_acc[:, 2] = amp * gait.lateral * np.sin(phase / 2)
        pitch = gait.thigh_pitch_deg
        end_phase = float(start_phase + 2 * np.pi * freq * (seconds[-1] + seconds[1] - seconds[0]))
    else:
        tremor = STILL_TREMOR[activity]
        sway = 0.2 * np.sin(2 * np.pi * 0.3 * seconds + start_phase)[:, None]
        body_acc += tremor * rng.normal(size=(n, 3)) + (sway if activity == "standing" else 0.0)
        pitch = SITTING_THIGH_PITCH_DEG if activity == "sitting" else 0.0
        end_phase = float(start_phase + 2 * np.pi * 0.3 * (seconds[-1] + 0.05))
    body_acc[:, 0] += G  # the accelerometer reads gravity as +g upwards
    tilted = body_acc @ thigh_pitch(pitch).T
    phone = tilted @ BODY_TO_UPRIGHT_PHONE.T @ body.placement.T
    phone += body.bias + body.noise * rng.normal(size=(n, 3))
    return phone, end_phase


# Speeds over ground in m/s, for GPS tracks.
SPEED_M_S = {"walking": 1.4, "jogging": 3.0, "upstairs": 0.35, "downstairs": 0.45,
             "sitting": 0.0, "standing": 0.0}  # fmt: skip
