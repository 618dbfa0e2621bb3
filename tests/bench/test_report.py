"""The benchmark table: headline figures and goals per benchmark, failures shown, not raised."""

from __future__ import annotations

import copy

from bench.report import Machine, machine_from_proc, render

MACHINE = Machine(hostname="vm", cores=2, memory_gib=23.6, cpu_model="Intel(R) Xeon(R) Processor")
RUN = {"exit_code": 0, "finished_at": "2026-11-22 08:30 UTC", "seconds": 42.0, "host": "vm"}

KAFKA_PRODUCER = {
    "benchmark": "kafka_producer",
    "settings": {
        "default (linger 5 ms, 16 KiB batches)": {"records_per_s": 8356.0, "mb_per_s": 8.56},
        "linger 20 ms, 256 KiB batches": {"records_per_s": 19619.5, "mb_per_s": 20.09},
    },
    "baseline_setting": "linger 20 ms, 256 KiB batches",
    "baseline_records_per_s": 19619.5,
    "baseline_mb_per_s": 20.09,
    "suite": RUN,
}
INGEST = {
    "benchmark": "ingest",
    "throughput": {"accepted_batches_per_s": 675.8, "accepted_readings_per_s": 28383.2,
                   "latency_p50_ms": 83.92, "latency_p99_ms": 270.03},
    "half_goal_rate": {"target_readings_per_s": 25000.0, "latency_p50_ms": 61.2,
                       "latency_p99_ms": 99.4},
    "half_rate": {"target_readings_per_s": 14191.6, "latency_p50_ms": 67.51,
                  "latency_p99_ms": 418.41},
    "gateway_peak_rss_mb": 193.2,
    "ratio_to_raw_producer": 0.09,
    "goal_readings_per_s": 50_000,
    "goal_p99_ms_at_half_goal_rate": 100,
    "suite": RUN,
}  # fmt: skip
STREAMING = {
    "benchmark": "streaming",
    "bare_copy_readings_per_s": 21673.0,
    "job_readings_per_s": 4564.0,
    "ratio_to_bare_copy": 0.211,
    "first_drain": {"bare_copy_readings_per_s": 9870.0, "job_readings_per_s": 3012.0},
    "goal_readings_per_s": 50_000,
    "goal_freshness_p95_s": 10.0,
    "freshness": {
        "phones": 200,
        "window_end_to_lake": {"p50_s": 20.5, "p95_s": 25.5, "windows": 900},
        "window_end_to_prediction": {"p50_s": 21.3, "p95_s": 26.9, "windows": 890},
    },
    "suite": RUN,
}
PREDICT = {
    "benchmark": "predict",
    "closed_loop": {"concurrency": 8, "requests_per_s": 220.0, "p50_ms": 30.1, "p99_ms": 286.0},
    "paced": {"rate_per_s": 100.0, "p50_ms": 4.3, "p99_ms": 8.8, "goal_p99_ms": 25.0},
    "in_process": {"model_p50": 0.8, "model_p99": 1.5},
    "ratio_api_p50_to_model_p50": 5.4,
    "suite": RUN,
}


def run_figures(seconds: float | None, accuracy: float, f1: float) -> dict:
    return {"seconds_to_target": seconds, "heldout_accuracy": accuracy, "heldout_macro_f1": f1}


TRAINING = {
    "benchmark": "training",
    "target_val_accuracy": 0.97,
    "runs": {
        "a_single_process": run_figures(77.0, 0.992, 0.965),
        "b_one_worker": run_figures(249.0, 0.994, 0.972),
        "c_two_workers": {
            **run_figures(80.0, 0.995, 0.974),
            "seconds_to_target_each_run": [80.0, 91.5, 79.0],
        },
        "labels10_pretrained": run_figures(None, 0.9, 0.888),
    },
    "speedup_c_over_b": 3.11,
    "pretraining_gain_macro_f1_at_10pct_labels": -0.013,
    "goals": {"speedup_at_least_1.7": True, "pretraining_helps": False},
    "suite": RUN,
}


def arm_figures(worker_mb: float, driver_mb: float, same_workers: bool = True) -> dict:
    return {"worker_mb_per_run": worker_mb, "driver_mb_per_run": driver_mb,
            "same_workers": same_workers, "after_each_run": []}  # fmt: skip


