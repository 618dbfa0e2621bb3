"""Records behind the readings topic's end, from a micro-batch's end offsets."""

from __future__ import annotations

import json

from streaming.topic_lag import records_behind


def test_records_past_the_batch_are_summed_over_partitions() -> None:
    batch_end = {"mbd.readings": {"0": 100, "1": 250}, "other": {"0": 5}}

    assert records_behind(batch_end, "mbd.readings", {0: 130, 1: 250}) == 30
    assert records_behind(json.dumps(batch_end), "mbd.readings", {0: 130, 1: 251}) == 31


def test_a_partition_the_batch_has_not_reached_counts_whole() -> None:
    assert records_behind({"mbd.readings": {"0": 10}}, "mbd.readings", {0: 10, 1: 8}) == 8


def test_no_batch_end_means_no_figure() -> None:
    assert records_behind(None, "mbd.readings", {0: 10}) is None
