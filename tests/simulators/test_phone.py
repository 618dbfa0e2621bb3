"""A simulated phone's batches: valid wire format, honest labels, faults at their rates."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter

import numpy as np
import pytest

from common.schema import parse_batch
from simulators.phone import ACTIVITIES, NEXT_ACTIVITY, FaultRates, Phone


def make_phone(seed: int = 0, **kwargs) -> Phone:
    defaults = {
        "device_id": "phone-1",
        "rng": np.random.default_rng(seed),
        "labelled": True,
        "start_ms": int(time.time() * 1000) - 3_600_000,
    }
    return Phone(**(defaults | kwargs))


def test_clean_batches_are_valid_and_cover_their_interval() -> None:
    phone = make_phone()
    batches = [phone.next_batch() for _ in range(20)]
    first_slot = phone.start_ms // 2000
    for n, batch in enumerate(batches):
        parsed = parse_batch(json.dumps(batch.body))
        assert parsed.batch_seq == first_slot + n
        assert len(parsed.accel) == 40 and len(parsed.gps) == 2
        assert parsed.label == batch.activity
        times = [s.t for s in parsed.accel]
        assert times == sorted(times) and times[1] - times[0] == 50
    starts = [b.body["accel"][0]["t"] for b in batches]
    assert np.all(np.diff(starts) == 2000)


def test_unlabelled_phones_send_no_label() -> None:
    batch = make_phone(labelled=False).next_batch()
    assert "label" not in batch.body and batch.activity in ACTIVITIES


def test_activities_follow_the_markov_chain() -> None:
    phone = make_phone(seed=3, dwell_scale=0.05)
    sequence = [phone.next_batch().activity for _ in range(3000)]
    changes = [(a, b) for a, b in itertools.pairwise(sequence) if a != b]
    assert len(changes) > 100
    assert all(b in NEXT_ACTIVITY[a] for a, b in changes)
    assert set(sequence) == set(ACTIVITIES)


def test_sample_faults_appear_at_about_their_rates() -> None:
    faults = FaultRates(dropped_sample=0.1, null_axis=0.05, saturation=0.02, shuffled_samples=0.2)
    phone = make_phone(faults=faults)
    batches = [phone.next_batch() for _ in range(500)]
    samples = [s for b in batches for s in b.body["accel"]]
    assert len(samples) / (500 * 40) == pytest.approx(0.9, abs=0.02)
    nulls = sum(1 for s in samples if None in (s["x"], s["y"], s["z"]))
    assert nulls / len(samples) == pytest.approx(0.05, abs=0.015)
    saturated = sum(1 for s in samples if max(abs(s[a] or 0) for a in "xyz") > 78.4)
    assert saturated > 0
    shuffled = sum(
        1
        for b in batches
        if [s["t"] for s in b.body["accel"]] != sorted(s["t"] for s in b.body["accel"])
    )
    assert shuffled / 500 == pytest.approx(0.2, abs=0.06)
    for batch in batches[:50]:
        parse_batch(json.dumps(batch.body))  # dirty, never invalid


def test_batch_faults_and_clock_skew() -> None:
    faults = FaultRates(resend=0.3, late=0.1, out_of_order=0.2, offline=0.05, skewed_clock=1.0)
    phone = make_phone(faults=faults)
    flags = Counter()
    for _ in range(1000):
        batch = phone.next_batch()
        flags.update(
            k for k in ("resend", "late", "out_of_order", "goes_offline") if getattr(batch, k)
        )
    assert flags["resend"] == pytest.approx(300, abs=60)
    assert flags["late"] == pytest.approx(100, abs=40)
    assert flags["out_of_order"] == pytest.approx(200, abs=50)
    assert flags["goes_offline"] == pytest.approx(50, abs=25)
    assert phone.skew_ms != 0


def test_unknown_fault_preset_is_named() -> None:
    with pytest.raises(ValueError, match="'chaos'"):
        FaultRates.preset("chaos")
