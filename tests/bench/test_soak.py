"""The soak's measuring parts: process trees and their memory, first/last-minute peaks, counters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.gateway_totals import gateway_figures, stopped_gateway_totals
from bench.processes import parse_stat, process_table, still_running, tree, tree_rss_mb
from bench.soak import (
    Sample,
    max_lag,
    offsets_behind,
    peaks,
    prometheus_total,
)

# A child that starts a grandchild from a second thread, as a Spark JVM starts Python workers.
FORKS_FROM_A_THREAD = """
import subprocess, sys, threading, time
threading.Thread(target=lambda: subprocess.Popen(["sleep", "60"])).start()
print("started", flush=True)
time.sleep(60)
"""


def test_stat_line_with_spaces_and_parentheses_in_the_command_name() -> None:
    stat = "4242 (java (x) y) S 7 4242 4242 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 40 0 987654 100 50"

    info = parse_stat(stat)

    assert (info.pid, info.state, info.ppid, info.session, info.start_ticks) == (
        4242, "S", 7, 4242, 987654,
    )  # fmt: skip


def test_a_service_tree_holds_grandchildren_forked_from_other_threads_and_its_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", FORKS_FROM_A_THREAD],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "started\n"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            table = process_table()
            members = tree(child.pid, table)
            if len(members) == 2:
                break
            time.sleep(0.1)
        (grandchild,) = members - {child.pid}
        assert table[grandchild].ppid == child.pid
        assert tree_rss_mb(child.pid, table) > tree_rss_mb(grandchild, table) > 0
        seen = {pid: table[pid].start_ticks for pid in members}
        assert {p.pid for p in still_running(seen, table)} == members
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 10
    while still_running(seen, process_table()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running(seen, process_table()) == []
    assert tree(child.pid, process_table()) == set()


def test_peaks_are_taken_in_the_first_and_the_last_minute() -> None:
    samples = [
        Sample(0.0, {"stream": 900.0, "api": 200.0}, lag=5000),
        Sample(55.0, {"stream": 1000.0, "api": 210.0}, lag=800),
        Sample(300.0, {"stream": 2000.0, "api": 999.0}, lag=None),  # the middle counts for neither
        Sample(545.0, {"stream": 1100.0}, lag=40),
        Sample(600.0, {"stream": 1050.0, "api": 220.0}, lag=None),
    ]

    assert peaks(samples, duration_s=600.0) == {"api": (210.0, 220.0), "stream": (1000.0, 1100.0)}
    assert max_lag(samples[:2]) == 5000
    assert max_lag(samples[-1:]) is None


def test_stream_lag_is_read_as_a_number_though_spark_writes_it_as_text() -> None:
    assert offsets_behind({"offsets_behind_latest": "1200"}) == 1200
    assert offsets_behind({"offsets_behind_latest": 35}) == 35
    assert offsets_behind({"batch_id": 0}) is None


def test_stream_lag_is_the_records_behind_the_topics_end_where_the_status_has_it() -> None:
    status = {"records_behind_topic_end": 4200, "offsets_behind_latest": "0"}
    assert offsets_behind(status) == 4200
    assert offsets_behind(status | {"records_behind_topic_end": None}) is None


def test_prometheus_counters_are_summed_over_their_labels() -> None:
    text = "\n".join([
        "# HELP mbd_gateway_accepted_batches_total Batches acknowledged by Kafka",
        "mbd_gateway_accepted_batches_total 1234.0",
        "mbd_gateway_accepted_batches_created 1.7e+09",
        'mbd_gateway_rejected_batches_total{reason="schema"} 3.0',
        'mbd_gateway_rejected_batches_total{reason="auth"} 2.0',
    ])  # fmt: skip

    assert prometheus_total(text, "mbd_gateway_accepted_batches_total") == 1234.0
    assert prometheus_total(text, "mbd_gateway_rejected_batches_total") == 5.0
    assert prometheus_total(text, "mbd_gateway_accepted_readings_total") == 0.0


STOPPED_LINE = "2026-11-24 10:00:00,000 INFO ingest.app: gateway stopped, totals "


def test_gateway_totals_logged_at_each_stop_are_summed(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("\n".join([
        "INFO:     Application startup complete.",
        STOPPED_LINE + '{"accepted_batches": 10, "accepted_readings": 400, "rejected_batches": 1}',
        "INFO:     Application startup complete.",
        STOPPED_LINE + '{"accepted_batches": 5, "accepted_readings": 200, "rejected_batches": 0}',
    ]))  # fmt: skip

    assert stopped_gateway_totals(log) == (
        {"accepted_batches": 15, "accepted_readings": 600, "rejected_batches": 1}, 2,
    )  # fmt: skip


def test_only_the_totals_logged_after_the_soak_began_count(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    earlier = STOPPED_LINE + '{"accepted_batches": 99, "rejected_batches": 0}\n'
    log.write_text(earlier + STOPPED_LINE + '{"accepted_batches": 7, "rejected_batches": 2}\n')

    totals = stopped_gateway_totals(log, after_byte=len(earlier.encode()))

    assert totals == ({"accepted_batches": 7, "rejected_batches": 2}, 1)


def test_a_gateway_that_logged_no_totals_gives_none(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("INFO:     Application startup complete.\n")

    assert stopped_gateway_totals(log) is None
    assert stopped_gateway_totals(tmp_path / "missing.log") is None


@pytest.mark.parametrize(
    "last", ['{"accepted_batches": 5, "accep', '{"accepted_batches": null}', "[5]"]
)
def test_an_unreadable_totals_line_gives_none_rather_than_a_sum_too_small(
    tmp_path: Path, last: str
) -> None:
    log = tmp_path / "gateway.log"
    log.write_text(STOPPED_LINE + '{"accepted_batches": 10}\n' + STOPPED_LINE + last + "\n")

    assert stopped_gateway_totals(log) is None


def test_logged_totals_count_only_when_every_gateway_process_logged_them() -> None:
    logged = {"accepted_batches": 15}
    before = {"accepted_batches": 14}

    assert gateway_figures((logged, 1), 0, before) == (logged, "at its stop")
    assert gateway_figures((logged, 2), 1, before) == (logged, "at its stop")
    # restarted once, but one process left no totals (killed): its batches would be missing
    assert gateway_figures((logged, 1), 1, before) == (
        before, "before the stop, phones still posting",
    )  # fmt: skip
    assert gateway_figures(None, 0, before) == (before, "before the stop, phones still posting")
