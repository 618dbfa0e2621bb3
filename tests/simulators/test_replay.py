"""Replaying WISDM raw files: parsing, label mapping, batching and rebased event times."""

from __future__ import annotations

import time

import pytest

from common.settings import DEFAULT_CLASSES
from simulators.replay import parse_label_map, parse_wisdm, to_ms, user_batches

WISDM_V1 = """\
33,Jogging,49105962326000,-0.6946377,12.680544,0.50395286;
33,Jogging,49106062271000,5.012288,11.264028,0.95342433;
33,Walking,49106112167000,4.903325,10.882658,-0.08172209;
17,Sitting,49106332290000,-1.1849703,12.108489,7.205164;
17,Sitting,49106442306000,1.4165162,,2.1655564;
17,Dancing,49106542312000,-1.879608,-2.7240696,11.2;
17,Sitting,1795341600000,0.1,9.8
"""


def test_parses_users_labels_and_nanosecond_timestamps() -> None:
    dataset = parse_wisdm(WISDM_V1.splitlines(), DEFAULT_CLASSES)
    assert sorted(dataset.readings_by_user) == ["17", "33"]
    jogger = dataset.readings_by_user["33"]
    assert [r.label for r in jogger] == ["jogging", "jogging", "walking"]
    assert jogger[1].t_ms - jogger[0].t_ms == 100  # ns → ms: the recording's spacing kept
    assert dataset.readings == 4
    assert dataset.skipped == {
        "unparseable timestamp or axis": 1,
        "activity 'Dancing' not in the class list": 1,
        "5 fields, expected 6": 1,
    }


def test_millisecond_timestamps_stay_milliseconds() -> None:
    assert to_ms(1_795_341_600_000) == 1_795_341_600_000
    assert to_ms(49_105_962_326_000) == 49_105_962


def test_label_map_for_letter_codes() -> None:
    mapping = parse_label_map("A=walking, B=jogging")
    dataset = parse_wisdm(["1600,A,252207666810782,-0.36,8.79,1.05;"], DEFAULT_CLASSES, mapping)
    assert dataset.readings_by_user["1600"][0].label == "walking"
    with pytest.raises(ValueError, match="'A'"):
        parse_label_map("A")


def test_batches_never_mix_activities_and_are_rebased() -> None:
    dataset = parse_wisdm(WISDM_V1.splitlines(), DEFAULT_CLASSES)
    readings = dataset.readings_by_user["33"]
    now_ms = int(time.time() * 1000)
    batches = user_batches(
        readings, device_id="wisdm-33", interval_s=2.0, event_offset_ms=now_ms - readings[0].t_ms
    )
    assert [b.body["label"] for _, b in batches] == ["jogging", "walking"]
    assert [b.body["batch_seq"] for _, b in batches] == [0, 1]
    assert batches[0][1].body["accel"][0]["t"] == now_ms