RETRAINING = {
    "benchmark": "retraining",
    "runs": 8,
    "arms": {"new": arm_figures(4.6, 0.3), "same": arm_figures(2.3, -0.5, same_workers=False)},
    "ratio_new_over_same": 2.0,
    "suite": RUN,
}
SOAK = {
    "benchmark": "soak",
    "phones": 500,
    "minutes": 10.0,
    "seconds_to_up": 95.2,
    "services": {
        "broker": {"start_peak_rss_mb": 410.0, "end_peak_rss_mb": 455.5, "restarts": 0},
        "stream": {"start_peak_rss_mb": 1500.2, "end_peak_rss_mb": 1610.0, "restarts": 1},
    },
    "stream": {"start_max_lag": 1200, "end_max_lag": 35,
               "totals": {"windows": 51234, "predictions": 50000}},
    "model_version": "3",
    "gateway": {"accepted_batches": 150000.0},
    "simulator": {"sent": 150020, "accepted": 150012},
    "goals": {"no_restarts": False, "memory_flat": True, "stopped_cleanly": True},
    "suite": RUN,
}  # fmt: skip
ALL = {
    "kafka_producer": KAFKA_PRODUCER,
    "ingest": INGEST,
    "streaming": STREAMING,
    "predict": PREDICT,
    "training": TRAINING,
    "retraining": RETRAINING,
    "soak": SOAK,
}
COMMANDS = {name: f"python -m bench.{name}" for name in ALL}


