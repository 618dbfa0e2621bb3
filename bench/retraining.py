"""Retraining's memory: how much the trainer's processes keep from each run of a schedule.

``mbd train --every`` keeps one Spark session, and with it the same Python workers, for as long
as it runs, so whatever a worker keeps per run adds up, run after run. This bench runs the
retraining job (:func:`models.job.train_once`) ``--runs`` times in one Spark session on
local[2], as the schedule does, in two arms, each in a fresh process of its own:

* ``new``: before every run after the first, three new phones' windows join the lake, so each
  run has statistics of its own, as every scheduled run on a growing lake has;
* ``same``: the lake never changes; the baseline, what a run keeps when nothing is new.

The runs follow each other at once. Spark ends a Python worker idle for a minute, so this is
the case of a schedule whose runs follow within a minute (``mbd up``'s 2-minute schedule once
the lake has grown); a schedule with longer gaps gets fresh workers each run.

After each run it reads the resident memory (VmRSS) of the arm's driver, its JVM and each
Python worker that Spark's daemon forked. The figures: the workers' mean growth per run from
run 2 to the last (run 1 loads TensorFlow and the windows), in each arm, and the ratio of the
two. Until 2026-11-25 a worker built the models it trains anew for every new set of statistics,
and each model that Keras 3.15 fits and then drops leaves memory behind in TensorFlow: that
code grew a worker by 34.7 MB a run with new statistics and 1.6 MB with the same lake (ratio
21.7×), against 4.0 and 1.4 MB (2.86×) since (2026-11-25; models/partial.py tells what
changed). What new statistics still add, about 2.6 MB a run, is not accounted for; the lake
that grows by three phones a run is a small part of it (their windows are held by the
workers, about 0.2 MB a run).

    python -m bench.retraining [--runs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.processes import command_of, process_table, rss_kb, tree
from common.settings import PROJECT_ROOT

ARMS = ("new", "same")


def memory_mb(root: int) -> dict[str, Any]:
    """RSS in MB of ``root`` (the driver), the JVMs in its tree, and each forked Python worker
    (a process whose parent is Spark's worker daemon, itself a child of the JVM)."""
    table = process_table()
    pids = tree(root, table)
    java = [pid for pid in pids if command_of(pid).split(" ")[0].endswith("java")]
    daemons = [pid for pid in pids if table[pid].ppid in java and "pyspark" in command_of(pid)]
    workers = sorted(pid for pid in pids if table[pid].ppid in daemons)
    return {
        "driver_mb": round(rss_kb(root) / 1024),
        "jvm_mb": round(sum(rss_kb(pid) for pid in java) / 1024),
        "workers_mb": {str(pid): round(rss_kb(pid) / 1024) for pid in workers},
    }


def run_arm(arm: str, runs: int, folder: Path) -> list[dict[str, Any]]:
    """The retraining job ``runs`` times in this process's Spark session; memory after each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from common.settings import (
        JvmSettings,
        LakeSettings,
        RegistrySettings,
        SparkSettings,
        TrainSettings,
    )
    from common.spark import build_spark_session
    from models.job import train_once
    from simulators.windows import simulate_windows, write_lake

    lake = folder / "lake"
    write_lake(simulate_windows(devices=20, seconds_per_device=600, seed=2), lake)
    settings = TrainSettings(
        lake=LakeSettings(uri=lake), registry=RegistrySettings(dir=folder / "registry"),
        pretrain_rounds=2, finetune_rounds=6, local_epochs=1, patience=3, partitions=2,
        spark=SparkSettings(master="local[2]"),
    )  # fmt: skip
    spark = build_spark_session(settings.spark, JvmSettings(), app_name=f"bench-retraining-{arm}")
    after = []
    try:
        for run in range(1, runs + 1):
            if arm == "new" and run > 1:
                more = simulate_windows(devices=3, seconds_per_device=300, seed=100 + run,
                                        device_prefix=f"run{run}-")  # fmt: skip
                write_lake(more, lake)
            began = time.perf_counter()
            outcome = train_once(spark, settings)
            figures = {"run": run, "seconds": round(time.perf_counter() - began, 1),
                       "macro_f1": round(float(outcome.metrics["macro_f1"]), 4),
                       **memory_mb(os.getpid())}  # fmt: skip
            print(json.dumps(figures), file=sys.stderr, flush=True)
            after.append(figures)
    finally:
        spark.stop()
    return after


def growth(after: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' mean RSS growth per run from run 2 to the last, and the driver's."""
    first, last = after[1], after[-1]
    runs = last["run"] - first["run"]

    def mean(figures: dict[str, Any]) -> float:
        workers = figures["workers_mb"].values()
        return sum(workers) / len(workers) if workers else 0.0

    return {
        "worker_mb_per_run": round((mean(last) - mean(first)) / runs, 1),
        "driver_mb_per_run": round((last["driver_mb"] - first["driver_mb"]) / runs, 1),
        # the same worker processes throughout, or growth per worker would mislead
        "same_workers": first["workers_mb"].keys() == last["workers_mb"].keys(),
        "after_each_run": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="retraining runs per arm (≥ 3)")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in-process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3: growth is measured from run 2 on")
    if args.arm:
        with tempfile.TemporaryDirectory(prefix="mbd-bench-retraining-") as folder:
            after = run_arm(args.arm, args.runs, Path(folder))
        args.out.write_text(json.dumps(after))
        return

    arms: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mbd-bench-retraining-") as folder:
        for arm in ARMS:  # one process each, one after the other
            out = Path(folder) / f"{arm}.json"
            command = [sys.executable, "-m", "bench.retraining", "--arm", arm,
                       "--runs", str(args.runs), "--out", str(out)]  # fmt: skip
            subprocess.run(command, cwd=PROJECT_ROOT, check=True)
            arms[arm] = growth(json.loads(out.read_text()))
            brief = {k: v for k, v in arms[arm].items() if k != "after_each_run"}
            print(f"{arm}: {json.dumps(brief)}")
    new, same = arms["new"]["worker_mb_per_run"], arms["same"]["worker_mb_per_run"]
    print(
        json.dumps(
            {
                "benchmark": "retraining",
                "runs": args.runs,
                "arms": arms,
                "worker_mb_per_run_new_statistics": new,
                "worker_mb_per_run_same_lake": same,
                # only where the baseline grew at all; a ratio over ~0 says nothing
                "ratio_new_over_same": round(new / same, 2) if same >= 0.5 else None,
            }
        )
    )


if __name__ == "__main__":
    main()
