"""Training: single-process Keras against parameter averaging on one and two Spark workers.

On the same lake of simulated windows (≥ 100,000, made by the simulator's phones and the shared
window code, cached under .cache/bench/):

(a) single-process Keras on one core (the job with ``runner=local``: one partial model, so a
    round is plain training for ``local_epochs``);
(b) parameter averaging with 2 partitions on a standalone cluster of one 1-core worker;
(c) the same on two 1-core workers.

For each: wall time from the start of training to the first round whose validation accuracy
reaches the common target, final held-out accuracy and macro-F1 (devices split, never windows).
Then, with only 10 % of windows labelled, held-out macro-F1 with and without phase-1
pretraining (on local[2], 2 partitions). Each run is its own process, one at a time.
The last line printed is one JSON object.

    python -m bench.training [--devices 500] [--seconds 1050] [--target 0.97]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".cache" / "bench"
# Two local epochs per round: on two cores a round's fixed cost (scheduling, the driver's
# validation) is large next to one epoch of half the windows.
TRAINING = {"pretrain_rounds": 3, "finetune_rounds": 30, "local_epochs": 2, "patience": 3}


def cached_lakes(devices: int, seconds: float, seed: int) -> tuple[Path, Path, int]:
    """(fully labelled lake, 10 %-labelled lake, windows), generated once per parameter set."""
    from simulators.windows import hide_labels, simulate_windows, write_lake

    root = CACHE / f"lake-{devices}x{seconds:g}-seed{seed}"
    full, tenth, stamp = root / "full", root / "labels10", root / "windows.count"
    if not stamp.exists():
        began = time.perf_counter()
        windows = simulate_windows(devices=devices, seconds_per_device=seconds, seed=seed)
        write_lake(windows, full)
        write_lake(hide_labels(windows, keep_fraction=0.1, seed=seed), tenth)
        stamp.write_text(str(len(windows)))
        print(f"generated {len(windows)} windows in {time.perf_counter() - began:.0f} s")
    return full, tenth, int(stamp.read_text())


def run_one(args: argparse.Namespace) -> None:
    """Child process: one training run, its metrics to ``args.out``."""
    if args.runner == "local":
        from models.runtime import limit_tensorflow_threads

        limit_tensorflow_threads()  # one thread, before anything starts TensorFlow
    from common.settings import JvmSettings, RegistrySettings, SparkSettings, TrainSettings
    from common.spark import build_spark_session
    from models.job import train_once

    with tempfile.TemporaryDirectory(prefix="mbd-bench-registry-") as registry:
        settings = TrainSettings(
            lake_dir=args.lake, runner=args.runner, partitions=args.partitions,
            registry=RegistrySettings(dir=Path(registry)),
            spark=SparkSettings(master=args.master, driver_memory="4g"),
            **{**TRAINING, **({"pretrain_rounds": 0} if args.no_pretrain else {})},
        )  # fmt: skip
        spark = build_spark_session(settings.spark, JvmSettings(), app_name="mbd-bench-training")
        spark.sparkContext.setLogLevel("ERROR")
        outcome = train_once(spark, settings)
        spark.stop()
    args.out.write_text(json.dumps(outcome.metrics, default=str))


def child(name: str, out: Path, *options: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.training", "one", "--out", str(out), *options]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"run {name} failed:\n{done.stderr[-4000:]}")
    metrics = json.loads(out.read_text())
    metrics["process_seconds"] = round(time.perf_counter() - began, 1)
    return metrics


def time_to_target(metrics: dict[str, Any], target: float) -> float | None:
    for entry in metrics["history"]:
        if entry["phase"] == "finetune" and (entry["val_accuracy"] or 0) >= target:
            return float(entry["elapsed_s"])
    return None


def figures(metrics: dict[str, Any], target: float) -> dict[str, Any]:
    finetune = [e for e in metrics["history"] if e["phase"] == "finetune"]
    return {
        "seconds_to_target": time_to_target(metrics, target),
        "training_seconds": round(
            sum(metrics["timings"][k] for k in metrics["timings"] if k != "total"), 1
        ),
        "rounds": len(metrics["history"]),
        "best_val_accuracy": round(max(e["val_accuracy"] for e in finetune), 4),
        "heldout_accuracy": round(metrics["accuracy"], 4),
        "heldout_macro_f1": round(metrics["macro_f1"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    one = sub.add_parser("one")
    one.add_argument("--lake", type=Path, required=True)
    one.add_argument("--runner", choices=["spark", "local"], default="spark")
    one.add_argument("--master", default="local[1]")
    one.add_argument("--partitions", type=int, default=2)
    one.add_argument("--no-pretrain", action="store_true")
    one.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=1050.0, help="of each phone's life")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target", type=float, default=0.97, help="validation accuracy")
    args = parser.parse_args()
    if args.mode == "one":
        run_one(args)
        return

    from infra.spark_cluster import standalone_cluster

    CACHE.mkdir(parents=True, exist_ok=True)
    full, tenth, windows = cached_lakes(args.devices, args.seconds, args.seed)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mbd-bench-training-") as tmp:
        work = Path(tmp)
        lake = ["--lake", str(full)]
        runs["a_single_process"] = child("a", work / "a.json", *lake, "--runner", "local")
        for name, workers in (("b_one_worker", 1), ("c_two_workers", 2)):
            with standalone_cluster(work / name, workers=workers, cores=1) as cluster:
                runs[name] = child(name, work / f"{name}.json", *lake, "--master",
                                   cluster.master_url)  # fmt: skip
            print(f"{name}: {json.dumps(figures(runs[name], args.target))}", flush=True)
        labels10 = ["--lake", str(tenth), "--master", "local[2]"]
        runs["labels10_pretrained"] = child("p", work / "p.json", *labels10)
        runs["labels10_no_pretraining"] = child("n", work / "n.json", *labels10, "--no-pretrain")

    (CACHE / "training-runs.json").write_text(json.dumps(runs, default=str))  # every round
    table = {name: figures(m, args.target) for name, m in runs.items()}
    a, b, c = table["a_single_process"], table["b_one_worker"], table["c_two_workers"]
    speedup = (
        round(b["seconds_to_target"] / c["seconds_to_target"], 2)
        if b["seconds_to_target"] and c["seconds_to_target"]
        else None
    )
    gain = table["labels10_pretrained"]["heldout_macro_f1"] - table[
        "labels10_no_pretraining"]["heldout_macro_f1"]  # fmt: skip
    summary = {
        "benchmark": "training",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "windows": windows,
        "devices": args.devices,
        "train_windows": runs["c_two_workers"]["data"]["train_windows"],
        "heldout_windows": runs["c_two_workers"]["data"]["holdout_windows"],
        "target_val_accuracy": args.target,
        "runs": table,
        "speedup_c_over_b": speedup,
        "accuracy_gap_a_minus_c": round(a["heldout_accuracy"] - c["heldout_accuracy"], 4),
        "pretraining_gain_macro_f1_at_10pct_labels": round(gain, 4),
        "goals": {
            "c_within_1_point_of_a": a["heldout_accuracy"] - c["heldout_accuracy"] <= 0.01,
            "speedup_at_least_1.7": speedup is not None and speedup >= 1.7,
            "macro_f1_at_least_0.95": c["heldout_macro_f1"] >= 0.95,
            "pretraining_helps": gain > 0,
        },
    }
    for name, row in table.items():
        print(f"{name:<26} {json.dumps(row)}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
