"""Replaying WISDM raw files: parsing, label mapping, batching and rebased event times."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from common.settings import DEFAULT_CLASSES, GatewaySettings, SimulatorSettings, WireSettings
from simulators.main import replay_dataset
from simulators.replay import parse_label_map, parse_wisdm, read_dataset, to_ms, user_batches

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
        "axis not a number": 1,
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


# Lines that can't be readings the gateway takes, each after a good one of the same user.
HOSTILE_LINES = [
    ("33,Jogging," + "1" * 30 + ",5.0,11.2,0.9;", "timestamp out of range"),  # crashed the replay
    ("33,Jogging,9223372036854775808,5.0,11.2,0.9;", "timestamp out of range"),
    ("33,Jogging,9000000000000000000,5.0,11.2,0.9;", "timestamp out of range"),  # ns: after 2100
    ("33,Jogging,0,5.0,11.2,0.9;", "timestamp out of range"),
    ("33,Jogging,1.5e13,5.0,11.2,0.9;", "timestamp not an integer"),
    ("33,Jogging,49106062271000,nan,11.2,0.9;", "axis beyond ±160 m/s² or not finite"),
    ("33,Jogging,49106062271000,1e300,11.2,0.9;", "axis beyond ±160 m/s² or not finite"),
    ("33,Jogging,49106062271000,x,11.2,0.9;", "axis not a number"),
    ("33,Jogging,49106062271000,5.0,11.2,0.9,7;", "7 fields, expected 6"),
    ("../etc,Jogging,49106062271000,5.0,11.2,0.9;", "user not usable in a device id"),
]


def test_lines_that_cannot_be_readings_are_skipped_and_named_by_line() -> None:
    lines = ["33,Jogging,49105962326000,-0.69,12.68,0.50;"] + [line for line, _ in HOSTILE_LINES]
    dataset = parse_wisdm(lines, DEFAULT_CLASSES)
    assert [r.t_ms for r in dataset.readings_by_user["33"]] == [49_105_962]
    assert dataset.readings == 1
    expected: dict[str, list[int]] = {}
    for number, (_, reason) in enumerate(HOSTILE_LINES, start=2):
        expected.setdefault(reason, []).append(number)
    assert dataset.skipped_lines == expected
    assert dataset.skipped == {reason: len(numbers) for reason, numbers in expected.items()}
    assert "skipped 4 lines, timestamp out of range (lines 2, 3, 4, 5)" in dataset.skip_summary()


def test_a_line_that_is_not_utf8_costs_that_line_only(tmp_path: Path) -> None:
    path = tmp_path / "wisdm.txt"
    path.write_bytes(b"33,Jogging,49105962326000,-0.69,12.68,0.50;\n"
                     b"3\xff,Jogging,49106062271000,5.0,11.2,0.9;\n"
                     b"33,Jogging,49106112167000,4.9,10.8,-0.08;\n")  # fmt: skip
    dataset = read_dataset(path, DEFAULT_CLASSES, {})
    assert dataset.readings == 2 and dataset.skipped_lines == {"not UTF-8": [2]}


def test_the_summary_names_only_the_first_lines_of_a_reason() -> None:
    lines = ["33,Jogging,0,5.0,11.2,0.9;"] * 12
    (summary,) = parse_wisdm(lines, DEFAULT_CLASSES).skip_summary()
    assert summary == "skipped 12 lines, timestamp out of range (lines 1, 2, 3, 4, 5, ...)"


def test_replaying_a_file_of_bad_lines_only_says_which_lines(tmp_path: Path) -> None:
    path = tmp_path / "wisdm.txt"
    path.write_text("33,Jogging," + "1" * 30 + ",5.0,11.2,0.9;\n33,Dancing,1,2,3,4;\n")
    with pytest.raises(ValueError) as error:
        replay_dataset(
            SimulatorSettings(tokens_file=tmp_path / "tokens.json"),
            GatewaySettings(devices_file=tmp_path / "devices.json"), WireSettings(),
            path=path, speed=1.0, label_map=None, quiet=True,
        )  # fmt: skip
    message = str(error.value)
    assert message.startswith(f"{path} has no usable readings: ")
    assert "timestamp out of range (line 1)" in message
    assert "activity 'Dancing' not in the class list (line 2)" in message
    assert not (tmp_path / "devices.json").exists()  # nothing was provisioned for it
