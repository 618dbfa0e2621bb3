"""The simulated physics: each activity has its own signature, and every phone its own body."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.motion import ACTIVITIES, GAITS, G, PhoneBody, body_signal

SECONDS = np.arange(400) / 20.0  # 20 s at 20 Hz


def upright_body() -> PhoneBody:
    return PhoneBody(
        placement=np.eye(3), gait_speed=1.0, gait_strength=1.0, bias=np.zeros(3), noise=0.0
    )


def signal(activity: str, body: PhoneBody | None = None, seed: int = 0) -> np.ndarray:
    samples, _ = body_signal(
        activity, SECONDS, 0.0, body or upright_body(), np.random.default_rng(seed)
    )
    return samples


def dominant_hz(values: np.ndarray, rate_hz: float = 20.0) -> float:
    spectrum = np.abs(np.fft.rfft(values - values.mean()))
    return float(np.fft.rfftfreq(len(values), 1 / rate_hz)[spectrum.argmax()])


def test_gravity_says_upright_or_sitting() -> None:
    standing = signal("standing").mean(axis=0)
    sitting = signal("sitting").mean(axis=0)
    assert standing[1] == pytest.approx(G, abs=0.3)  # phone's y is the body's vertical
    assert abs(sitting[2]) > 9.0 and abs(sitting[1]) < 2.5  # thigh horizontal: gravity on z
    for activity in ACTIVITIES:
        magnitude = np.linalg.norm(signal(activity), axis=1).mean()
        assert magnitude == pytest.approx(G, abs=2.5), activity


def test_gaits_differ_in_cadence_and_strength() -> None:
    energy = {a: signal(a)[:, 1].std() for a in ACTIVITIES}
    assert energy["jogging"] > 2 * energy["walking"] > 4 * energy["standing"]
    assert energy["standing"] < 0.5 and energy["sitting"] < 0.5
    for activity, gait in GAITS.items():
        assert dominant_hz(signal(activity)[:, 1]) == pytest.approx(gait.step_hz, abs=0.15)


def test_stairs_are_asymmetric_and_downstairs_hits_harder() -> None:
    def rise_fall_skew(values: np.ndarray) -> float:
        """> 0: slow rises and quick falls (the slope's distribution has a long negative tail)."""
        slope = np.diff(values)
        centred = slope - slope.mean()
        return float(-(centred**3).mean() / centred.std() ** 3)

    up, down, walk = (signal(a)[:, 1] for a in ("upstairs", "downstairs", "walking"))
    assert rise_fall_skew(up) > rise_fall_skew(walk) + 0.3
    assert rise_fall_skew(down) < rise_fall_skew(walk) - 0.3
    assert down.max() - down.mean() > up.max() - up.mean()


def test_every_phone_is_its_own() -> None:
    rng = np.random.default_rng(7)
    bodies = [PhoneBody.draw(rng) for _ in range(5)]
    means = [signal("standing", body).mean(axis=0) for body in bodies]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 0.05
    assert len({round(b.gait_speed, 3) for b in bodies}) == 5


def test_gait_phase_continues_across_batches() -> None:
    body, rng = upright_body(), np.random.default_rng(0)
    first, phase = body_signal("walking", SECONDS[:40], 0.0, body, rng)
    second, _ = body_signal("walking", SECONDS[:40], phase, body, rng)
    step = np.abs(np.diff(first[:, 1])).max()
    assert abs(second[0, 1] - first[-1, 1]) < 2.5 * step  # no jump at the batch boundary
