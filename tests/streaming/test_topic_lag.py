"""Records behind the readings topic's end, from a micro-batch's end offsets."""

from __future__ import annotations

import json

import pytest

from streaming.topic_lag import batch_offsets, records_behind


def test_a_batch_end_is_read_from_sparks_json_object_or_its_text() -> None:
    batch_end = {"mbd.readings": {"0": 100, "1": 250}, "other": {"0": 5}}

    assert batch_offsets(batch_end, "mbd.readings") == {0: 100, 1: 250}
    assert batch_offsets(json.dumps(batch_end), "mbd.readings") == {0: 100, 1: 250}


@pytest.mark.parametrize("missing", [None, "", "None", "null"])
def test_a_batch_without_end_offsets_has_none(missing: str | None) -> None:
    assert batch_offsets(missing, "mbd.readings") == {}


def test_text_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        batch_offsets("{mbd.readings: 3", "mbd.readings")


def test_records_past_the_batch_are_summed_over_its_partitions() -> None:
    assert records_behind({0: 100, 1: 250}, {0: 130, 1: 250}) == 30
    assert records_behind({0: 100, 1: 250}, {0: 130, 1: 251, 2: 9}) == 31


def test_an_unknown_end_or_nothing_read_gives_no_figure() -> None:
    assert records_behind({0: 100, 1: 250}, {0: 130}) is None
    assert records_behind({}, {0: 10}) is None