def table_rows(markdown: str) -> dict[str, list[str]]:
    """benchmark name → its cells, from the Markdown table's body."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][2:]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return {row[0]: row[1:] for row in cells}


def rendered(results: dict) -> dict[str, list[str]]:
    markdown = render(results, commands=COMMANDS, machine=MACHINE, generated_at="2026-11-22")
    return table_rows(markdown)


def test_every_benchmark_gets_a_row_with_its_headline_figures_goal_date_and_command() -> None:
    rows = rendered(ALL)

    assert list(rows) == list(ALL)
    assert all(cells[0] == "ok" for cells in rows.values())
    _, figures, goal, finished, command = rows["ingest"]
    assert "28,383 accepted readings/s, p50 83.92 ms, p99 270.03 ms" in figures
    assert "at half the goal's rate (25,000 readings/s): p50 61.2 ms, p99 99.4 ms" in figures
    assert "at half the measured rate (14,192 readings/s): p50 67.51 ms, p99 418.41 ms" in figures
    assert "ratio to the raw producer (batch-sized records) 0.09" in figures
    assert goal == "≥ 50,000 readings/s: **not met**<br>p99 < 100 ms at half the goal's rate: met"
    assert finished == "2026-11-22 08:30 UTC (42 s)"
    assert command == "`python -m bench.ingest`"

    assert "19,620 records/s, 20.09 MB/s (linger 20 ms, 256 KiB batches)" in rows[
        "kafka_producer"][1]  # fmt: skip
    assert rows["kafka_producer"][2] == "— (baseline for the others)"

    streaming = rows["streaming"]
    assert "job 4,564 readings/s vs bare Kafka→Parquet copy 21,673/s (ratio 0.211)" in streaming[1]
    assert "the session's first drain 3,012 readings/s vs 9,870/s" in streaming[1]
    assert "→ prediction p50 21.3 s, p95 26.9 s" in streaming[1]
    assert "window end → prediction p95 ≤ 10 s: **not met**" in streaming[2]

    assert rows["predict"][2] == "p99 < 25 ms at 100 requests/s: met"
    assert "paced 100 requests/s: p50 4.3 ms, p99 8.8 ms" in rows["predict"][1]


def test_training_row_has_every_run_speedup_and_pretraining_gain() -> None:
    _, figures, goal, _, _ = rendered(ALL)["training"]

    lines = figures.split("<br>")
    assert lines[0] == "a_single_process: 77 s to 0.97, held-out accuracy 0.992, macro-F1 0.965"
    assert lines[2] == ("c_two_workers: 80 s to 0.97 (median of 3 runs: 80, 91.5, 79 s), "
                        "held-out accuracy 0.995, macro-F1 0.974")  # fmt: skip
    assert (
        lines[3] == "labels10_pretrained: 0.97 not reached, held-out accuracy 0.9, macro-F1 0.888"
    )
    assert lines[4] == "speedup (c) over (b) 3.11×; pretraining gain at 10 % labels -0.013 macro-F1"
    assert goal == ("speedup (c) over (b) ≥ 1.7×: met<br>"
                    "pretraining raises macro-F1 at 10 % labels: **not met**")  # fmt: skip


def test_retraining_row_has_each_arms_growth_and_their_ratio_but_no_goal() -> None:
    _, figures, goal, _, _ = rendered(ALL)["retraining"]

    assert figures.split("<br>") == [
        "new: Python workers +4.6 MB a run, driver +0.3 MB a run",
        "same: Python workers +2.3 MB a run, driver -0.5 MB a run (Spark replaced a worker)",
        "8 runs an arm; new statistics over the same lake 2×",
    ]
    assert goal == "— (none set: figures to watch)"
    without_ratio = rendered({"retraining": {**RETRAINING, "ratio_new_over_same": None}})
    assert without_ratio["retraining"][1].endswith("— (the same lake's workers did not grow)")


def test_soak_row_has_memory_per_service_restarts_lag_and_model() -> None:
    _, figures, goal, _, _ = rendered(ALL)["soak"]

    assert "stream: peak RSS 1,500 → 1,610 MB, restarts 1" in figures
    assert "stream lag (Kafka records behind) first minute ≤ 1,200, last minute ≤ 35" in figures
    assert "51,234 windows in the lake, 50,000 predictions" in figures
    assert "promoted model v3" in figures
    assert (
        "gateway accepted 150,000 batches (read before the stop, phones still posting); "
        "the simulator counted 150,012 accepted" in figures
    )
    assert "no service restarted: **not met**" in goal


def test_soak_row_says_the_gateway_was_read_at_its_stop_where_it_was() -> None:
    soak = {**SOAK, "gateway_read": "at its stop"}
    _, figures, _, _, _ = rendered({**ALL, "soak": soak})["soak"]

    assert "gateway accepted 150,000 batches (read at its stop);" in figures


def test_a_streaming_run_without_a_first_drain_still_gets_its_row() -> None:
    older = {key: value for key, value in STREAMING.items() if key != "first_drain"}
    streaming = rendered({"streaming": older})["streaming"]

    assert streaming[0] == "ok"
    assert "ratio 0.211)<br>" in streaming[1]
    assert "first drain" not in streaming[1]


def test_missing_failed_and_malformed_results_show_as_failed_rows() -> None:
    broken_ingest = copy.deepcopy(INGEST)
    del broken_ingest["half_rate"]
    results = {
        "kafka_producer": KAFKA_PRODUCER,
        "ingest": broken_ingest,
        "streaming": None,
        "predict": {"benchmark": "predict", "suite": {**RUN, "exit_code": 1}},
        "training": {"benchmark": "training",
                     "suite": {**RUN, "error": "its last line of output is not a JSON object"}},
    }  # fmt: skip
    rows = rendered(results)

    assert rows["kafka_producer"][0] == "ok"
    assert rows["ingest"][0].startswith("**failed**: its JSON does not have the expected figures")
    assert "half_rate" in rows["ingest"][0]
    assert rows["streaming"] == ["**failed**: no result (not run yet, or its JSON is missing)",
                                 "—", "—", "—", "`python -m bench.streaming`"]  # fmt: skip
    assert rows["predict"][0] == "**failed**: exit status 1; see `bench/results/predict.log`"
    assert rows["predict"][3] == "2026-11-22 08:30 UTC (42 s)"
    assert rows["training"][0].startswith("**failed**: its last line of output is not a JSON")


def test_header_names_the_machine_and_date_and_rows_from_another_host_say_so() -> None:
    elsewhere = {**PREDICT, "suite": {**RUN, "host": "quiet-box"}}
    markdown = render({"predict": elsewhere}, commands=COMMANDS, machine=MACHINE,
                      generated_at="2026-11-22 09:00 UTC")  # fmt: skip

    assert ("on 2026-11-22 09:00 UTC. Machine: vm: Intel(R) Xeon(R) Processor, 2 cores, 23.6 GiB"
            in markdown)  # fmt: skip
    assert table_rows(markdown)["predict"][3] == "2026-11-22 08:30 UTC (42 s) on quiet-box"


def test_machine_is_read_from_cpuinfo_and_meminfo() -> None:
    cpuinfo = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
    )
    meminfo = "MemTotal:       24731708 kB\nMemFree:        1 kB\n"

    machine = machine_from_proc(hostname="box", cores=2, cpuinfo=cpuinfo, meminfo=meminfo)

    assert machine == Machine(hostname="box", cores=2, memory_gib=23.6, cpu_model="AMD EPYC 7B13")
    assert machine_from_proc(hostname="box", cores=1, cpuinfo="", meminfo="").cpu_model == (
        "unknown CPU"
    )


def test_a_streaming_run_judged_on_its_first_drain_shows_the_warm_drains_and_their_cost() -> None:
    warm = {"readings": 394_800, "job_readings_per_s": 50788.0}
    run = {key: value for key, value in STREAMING.items() if key != "first_drain"}
    run |= {"readings": 1_999_200, "job_readings_per_s": 69170.0,
            "second_drain": {"readings": 1_999_200, "job_readings_per_s": 105646.0},
            "small_drain": warm,
            "warm_drain_cost": {"fixed_seconds_per_drain": 5.03,
                                "marginal_readings_per_s": 143890.0}}  # fmt: skip
    _, figures, goal, _, _ = rendered({"streaming": run})["streaming"]

    lines = figures.split("<br>")
    assert lines[0].startswith("1,999,200 readings: job 69,170 readings/s vs bare")
    assert lines[1] == "the same topic again, warm: 105,646 readings/s"
    assert lines[2] == "394,800 readings, warm: 50,788 readings/s"
    assert lines[3] == "a warm drain takes 5.03 s + readings / 143,890/s"
    assert goal.startswith("≥ 50,000 readings/s: met<br>")
