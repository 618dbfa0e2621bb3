"""The ``applyInPandasWithState`` function's timers, driven by pyspark's own ``GroupState``."""

from __future__ import annotations

import json
import time

import pandas as pd
from pyspark.sql import Row
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from common.settings import StreamSettings, WindowSettings
from streaming.device_windows import DeviceState, spark_step
from streaming.schema import STATE
from tests.streaming.test_device_windows import T0, samples

SETTINGS = StreamSettings(lateness_s=0, idle_flush_s=600, timer_s=5, window=WindowSettings())


def group_state(value: str | None, *, timed_out: bool) -> GroupState:
    """A key's state as Spark hands it to the function in a micro-batch that starts now."""
    return GroupState(
        optionalValue=Row(value) if value is not None else None,
        batchProcessingTimeMs=int(time.time() * 1000), eventTimeWatermarkMs=-1,
        timeoutConf=GroupStateTimeout.ProcessingTimeTimeout, hasTimedOut=timed_out,
        watermarkPresent=False, defined=value is not None, updated=False, removed=False,
        timeoutTimestamp=-1, keyAsUnsafe=b"", valueSchema=STATE,
    )  # fmt: skip


def call(state: GroupState, rows: pd.DataFrame | None = None, *, drain: bool = False):
    batches = iter([] if rows is None else [rows])
    out = list(spark_step(SETTINGS, drain=drain)(("d1",), batches, state))
    return pd.concat(out) if out else pd.DataFrame()


def timer_in_ms(state: GroupState) -> int:
    properties = json.loads(state.json())
    return properties["timeoutTimestamp"] - properties["batchProcessingTimeMs"]


def open_phone() -> str:
    """The state a normal run keeps for a phone that sent 12 s and then fell silent."""
    state = group_state(None, timed_out=False)
    call(state, samples(T0, 12, seq=0))
    return state.get[0]


def test_a_timer_is_set_no_further_ahead_than_timer_s() -> None:
    state = group_state(None, timed_out=False)
    before = int(time.time() * 1000)

    call(state, samples(T0, 12, seq=0))

    assert timer_in_ms(state) == 5000
    due = DeviceState.from_text(state.get[0]).due_ms
    assert before + 600_000 <= due <= int(time.time() * 1000) + 600_000


def test_a_timer_that_fires_before_the_flush_is_due_is_set_again() -> None:
    left = open_phone()
    state = group_state(left, timed_out=True)

    out = call(state)

    assert out.empty and state.exists
    assert DeviceState.from_text(state.get[0]).due_ms == DeviceState.from_text(left).due_ms
    assert 0 < timer_in_ms(state) <= 5000


def test_a_drain_flushes_a_phone_a_normal_run_left_open_at_its_next_timer() -> None:
    state = group_state(open_phone(), timed_out=True)

    out = call(state, drain=True)

    assert list(out["window_start_ms"]) == [T0 + 5000, T0 + 10_000]
    assert not state.exists  # removed: nothing left to keep the drain running


def test_a_due_flush_leaves_a_tombstone_whose_timer_is_capped_too() -> None:
    opened = DeviceState.from_text(open_phone())
    opened.due_ms = int(time.time() * 1000) - 1
    state = group_state(opened.to_text(), timed_out=True)

    out = call(state)

    assert list(out["window_start_ms"]) == [T0 + 5000, T0 + 10_000]
    tombstone = DeviceState.from_text(state.get[0])
    assert len(tombstone.t) == 0 and tombstone.due_ms > time.time() * 1000 + 890_000
    assert timer_in_ms(state) == 5000


def test_a_state_from_before_due_times_acts_when_its_timer_fires() -> None:
    old = DeviceState.from_text(open_phone())
    old.due_ms = None  # written by a version that relied on the timer alone
    state = group_state(old.to_text(), timed_out=True)

    assert list(call(state)["window_start_ms"]) == [T0 + 5000, T0 + 10_000]
