"""The simulator's record of what each phone was really doing."""

from __future__ import annotations

import json
from pathlib import Path

from simulators.fleet import FleetTruth


def test_the_timeline_records_each_change_of_activity_once(tmp_path: Path) -> None:
    truth = FleetTruth(labelled={"a"}, timeline=tmp_path / "truth.jsonl")
    for t, activity in [(0, "walking"), (2000, "walking"), (4000, "sitting"), (6000, "sitting")]:
        truth.observe("a", t, activity)
    truth.observe("b", 1000, "jogging")
    lines = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert lines == [
        {"device_id": "a", "from_ms": 0, "activity": "walking", "labelled": True},
        {"device_id": "a", "from_ms": 4000, "activity": "sitting", "labelled": True},
        {"device_id": "b", "from_ms": 1000, "activity": "jogging", "labelled": False},
    ]
    assert truth.activity == {"a": "sitting", "b": "jogging"}
