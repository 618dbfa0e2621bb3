"""Parameter-averaged training on Spark: equality with local training, accuracy, the gate,
a standalone cluster, and a killed run that changes nothing."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.settings import LakeSettings, ModelSettings, RegistrySettings, TrainSettings
from infra.spark_cluster import standalone_cluster
from models.build import ModelSpec, build_classifier
from models.job import train_once
from models.partial import RoundTask
from models.registry import Registry
from models.runners import SparkRunner
from models.schedule import due
from models.trainer import _partial_round
from simulators.windows import simulate_windows, write_lake

pytestmark = pytest.mark.integration
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 12,000 windows of 50 simulated phones (every window labelled if it can be)."""
    root = tmp_path_factory.mktemp("lake")
    write_lake(simulate_windows(devices=50, seconds_per_device=1200, seed=2), root)
    return root


def settings_for(lake: Path, registry: Path, **changes: object) -> TrainSettings:
    base: dict[str, object] = dict(
        lake=LakeSettings(uri=lake), registry=RegistrySettings(dir=registry), pretrain_rounds=2,
        finetune_rounds=20, local_epochs=2, patience=4, partitions=2,
    )  # fmt: skip
    return TrainSettings(**{**base, **changes})


def test_a_spark_round_with_one_partition_equals_plain_local_training(spark) -> None:
    import keras

    rng = np.random.default_rng(0)
    n, dim = 120, 30
    x = rng.normal(9.0, 3.0, size=(n, dim)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    devices = [f"phone-{i % 7}" for i in range(n)]
    starts = [1_000 * i for i in range(n)]
    frame = spark.createDataFrame(
        [(d, s, t.tolist(), int(c)) for d, s, t, c in zip(devices, starts, x, y, strict=True)],
        "device_id string, window_start_ms long, tensor array<float>, y int",
    ).repartition(3)
    spec = ModelSpec.from_settings(
        ModelSettings(encoder_units=(8,), dropout=0.0, input_features="samples"), input_dim=dim,
        classes=("a", "b", "c"), axis_mean=(9, 9, 9), axis_std=(3, 3, 3), magnitude=(15.6, 3),
    )  # fmt: skip
    keras.utils.set_random_seed(1)
    start = build_classifier(spec).get_weights()
    task = RoundTask(spec=spec, phase="finetune", weights=start, epochs=2, batch_size=16,
                     learning_rate=0.01, shuffle=False)  # fmt: skip
    runner = SparkRunner(frame, partitions=1, input_dim=dim)
    try:
        [partial] = runner.map_partitions(functools.partial(_partial_round, task))
    finally:
        runner.close()

    order = sorted(range(n), key=lambda i: (devices[i], starts[i]))  # the runner's data order
    plain = build_classifier(spec)
    plain.set_weights(start)
    plain.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    plain.fit(x[order], y[order], epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert partial.count == n
    for mine, theirs in zip(partial.weights, plain.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_training_reaches_90_percent_on_held_out_phones_and_the_gate_refuses_worse(
    spark, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path / "registry")
    first = train_once(spark, settings)
    assert first.metrics["accuracy"] >= 0.90, first.metrics
    assert first.promoted and first.version == 1
    registry = Registry(tmp_path / "registry")
    assert registry.current_version() == 1
    version = registry.get(1)
    assert version.report_path.stat().st_size > 10_000
    data = version.metrics["data"]
    assert data["train_windows"] + data["validation_windows"] <= data["lake_windows"]
    assert [e["phase"] for e in version.metrics["history"]][:2] == ["pretrain-0", "pretrain-0"]
    # the workers start TensorFlow before the rounds, which the timings tell apart
    timings = version.metrics["timings"]
    assert list(timings)[:2] == ["load-tensorflow", "pretrain-0"] and timings["load-tensorflow"] > 0
    served = registry.load_model()
    assert served.output_shape == (None, 6)
    # the default input, the spectrum, with statistics the job sums over the Spark partitions
    assert served.get_layer("encoder_0").input.shape == (None, 303)
    default = version.config["spec"]
    assert len(default["spectrum_mean"]) == len(default["spectrum_std"]) == 3 + 3 * 100, default
    assert min(default["spectrum_std"]) > 1e-3  # (from_settings floors a std at 1e-6)
    # the spectrum's first features are the axes' means, summed over the same partitions
    np.testing.assert_allclose(default["spectrum_mean"][:3], default["axis_mean"], rtol=1e-4)
    assert 5 < np.linalg.norm(default["axis_mean"]) < 11

    # (with the magnitude channel, whose statistics the job takes from the training windows)
    channel = ModelSettings(magnitude_channel=True, input_features="samples")
    hopeless = settings_for(lake, tmp_path / "registry", pretrain_rounds=0, finetune_rounds=1,
                            local_epochs=1, learning_rate=1e-7, model=channel)  # fmt: skip
    second = train_once(spark, hopeless)
    assert not second.promoted, second.reason
    assert "< promoted v1's" in second.reason
    assert registry.current_version() == 1
    assert [v.version for v in registry.versions()] == [1, 2]
    spec = registry.get(2).config["spec"]
    assert 9.3 < spec["magnitude_mean"] < 10.8 and 0.5 < spec["magnitude_std"] < 5, spec
    assert registry.load_model(2).get_layer("encoder_0").input.shape == (None, 800)

    # (reading the standardised samples)
    samples = settings_for(lake, tmp_path / "registry", pretrain_rounds=0, finetune_rounds=1,
                           local_epochs=1, learning_rate=1e-7,
                           model=ModelSettings(input_features="samples"))  # fmt: skip
    assert not train_once(spark, samples).promoted
    spec = registry.get(3).config["spec"]
    assert spec["spectrum_mean"] is None and spec["magnitude_mean"] is None, spec
    np.testing.assert_allclose(spec["axis_mean"], default["axis_mean"], rtol=1e-5)  # same windows
    np.testing.assert_allclose(spec["axis_std"], default["axis_std"], rtol=1e-5)
    assert registry.load_model(3).get_layer("encoder_0").input.shape == (None, 600)


def test_a_schedule_skips_until_enough_new_windows_arrive(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_lake(simulate_windows(devices=4, seconds_per_device=300, seed=9), lake)
    settings = settings_for(lake, tmp_path / "registry", min_new_windows=100)
    assert due(spark, settings)[0]  # no version yet: always worth a try
    registry = Registry(tmp_path / "registry")
    staging = registry.staging()
    (staging / "model.keras").write_bytes(b"")
    (staging / "config.json").write_text("{}")
    count = spark.read.format("delta").load(str(lake / "windows")).count()
    (staging / "metrics.json").write_text(json.dumps({"data": {"lake_windows": count}}))
    registry.publish(staging)
    go, why = due(spark, settings)
    assert not go and "0 new windows" in why
    write_lake(simulate_windows(devices=4, seconds_per_device=300, seed=10,
                                device_prefix="more-"), lake)  # fmt: skip
    assert due(spark, settings)[0]


def _mbd_train(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "train", "--quiet", *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


def test_the_same_job_runs_on_a_standalone_cluster_of_two_workers(lake: Path, tmp_path: Path):
    registry_dir = tmp_path / "registry"
    with standalone_cluster(tmp_path / "cluster", workers=2, cores=1) as cluster:
        run = _mbd_train("--master", cluster.master_url, "--lake", str(lake), "--registry-dir",
                         str(registry_dir), "--pretrain-rounds", "1", "--finetune-rounds", "12",
                         "--local-epochs", "2", log=tmp_path / "train.log")  # fmt: skip
        assert run.wait(timeout=540) == 0, (tmp_path / "train.log").read_text()[-3000:]
    version = Registry(registry_dir).get(1)
    assert version.metrics["spark_master"] == cluster.master_url
    assert version.metrics["partitions"] == 2
    assert version.metrics["accuracy"] >= 0.85
    for worker in ("worker-0", "worker-1"):  # each worker ran an executor of the job
        assert list((tmp_path / "cluster" / worker).glob("app-*/*/stderr")), worker


def test_a_killed_training_run_leaves_the_promoted_model_as_it_was(
    spark, lake: Path, tmp_path: Path
) -> None:
    registry_dir = tmp_path / "registry"
    quick = settings_for(lake, registry_dir, pretrain_rounds=0, finetune_rounds=3)
    train_once(spark, quick)
    registry = Registry(registry_dir)
    before = (registry_dir / "CURRENT").read_bytes()

    log = tmp_path / "train.log"
    run = _mbd_train("--master", "local[2]", "--lake", str(lake), "--registry-dir",
                     str(registry_dir), log=log)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "pretrain-1 round 0" not in log.read_text():
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its second layer"
            time.sleep(0.5)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert (registry_dir / "CURRENT").read_bytes() == before
    assert [v.version for v in registry.versions()] == [1]
    assert registry.load_model() is not None


def test_a_model_names_its_lake_snapshot_and_retraining_as_of_it_gives_the_same_figures(
    spark, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    write_lake(simulate_windows(devices=24, seconds_per_device=400, seed=5), lake)
    write_lake(
        simulate_windows(devices=4, seconds_per_device=400, seed=6, device_prefix="later-"), lake
    )
    settings = settings_for(
        lake,
        tmp_path / "registry",
        pretrain_rounds=1,
        finetune_rounds=3,
        min_labelled_windows=100,
        seed=3,
    )
    first = train_once(spark, settings.model_copy(update={"as_of": 0}))
    assert first.metrics["data"]["lake_version"] == 0
    assert first.metrics["data"]["lake_devices"] == 24  # not the 4 phones of version 1
    newest = train_once(spark, settings)
    assert newest.metrics["data"]["lake_version"] == 1
    assert newest.metrics["data"]["lake_devices"] == 28
    again = train_once(spark, settings.model_copy(update={"as_of": 0}))
    held_out = ("accuracy", "macro_f1", "confusion_matrix", "per_class")
    assert {k: again.metrics[k] for k in held_out} == {k: first.metrics[k] for k in held_out}
    assert again.metrics["data"] == first.metrics["data"]
    learned = json.loads((tmp_path / "registry" / "v1" / "devices.json").read_text())
    assert len(learned) == 24 and not any(d.startswith("later-") for d in learned)
