"""Training: single-process Keras against parameter averaging on one and two Spark workers.

On the same lake of simulated windows (≥ 100,000, made by the simulator's phones and the shared
window code, cached under .cache/bench/):

(a) single-process Keras on one core (the job with ``runner=local``: one partial model, so a
    round is plain training for ``local_epochs``);
(b) parameter averaging with 2 partitions on a standalone cluster of one 1-core worker;
(c) the same on two 1-core workers.

"One core" is one CPU: (a)'s process, and each worker with everything it starts, are pinned
to a CPU of their own (``taskset``). A worker's ``--cores`` only caps its concurrent tasks;
unpinned, TensorFlow's threads of (b)'s single worker ran on the idle second CPU, which made (b)
faster than one core. The driver (averaging, validation) is not pinned, as it would be a
machine of its own.

For each: wall time from the start of training to the first round whose validation accuracy
reaches the common target, final held-out accuracy and macro-F1 (devices split, never windows).
(b) and (c) run ``--repeats`` times each (3), alternately (b, c, b, c, ...), each on a fresh
cluster; each one's row is its median run by time to the target, with every run's time beside
it, and the speedup is the ratio of the two medians. Until 2026-11-25 one run of each measured
it, and one slow round could decide it: in the suite's run that day one round of (c) trained
1.3 s slower than the same round of (b), and the speedup was 1.64×, against 1.72× to 1.94× in
the five runs of the same code before.
Every run starts its clock with TensorFlow loaded in its driver and its workers
(``driver_tensorflow_import_s`` and ``workers_tensorflow_load_s`` say how long that took).
``partial_slowdown_c_over_b`` tells the machine's part (:func:`partial_slowdown`): how much
slower (c)'s two workers trained their halves side by side than (b)'s one worker trained the
same halves. In the runs of 2026-11-24 and 25 it was 0.93 to 1.30, and the speedup followed it.

Then ``labels10``: does phase-1 pretraining help when only 10 % of the windows carry labels?
Labels arrive as they do in the product, per phone (only some users annotate): 10 % of the
phones training can see (training and validation phones) keep their labels, the rest none;
held-out phones keep all theirs, so the score covers every held-out phone. Each of ``--draws``
draws of annotating phones is trained twice on local[2], 2 partitions, with identical
fine-tuning and data, once after pretraining on all windows and once without. By default it
uses the same windows as (a)-(c); ``--labels10-devices`` picks a smaller fleet (the first
phones of the same simulation).

Pretraining helps (:func:`pretraining_verdict`) when a one-sided sign test over the draws whose
gain is not a tie (under ``TIE`` either way) gives p ≤ 0.05, and the mean gain is at least a
tenth of what the model without pretraining lacks of a perfect macro-F1
(``MIN_SHARE_OF_SHORTFALL``). A run makes 30 draws: at the rate at which draws gained before
that number was set (22 of 28 untied, 79 %), a sign test over 10 draws reaches p ≤ 0.05 in a
third of runs, over 30 in about 96 % (the binomial chance of 20 or more gains in 30).

Every earlier run, the rule's earlier forms and why each changed: bench/results/HISTORY.md.

Each run is its own process, one at a time. The last line printed is one JSON object.

    python -m bench.training [--devices 500] [--seconds 1050] [--target 0.97]
                             [--repeats 3] [--labels10-devices N] [--draws 30]
                             [--first-draw 1]
                             [--only abc|labels10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
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


def cached_lake(devices: int, seconds: float, seed: int) -> tuple[Path, int]:
    """(fully labelled lake, windows), generated once per parameter set."""
    from simulators.windows import simulate_windows, write_lake

    root = CACHE / f"lake-{devices}x{seconds:g}-seed{seed}"
    full, stamp = root / "full", root / "windows.count"
    if not stamp.exists():
        began = time.perf_counter()
        windows = simulate_windows(devices=devices, seconds_per_device=seconds, seed=seed)
        write_lake(windows, full)
        stamp.write_text(str(len(windows)))
        print(f"generated {len(windows)} windows in {time.perf_counter() - began:.0f} s")
    return full, int(stamp.read_text())


def annotated_lake(full: Path, draw: int) -> tuple[Path, dict[str, Any]]:
    """The lake of one draw of annotating phones (10 % of those training sees), and its counts."""
    import pandas as pd
    from deltalake import DeltaTable

    from common.settings import TrainSettings
    from models.data import device_split
    from simulators.windows import hide_labels, write_lake

    lake = full.parent / f"labels10-phones-draw{draw}"
    windows = DeltaTable(str(full / "windows")).to_pandas()
    settings = TrainSettings()  # the split every run uses: the default salt
    held_out = windows["device_id"].map(lambda d: device_split(d, settings) == "holdout")
    seen = hide_labels(windows[~held_out], keep_fraction=0.1, seed=draw, by="device")
    if not lake.exists():
        write_lake(pd.concat([seen, windows[held_out]], ignore_index=True), lake)
    labelled = seen["label"].notna()
    return lake, {
        "annotating_phones": int(seen.loc[labelled, "device_id"].nunique()),
        "phones_seen_by_training": int(seen["device_id"].nunique()),
        "labelled_windows": int(labelled.sum()),
        "labelled_share_of_windows": round(float(labelled.mean()), 4),
        "heldout_phones": int(windows.loc[held_out, "device_id"].nunique()),
    }


def run_one(args: argparse.Namespace) -> None:
    """Child process: one training run, its metrics to ``args.out``."""
    # TensorFlow is loaded before the clock starts, in every run's driver alike: (a)'s process
    # always had it loaded, and so does a scheduled retraining's long-lived driver. The Spark
    # workers still load it inside the first round, as they do in every retraining.
    began = time.perf_counter()
    if args.runner == "local":
        from models.runtime import limit_tensorflow_threads

        limit_tensorflow_threads()  # one thread, before anything starts TensorFlow
    else:
        import keras  # noqa: F401
    tensorflow_import_s = time.perf_counter() - began
    from common.settings import (
        JvmSettings,
        LakeSettings,
        RegistrySettings,
        SparkSettings,
        TrainSettings,
    )
    from common.spark import build_spark_session
    from models.job import train_once

    with tempfile.TemporaryDirectory(prefix="mbd-bench-registry-") as registry:
        settings = TrainSettings(
            lake=LakeSettings(uri=args.lake), runner=args.runner, partitions=args.partitions,
            registry=RegistrySettings(dir=Path(registry)),
            spark=SparkSettings(master=args.master, driver_memory="4g"),
            **{**TRAINING, **({"pretrain_rounds": 0} if args.no_pretrain else {})},
        )  # fmt: skip
        spark = build_spark_session(settings.spark, JvmSettings(), app_name="mbd-bench-training")
        spark.sparkContext.setLogLevel("ERROR")
        outcome = train_once(spark, settings)
        spark.stop()
    metrics = {**outcome.metrics, "driver_tensorflow_import_s": round(tensorflow_import_s, 2)}
    args.out.write_text(json.dumps(metrics, default=str))


def child(name: str, out: Path, *options: str, cpus: set[int] | None = None) -> dict[str, Any]:
    """One run in its own process (on ``cpus`` only, when given); its metrics."""
    from infra.spark_cluster import pinned_command

    command = [*pinned_command(cpus), sys.executable, "-m", "bench.training", "one",
               "--out", str(out), *options]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"run {name} failed:\n{done.stderr[-4000:]}")
    metrics = json.loads(out.read_text())
    metrics["process_seconds"] = round(time.perf_counter() - began, 1)
    return metrics


def rounds_to_target(metrics: dict[str, Any], target: float) -> list[dict[str, Any]] | None:
    """The rounds up to the first whose validation accuracy reaches ``target`` (None: never)."""
    for i, entry in enumerate(metrics["history"]):
        if entry["phase"] == "finetune" and (entry["val_accuracy"] or 0) >= target:
            return metrics["history"][: i + 1]
    return None


def figures(metrics: dict[str, Any], target: float) -> dict[str, Any]:
    finetune = [e for e in metrics["history"] if e["phase"] == "finetune"]
    rounds = rounds_to_target(metrics, target)
    return {
        "seconds_to_target": None if rounds is None else float(rounds[-1]["elapsed_s"]),
        # each round's slowest partial model from its task's start (round 0's includes the worker
        # loading TensorFlow and building the models), summed: the round trips left out
        "partial_seconds_to_target": (
            None if rounds is None else round(sum(e["partial_s"] for e in rounds), 1)
        ),
        "training_seconds": round(
            sum(s for k, s in metrics["timings"].items() if k.startswith(("pretrain", "finetune"))),
            1,
        ),
        "workers_tensorflow_load_s": metrics["timings"].get("load-tensorflow"),
        "rounds": len(metrics["history"]),
        "best_val_accuracy": round(max(e["val_accuracy"] for e in finetune), 4),
        "heldout_accuracy": round(metrics["accuracy"], 4),
        "heldout_macro_f1": round(metrics["macro_f1"], 4),
        "driver_tensorflow_import_s": metrics.get("driver_tensorflow_import_s"),
    }


def partial_slowdown(b: dict[str, Any], c: dict[str, Any], target: float) -> float | None:
    """(c)'s slowest-partial seconds over (b)'s, summed over the rounds both ran to the target.

    (b)'s and (c)'s partial models train the same halves of the windows, (b)'s one after the other
    on one CPU, (c)'s side by side on two. Above 1, two busy CPUs did less than twice the work of
    one (this VM's CPUs share a host): time the job's own code did not cause.
    """
    b_rounds, c_rounds = rounds_to_target(b, target), rounds_to_target(c, target)
    if b_rounds is None or c_rounds is None:
        return None
    b_partial = {(e["phase"], e["round"]): e["partial_s"] for e in b_rounds}
    both = [(e["partial_s"], b_partial[e["phase"], e["round"]]) for e in c_rounds
            if (e["phase"], e["round"]) in b_partial]  # fmt: skip
    b_seconds = sum(b_s for _, b_s in both)
    return round(sum(c_s for c_s, _ in both) / b_seconds, 2) if b_seconds else None


def median_run(rows: list[dict[str, Any]]) -> int:
    """The index of the median run by time to the target (odd count; a run that never reached
    it is the slowest)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["seconds_to_target"] or math.inf)
    return order[len(order) // 2]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def run_abc(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """(a) once, (b) and (c) ``args.repeats`` times each on the full lake: time to the target,
    accuracy, speedup."""
    from infra.spark_cluster import standalone_cluster

    full, windows = cached_lake(args.devices, args.seconds, args.seed)
    lake = ["--lake", str(full)]
    one_cpu = {min(os.sched_getaffinity(0))}
    a = child("a", work / "a.json", *lake, "--runner", "local", cpus=one_cpu)
    repeated: dict[str, list[dict[str, Any]]] = {"b_one_worker": [], "c_two_workers": []}
    for repeat in range(1, args.repeats + 1):
        for name, workers in (("b_one_worker", 1), ("c_two_workers", 2)):
            # each worker on a CPU of its own, so "one core" is one core (the driver is not pinned)
            folder = work / f"{name}-{repeat}"
            with standalone_cluster(folder, workers=workers, cores=1, pin_cpus=True) as cluster:
                metrics = child(name, folder.with_suffix(".json"), *lake, "--master",
                                cluster.master_url)  # fmt: skip
            repeated[name].append(metrics)
            print(f"{name} run {repeat}: {json.dumps(figures(metrics, args.target))}", flush=True)
    runs = {"a_single_process": a} | {f"{name}_{i}": metrics for name, each in repeated.items()
                                      for i, metrics in enumerate(each, 1)}  # fmt: skip
    (CACHE / "training-runs.json").write_text(json.dumps(runs, default=str))  # every round
    table = {"a_single_process": figures(a, args.target)}
    for name, each in repeated.items():
        rows = [figures(metrics, args.target) for metrics in each]
        each_time = [row["seconds_to_target"] for row in rows]
        table[name] = {**rows[median_run(rows)], "seconds_to_target_each_run": each_time}
    for name, row in table.items():
        print(f"{name:<26} {json.dumps(row)}")
    a_row, b_row, c_row = table["a_single_process"], table["b_one_worker"], table["c_two_workers"]
    speedup = ratio(b_row["seconds_to_target"], c_row["seconds_to_target"])
    pairs = zip(repeated["b_one_worker"], repeated["c_two_workers"], strict=True)
    slowdowns = [partial_slowdown(b, c, args.target) for b, c in pairs]
    b_times, c_times = b_row["seconds_to_target_each_run"], c_row["seconds_to_target_each_run"]
    return {
        "windows": windows,
        "devices": args.devices,
        "train_windows": repeated["c_two_workers"][0]["data"]["train_windows"],
        "heldout_windows": repeated["c_two_workers"][0]["data"]["holdout_windows"],
        "target_val_accuracy": args.target,
        "repeats_of_b_and_c": args.repeats,
        "runs": table,
        "speedup_c_over_b": speedup,  # of the median runs
        "speedup_each_repeat": [ratio(b, c) for b, c in zip(b_times, c_times, strict=True)],
        "partial_slowdown_c_over_b": (
            statistics.median(slowdowns) if None not in slowdowns else None
        ),
        "partial_slowdown_each_repeat": slowdowns,
        "accuracy_gap_a_minus_c": round(a_row["heldout_accuracy"] - c_row["heldout_accuracy"], 4),
        "goals": {
            "c_within_1_point_of_a": a_row["heldout_accuracy"] - c_row["heldout_accuracy"] <= 0.01,
            "speedup_at_least_1.7": speedup is not None and speedup >= 1.7,
            "macro_f1_at_least_0.95": c_row["heldout_macro_f1"] >= 0.95,
        },
    }


SIGN_TEST_P = 0.05  # the chance of the outcome were pretraining no help at all
# The size the mean gain must reach: this share of what the model without pretraining lacks of
# a perfect macro-F1 (1 - its mean macro-F1). Until 2026-11-25 it was a fixed 0.01, which, with
# the spectrum input's 0.985 without pretraining, asked pretraining to remove two thirds of the
# errors left.
MIN_SHARE_OF_SHORTFALL = 0.1
TIE = 0.001  # a gain or loss smaller than this is a tie, neither for pretraining nor against


def sign_test_p(helped: int, draws: int) -> float:
    """One-sided sign test: the chance of ``helped`` or more gains in ``draws`` under no effect."""
    return sum(math.comb(draws, k) for k in range(helped, draws + 1)) / 2**draws


def draws_needed_to_help(draws: int) -> int | None:
    """The fewest draws with a gain that the sign test counts as help (None: no number can)."""
    return next((k for k in range(draws + 1) if sign_test_p(k, draws) <= SIGN_TEST_P), None)


def per_class_draws_gained_lost(draws: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Where the macro gain comes from: per class, in how many draws pretraining raised its F1
    and in how many it lowered it (by at least ``TIE``)."""
    return {
        name: [
            sum(row["f1_gain_per_class"][name] >= TIE for row in draws),
            sum(row["f1_gain_per_class"][name] <= -TIE for row in draws),
        ]
        for name in draws[0]["f1_gain_per_class"]
    }


def run_labels10(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Pretrained against not, paired per draw of annotating phones; the gain and its spread."""
    devices = args.labels10_devices or args.devices
    full, windows = cached_lake(devices, args.seconds, args.seed)
    draws: list[dict[str, Any]] = []
    runs: dict[str, dict[str, Any]] = {}
    for draw in range(args.first_draw, args.first_draw + args.draws):
        lake, counts = annotated_lake(full, draw)
        options = ["--lake", str(lake), "--master", "local[2]"]
        pre = child(f"p{draw}", work / f"p{draw}.json", *options)
        bare = child(f"n{draw}", work / f"n{draw}.json", *options, "--no-pretrain")
        runs[f"labels10_draw{draw}_pretrained"] = pre
        runs[f"labels10_draw{draw}_no_pretraining"] = bare
        row = {
            "draw": draw,
            **counts,
            "train_labelled_windows": pre["data"]["train_labelled_windows"],
            "macro_f1_pretrained": round(pre["macro_f1"], 4),
            "macro_f1_no_pretraining": round(bare["macro_f1"], 4),
            "gain": round(pre["macro_f1"] - bare["macro_f1"], 4),
            "accuracy_pretrained": round(pre["accuracy"], 4),
            "accuracy_no_pretraining": round(bare["accuracy"], 4),
            "f1_gain_per_class": {
                name: round(pre["per_class"][name]["f1"] - bare["per_class"][name]["f1"], 4)
                for name in pre["per_class"]
            },
            "process_seconds": [pre["process_seconds"], bare["process_seconds"]],
        }
        draws.append(row)
        print(f"labels10 draw {draw}: {json.dumps(row)}", flush=True)
    (CACHE / "training-runs-labels10.json").write_text(json.dumps(runs, default=str))
    verdict = pretraining_verdict(draws)
    return {
        "labels10": {
            "windows": windows,
            "devices": devices,
            "labels": "10 % of the phones training sees annotate; held-out phones keep theirs",
            "draws": draws,
            **verdict,
            "per_class_draws_gained_lost": per_class_draws_gained_lost(draws),
        },
        "pretraining_gain_macro_f1_at_10pct_labels": verdict["gain_mean"],
        "goals": {"pretraining_helps": verdict["helps"]},
    }


def pretraining_verdict(draws: list[dict[str, Any]]) -> dict[str, Any]:
    """Does pretraining help, over paired draws with and without it? The sign test over the
    draws that are not ties, and the mean gain against the share of the shortfall it must
    remove."""
    gains = [row["gain"] for row in draws]
    mean = sum(gains) / len(gains)
    pretrained = sum(r["macro_f1_pretrained"] for r in draws) / len(draws)
    bare = sum(r["macro_f1_no_pretraining"] for r in draws) / len(draws)
    shortfall = 1 - bare
    untied = [g for g in gains if abs(g) >= TIE]  # a sign test leaves ties out
    needed = draws_needed_to_help(len(untied))
    helped = sum(g > 0 for g in untied)
    enough = MIN_SHARE_OF_SHORTFALL * shortfall
    return {
        "criterion": f"gain >= {TIE} in at least {needed} of the {len(untied)} draws whose "
        f"gain is not within ±{TIE} (one-sided sign test, p <= {SIGN_TEST_P}) and mean gain "
        f">= {MIN_SHARE_OF_SHORTFALL:g} of the shortfall without pretraining (1 - its mean "
        f"macro-F1): {enough:.4f}",
        "mean_macro_f1_pretrained": round(pretrained, 4),
        "mean_macro_f1_no_pretraining": round(bare, 4),
        "gain_mean": round(mean, 4),
        "gain_sd": round(statistics.stdev(gains), 4) if len(gains) > 1 else None,
        "gain_min": round(min(gains), 4),
        "share_of_shortfall_removed": round(mean / shortfall, 3) if shortfall > 0 else None,
        "draws_with_gain": helped,
        "draws_tied": len(gains) - len(untied),
        "sign_test_p": float(f"{sign_test_p(helped, len(untied)):.2g}") if untied else None,
        "helps": needed is not None and helped >= needed and mean >= enough,
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of (b) and of (c), odd")
    parser.add_argument("--labels10-devices", type=int, help="phones, labels10 (--devices)")
    parser.add_argument("--draws", type=int, default=30, help="of annotating phones, labels10")
    parser.add_argument("--first-draw", type=int, default=1, help="its seed, labels10")
    parser.add_argument("--only", choices=["abc", "labels10"], help="run one part")
    args = parser.parse_args()
    if args.mode == "one":
        run_one(args)
        return
    if args.repeats < 1 or args.repeats % 2 == 0:
        parser.error(f"--repeats {args.repeats}: an odd number, so that a median run exists")
    if draws_needed_to_help(args.draws) is None:
        parser.error(f"--draws {args.draws}: the sign test needs at least 5 draws to tell help")

    CACHE.mkdir(parents=True, exist_ok=True)
    from common.settings import ModelSettings

    summary: dict[str, Any] = {
        "benchmark": "training",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        # what every run trains (its children read the same MBD_MODEL_* environment)
        "model": ModelSettings().model_dump(mode="json"),
    }
    goals: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="mbd-bench-training-") as tmp:
        for part, run in (("abc", run_abc), ("labels10", run_labels10)):
            if args.only in (None, part):
                figures_ = run(args, Path(tmp))
                goals.update(figures_.pop("goals"))
                summary.update(figures_)
    summary["goals"] = goals
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
