"""The retraining bench's arithmetic: growth per run counted from run 2, per worker process."""

from __future__ import annotations

from bench.retraining import growth


def after(run: int, driver: int, workers: dict[str, int]) -> dict:
    return {"run": run, "driver_mb": driver, "jvm_mb": 900, "workers_mb": workers}


def test_growth_is_counted_from_the_second_run_and_averaged_over_the_workers() -> None:
    runs = [
        after(1, 700, {"11": 400, "12": 410}),  # TensorFlow and the windows load in run 1
        after(2, 740, {"11": 700, "12": 710}),
        after(3, 741, {"11": 705, "12": 713}),
        after(4, 746, {"11": 712, "12": 718}),
    ]
    figures = growth(runs)
    assert figures["worker_mb_per_run"] == 5.0  # (715 - 705) / 2 runs
    assert figures["driver_mb_per_run"] == 3.0
    assert figures["same_workers"] is True
    assert figures["after_each_run"] == runs


def test_a_worker_spark_replaced_is_flagged() -> None:
    runs = [after(1, 700, {"11": 400}), after(2, 740, {"11": 700}), after(3, 741, {"13": 690})]
    assert growth(runs)["same_workers"] is False
