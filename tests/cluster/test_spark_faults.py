"""Spark executors and a worker killed under mbd's jobs on a standalone cluster.

One master and two 1-core workers (pyspark's own ``spark-class``) serve the whole module; the
Kafka side is the shared three-broker cluster. The tests run in file order, the last one
taking a worker away for good:

3. an executor of the streaming job killed while a fleet posts: the lake afterwards equals that
   of an uninterrupted run over the same topic, and the stream catches up again;
4. an executor killed while a training round's tasks run: training finishes, every round
   averaged all partitions, and macro-F1 is within 0.01 of an undisturbed run with the seed;
5. a whole worker killed for good: the stream goes on and a training run finishes on the other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from common.spark import connector_jars
from infra.broker import free_port
from infra.spark_cluster import (
    SPARK_SUBMIT,
    Cluster,
    daemon_environment,
    executor_pids,
    standalone_cluster,
)
from models.registry import Registry
from simulators.client import wait_until_ready
from simulators.fleet import FleetConfig, provision_tokens
from simulators.phone import FaultRates
from simulators.windows import simulate_windows, write_lake
from streaming.sink import QUARANTINE_COLUMNS, WINDOW_COLUMNS
from tests.cluster.fleet import Fleet, fresh_topics, mbd, stream_status, wait_for, wait_until_stored
from tests.lake import read_lake

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# Light faults, but no late or offline batches: where those land depends on when they arrive
# (the per-device watermark moves per micro-batch, a silent phone is flushed by the clock), so a
# replay of the same topic would window them differently with no executor lost.
FAULTS = dataclasses.replace(FaultRates.preset("light"), late=0.0, offline=0.0)
CLI = Path(__file__).resolve().parents[2] / "infra" / "cli.py"
TRAINING = ("--pretrain-rounds", "1", "--finetune-rounds", "6", "--local-epochs", "2")


@dataclass
class Services:
    root: Path
    cluster: Cluster
    kafka: KafkaSettings
    env: dict[str, str]
    url: str
    tokens: dict[str, str]
    config: FleetConfig
    train_lake: Path
    acknowledged: set[tuple[str, int]] = field(default_factory=set)  # by the fleet, so far

    def stream_env(self, name: str, **extra: str) -> dict[str, str]:
        folder = self.root / name
        return {
            **self.env,
            "MBD_LAKE_URI": str(folder / "lake"),
            "MBD_STREAM_CHECKPOINT_DIR": str(folder / "checkpoint"),
            "MBD_STREAM_STATUS_FILE": str(folder / "stream.json"),
            **extra,
        }

    def train(self, name: str, *, ui_port: int | None = None) -> subprocess.Popen:
        """``mbd train --master`` on the cluster into registry ``name``, its driver UI at
        ``ui_port``."""
        env = dict(self.env)
        if ui_port is not None:
            env["MBD_SPARK_UI_ENABLED"] = "true"
            env["MBD_SPARK_EXTRA_CONF"] = json.dumps({"spark.ui.port": str(ui_port)})
        arguments = self.training(name)
        return mbd(
            "train",
            "--master",
            self.cluster.master_url,
            *arguments,
            env=env,
            log=self.root / f"{name}.log",
        )

    def submit(self, log: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
        """``mbd ARGS`` as a user submits it: ``spark-submit --master … infra/cli.py ARGS``."""
        jars = ",".join(str(jar) for jar in connector_jars(JvmSettings()))
        master = self.cluster.master_url
        command = [str(SPARK_SUBMIT), "--master", master, "--jars", jars, str(CLI), *args]
        with (self.root / f"{log}.log").open("ab") as out:
            return subprocess.Popen(
                command,
                env={**daemon_environment(), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def training(self, name: str) -> list[str]:
        lake, registry = str(self.train_lake), str(self.root / name)
        return ["--quiet", "--lake", lake, "--registry-dir", registry, *TRAINING]

    def finished(self, process: subprocess.Popen, log: str, timeout_s: float = 400) -> None:
        """Wait for ``process``; it must succeed (else the end of its log ``log`` is shown)."""
        code = process.wait(timeout=timeout_s)
        assert code == 0, f"exit {code}: " + (self.root / f"{log}.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def services(three_brokers: BrokerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("spark-faults")
    kafka, env = fresh_topics(three_brokers, "spark-faults", root / "devices.json")
    env.update({"MBD_STREAM_IDLE_FLUSH_S": "8", "TF_CPP_MIN_LOG_LEVEL": "2"})
    config = FleetConfig(devices=16, duration_s=40, labelled_fraction=0.5, seed=11, faults=FAULTS)
    tokens = provision_tokens(config.device_ids(), root / "tokens.json", root / "devices.json")
    train_lake = root / "train-lake"
    write_lake(simulate_windows(devices=30, seconds_per_device=900, seed=3), train_lake)
    port = free_port()
    gateway = mbd("gateway", "--port", str(port), env=env, log=root / "gateway.log")
    try:
        with standalone_cluster(root / "spark", workers=2, cores=1) as cluster:
            wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=60)
            yield Services(
                root=root,
                cluster=cluster,
                kafka=kafka,
                env=env,
                url=f"http://127.0.0.1:{port}",
                tokens=tokens,
                config=config,
                train_lake=train_lake,
            )
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)


def _executors(cluster: Cluster, app_name: str, count: int) -> dict[str, int]:
    """Executor id → pid of the running application ``app_name``, once it has ``count``."""

    def found() -> dict[str, int] | None:
        app = cluster.application(app_name)
        pids = executor_pids(app) if app else {}
        return pids if len(pids) >= count else None

    return wait_for(f"{count} executors of {app_name}", found, 120)


def _comparable(frame: pd.DataFrame, columns: list[str], key: list[str]) -> pd.DataFrame:
    """A lake table's ``columns`` (not those of its folders' names, such as the micro-batch that
    wrote it) in a fixed row order, array cells as bytes so that frames compare."""
    frame = frame[columns].copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
        elif any(isinstance(cell, np.ndarray) for cell in frame[column]):
            frame[column] = frame[column].map(
                lambda cell: None if cell is None else np.asarray(cell).tobytes()
            )
    return frame.sort_values(key).reset_index(drop=True)


def test_an_executor_killed_mid_stream_changes_no_window(services: Services) -> None:
    """The streaming job runs on the cluster while 16 phones post for 40 s; once it has
    completed 3 batches, one of its two executors is SIGKILLed. Spark must start another, the
    stream must go on and catch up (records behind the topic's end back under one per phone),
    and, after the drain, hold every acknowledged sample. The lake must then equal, window for
    window and value for value, the lake of an uninterrupted ``mbd stream --available-now`` on
    ``local[2]`` over the same topic."""
    cluster, status_file = services.cluster, services.root / "live" / "stream.json"
    live = services.stream_env("live")
    stream = mbd("stream", "--master", cluster.master_url, env=live, log=services.root / "live.log")
    fleet = Fleet(services.config, services.url, services.tokens)
    try:
        executors = _executors(cluster, "mbd-stream", 2)
        fleet.start()
        wait_for(
            "3 stream batches", lambda: stream_status(status_file).get("batch_id", -1) >= 3, 180
        )
        victim = min(executors)
        batch_before = stream_status(status_file)["batch_id"]
        os.kill(executors[victim], signal.SIGKILL)
        killed_at = time.time()
        app = cluster.application("mbd-stream")
        replaced = wait_for(
            "a new executor", lambda: set(executor_pids(app or "")) - set(executors), 120
        )

        def caught_up() -> float | None:
            status = stream_status(status_file)
            behind = status.get("records_behind_topic_end")
            fresh = (
                status.get("batch_id", -1) >= batch_before + 3 and status["updated_at"] > killed_at
            )
            return (
                status["updated_at"] - killed_at
                if fresh and behind is not None and behind < 16
                else None
            )

        recovered = wait_for("the stream caught up after the kill", caught_up, 120, poll_s=0.2)
        print(  # noqa: T201
            f"killed executor {victim} at batch {batch_before}; executor {sorted(replaced)} "
            f"started; caught up {recovered:.1f} s after the kill"
        )
        stats = fleet.join()
        assert stats.given_up == 0, stats.summary()
        services.acknowledged |= set(stats.accepted_keys)
        counts, _ = wait_until_stored(
            services.kafka, services.acknowledged, services.root / "live" / "lake"
        )
        assert stream.poll() is None
    finally:
        fleet.stop()
        stream.terminate()
        stream.wait(timeout=60)

    replay = mbd(
        "stream",
        "--available-now",
        "--master",
        "local[2]",
        env=services.stream_env("replay"),
        log=services.root / "replay.log",
    )
    services.finished(replay, "replay", timeout_s=300)
    faulted, uninterrupted = (
        read_lake(services.root / "live" / "lake"),
        read_lake(services.root / "replay" / "lake"),
    )
    windows = [
        _comparable(frame, WINDOW_COLUMNS, ["device_id", "window_start_ms"])
        for frame in (faulted[0], uninterrupted[0])
    ]
    compared = f"{len(windows[0])} windows, {len(faulted[1])} quarantined rows"
    print(f"compared {compared}; live run {json.dumps(counts)}")  # noqa: T201
    pd.testing.assert_frame_equal(windows[0], windows[1])
    key = ["device_id", "reason", "batch_seq", "t", "window_start_ms"]
    pd.testing.assert_frame_equal(
        _comparable(faulted[1], QUARANTINE_COLUMNS, key),
        _comparable(uninterrupted[1], QUARANTINE_COLUMNS, key),
    )


def _active_executor(ui_port: int) -> str | None:
    """The id of an executor running a task of the driver at ``ui_port`` right now, or None."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        with urllib.request.urlopen(base, timeout=2) as reply:
            app = json.load(reply)[0]["id"]
        with urllib.request.urlopen(f"{base}/{app}/executors", timeout=2) as reply:
            executors = json.load(reply)
    except (OSError, ValueError, IndexError):
        return None
    busy = [e["id"] for e in executors if e["id"] != "driver" and e["activeTasks"] > 0]
    return busy[0] if busy else None


def test_an_executor_killed_mid_round_changes_no_model(services: Services) -> None:
    """Trains twice on the cluster with the same seed and lake: undisturbed, then SIGKILLing
    the executor that is running a fine-tuning task (found on the driver's REST API) after the
    first fine-tuning round. The second run must lose that task and rerun it, finish, average
    every round over all the windows the undisturbed run did, and reach its macro-F1 within
    0.01, and promote it."""
    undisturbed = services.train("undisturbed")
    services.finished(undisturbed, "undisturbed")

    ui_port, log = free_port(), services.root / "disturbed.log"
    disturbed = services.train("disturbed", ui_port=ui_port)
    try:
        wait_for(
            "the first fine-tuning round",
            lambda: "finetune round 0" in log.read_text(),
            300,
            poll_s=0.1,
        )
        app = services.cluster.application("mbd-train")
        victim = wait_for(
            "an executor running a task", lambda: _active_executor(ui_port), 60, poll_s=0.05
        )
        os.kill(executor_pids(app or "")[victim], signal.SIGKILL)
        services.finished(disturbed, "disturbed")
    finally:
        if disturbed.poll() is None:
            disturbed.kill()
    assert "Lost task" in log.read_text(), "no task was lost with the executor"

    calm, hit = (
        Registry(services.root / name).get(1).metrics for name in ("undisturbed", "disturbed")
    )
    windows_per_phase = {}
    for entry in calm["history"]:
        windows_per_phase.setdefault(entry["phase"], {entry["windows"]})
    for entry in hit["history"]:
        assert {entry["windows"]} == windows_per_phase[entry["phase"]], entry
    figures = f"undisturbed {calm['macro_f1']:.4f}, executor {victim} killed {hit['macro_f1']:.4f}"
    print(f"macro-F1 {figures}")  # noqa: T201
    assert abs(calm["macro_f1"] - hit["macro_f1"]) <= 0.01
    promoted = Registry(services.root / "disturbed").current()
    assert promoted is not None and promoted.version == 1


def test_a_worker_gone_for_good_leaves_the_jobs_to_the_other(services: Services) -> None:
    """Submits the streaming job to the cluster with ``spark-submit`` (a new checkpoint and
    lake: it reads the topic from its start) while the fleet posts for another 30 s, and
    SIGKILLs worker 1 with its executors after the stream's third batch: the stream must go on
    with worker 0 alone and, after the drain, hold every sample acknowledged in this test and
    the first. A training run, submitted the same way, must then finish on worker 0 alone."""
    cluster, log = services.cluster, "one-worker"
    status_file = services.root / log / "stream.json"

    def batch() -> int:
        return stream_status(status_file).get("batch_id", -1)

    stream = services.submit(log, "stream", env=services.stream_env(log))
    config = dataclasses.replace(services.config, duration_s=30, seed=12)
    fleet = Fleet(config, services.url, services.tokens)
    try:
        _executors(cluster, "mbd-stream", 2)
        fleet.start()
        wait_for("3 stream batches", lambda: batch() >= 3, 180, poll_s=0.1)
        cluster.kill_worker(1)
        batch_at_kill = batch()
        wait_for("the master to see worker 1 gone", lambda: cluster.alive_workers() == 1, 120)
        wait_for("3 batches after the kill", lambda: batch() >= batch_at_kill + 3, 120)
        stats = fleet.join()
        assert stats.given_up == 0, stats.summary()
        acknowledged = services.acknowledged | set(stats.accepted_keys)
        counts, _ = wait_until_stored(services.kafka, acknowledged, services.root / log / "lake")
        assert stream.poll() is None
    finally:
        fleet.stop()
        stream.terminate()
        stream.wait(timeout=60)
    print(f"worker 1 killed after batch {batch_at_kill}; {json.dumps(counts)}")  # noqa: T201

    training = services.submit(
        "submitted", "train", *services.training("submitted"), env=services.env
    )
    services.finished(training, "submitted")
    metrics = Registry(services.root / "submitted").get(1).metrics
    assert metrics["spark_master"] == cluster.master_url and metrics["partitions"] == 2
    assert metrics["macro_f1"] >= 0.9
