"""The streaming job's drain on a Spark standalone cluster against the same drain on local[2].

One topic of K readings (bench/streaming.py's preload: simulated phones, 42 readings a batch)
is drained by the whole streaming job in available-now mode (parse → dedupe → clean →
per-device windows → lake), on ``local[2]`` and on a standalone cluster of a master and two
1-core workers (:func:`infra.spark_cluster.standalone_cluster`), the two alternating (local,
cluster, local, ...) for ``--repeats`` pairs. Each arm is a process of its own, so neither
inherits the other's JVM and compiled code, and each cluster arm its own fresh cluster. An arm
first drains a smaller topic, untimed (the session's, its executors' and the JIT's first-use
costs), then the timed topic into a fresh lake and checkpoint. Both arms run the same shuffle
partitions (``--shuffle-partitions``, default 2, one per core of either; a cluster master
alone would get 4). The workers are not pinned to CPUs, as local[2]'s threads are not.

Figures: each arm's timed drain in readings/s and ``cluster_ratio``, the cluster's median over
local[2]'s. The last line printed is one JSON object.

    python -m bench.streaming_cluster [--readings 1000000] [--warmup-readings 200000]
                                      [--devices 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.kafka_producer import running_broker
from bench.streaming import full_job, preload
from common.kafka import settings_environment
from common.settings import JvmSettings, KafkaSettings, SparkSettings
from common.spark import build_spark_session

LOCAL = "local[2]"


def run_arm(args: argparse.Namespace) -> None:
    """One arm, in this process: the warm-up drain, then the timed one; figures to ``--out``."""
    kafka = KafkaSettings()  # the parent's broker, from MBD_KAFKA_*
    settings = SparkSettings(master=args.master, shuffle_partitions=args.shuffle_partitions)
    began = time.perf_counter()
    spark = build_spark_session(settings, JvmSettings(), app_name="mbd-bench-streaming-cluster")
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - began
    try:
        warmup_s, _ = full_job(spark, kafka, args.warmup_topic, args.folder / "warmup")
        job_s, totals = full_job(spark, kafka, args.topic, args.folder / "timed")
    finally:
        spark.stop()
    figures = {
        "master": args.master,
        "session_seconds": round(session_s, 2),
        "warmup_seconds": round(warmup_s, 2),
        "job_seconds": round(job_s, 2),
        "job_readings_per_s": round(args.topic_readings / job_s, 1),
        "windows": totals.get("windows"),
        "micro_batches": len(totals.get("batches", [])),
    }
    args.out.write_text(json.dumps(figures))


def drain_in_child(
    master: str, kafka: KafkaSettings, folder: Path, topics: dict[str, tuple[str, int]],
    shuffle_partitions: int,
) -> dict[str, Any]:  # fmt: skip
    """One arm in its own process against ``master``; its figures."""
    out = folder / "figures.json"
    (timed, readings), (warmup, _) = topics["timed"], topics["warmup"]
    command = [sys.executable, "-m", "bench.streaming_cluster", "arm", "--master", master,
               "--topic", timed, "--topic-readings", str(readings), "--warmup-topic", warmup,
               "--folder", str(folder), "--out", str(out),
               "--shuffle-partitions", str(shuffle_partitions)]  # fmt: skip
    env = {**os.environ, **settings_environment(kafka)}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the drain on {master} failed:\n{done.stderr[-4000:]}")
    figures = json.loads(out.read_text())
    figures["process_seconds"] = round(time.perf_counter() - began, 1)
    return figures


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from infra.spark_cluster import standalone_cluster

    runs: dict[str, list[dict[str, Any]]] = {"local": [], "cluster": []}
    with running_broker(None) as kafka, tempfile.TemporaryDirectory(prefix="mbd-bench-") as tmp:
        topics = {}
        for name, wanted in (("timed", args.readings), ("warmup", args.warmup_readings)):
            topic = f"bench.readings.{uuid.uuid4().hex[:8]}"
            topics[name] = (topic, preload(kafka, topic, readings=wanted, devices=args.devices))
        for repeat in range(1, args.repeats + 1):
            folder = Path(tmp) / f"local-{repeat}"
            run = drain_in_child(LOCAL, kafka, folder, topics, args.shuffle_partitions)
            runs["local"].append(run)
            print(f"local[2] drain {repeat}: {json.dumps(run)}", flush=True)
            folder = Path(tmp) / f"cluster-{repeat}"
            with standalone_cluster(folder / "cluster", workers=2, cores=1) as cluster:
                run = drain_in_child(
                    cluster.master_url, kafka, folder, topics, args.shuffle_partitions
                )
            runs["cluster"].append(run)
            print(f"standalone cluster drain {repeat}: {json.dumps(run)}", flush=True)
    rates = {arm: [r["job_readings_per_s"] for r in each] for arm, each in runs.items()}
    pairs = [c / max(loc, 1e-9) for c, loc in zip(rates["cluster"], rates["local"], strict=True)]
    windows = {r["windows"] for each in runs.values() for r in each}
    return {
        "benchmark": "streaming_cluster",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "readings": topics["timed"][1],
        "warmup_readings": topics["warmup"][1],
        "devices": args.devices,
        "repeats": args.repeats,
        "shuffle_partitions": args.shuffle_partitions,
        "cluster": "standalone: a master and two 1-core workers, not pinned",
        "local_readings_per_s": rates["local"],
        "cluster_readings_per_s": rates["cluster"],
        "local_readings_per_s_median": statistics.median(rates["local"]),
        "cluster_readings_per_s_median": statistics.median(rates["cluster"]),
        "cluster_ratio": round(
            statistics.median(rates["cluster"]) / statistics.median(rates["local"]), 3
        ),
        "cluster_ratio_each_pair": [round(r, 3) for r in pairs],
        "same_windows_in_every_drain": len(windows) == 1,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    arm = sub.add_parser("arm", help="one drain, in this process (the bench starts these)")
    arm.add_argument("--master", required=True)
    arm.add_argument("--topic", required=True)
    arm.add_argument("--topic-readings", type=int, required=True, help="in --topic")
    arm.add_argument("--warmup-topic", required=True)
    arm.add_argument("--folder", type=Path, required=True)
    arm.add_argument("--out", type=Path, required=True)
    arm.add_argument("--shuffle-partitions", type=int, required=True)
    parser.add_argument("--readings", type=int, default=1_000_000, help="of the timed drain")
    parser.add_argument("--warmup-readings", type=int, default=200_000, help="drained untimed")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of drains")
    parser.add_argument("--shuffle-partitions", type=int, default=2, help="in both arms")
    args = parser.parse_args()
    if args.mode == "arm":
        run_arm(args)
        return
    print(json.dumps(compare(args)))


if __name__ == "__main__":
    main()
