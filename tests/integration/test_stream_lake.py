"""Kafka → the streaming job → the lake, on the real broker and Spark.

Every accelerometer sample of every batch that reached Kafka must end up in a window of the
lake or be counted in the quarantine; no window may appear twice, even across a kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.kafka import ensure_topics, make_producer
from common.lake import lake_root, local_path
from common.schema import batch_record_headers
from common.settings import KafkaSettings, LakeSettings, RegistrySettings, StreamSettings
from common.topics import TopicSpec
from simulators.phone import FaultRates, Phone
from streaming import job
from streaming.topic_lag import TopicEnd
from tests.lake import read_lake, reconcile

pytestmark = pytest.mark.integration
TOPIC_PARTITIONS = 4


def produce_fleet(kafka: KafkaSettings, topic: str, *, devices: int, batches: int,
                  faults: FaultRates, first_device: int = 0) -> tuple[list[dict], int]:  # fmt: skip
    """Batches as the gateway would have written them; returns them and how many were resent."""
    ensure_topics(kafka, [TopicSpec(name=topic, partitions=TOPIC_PARTITIONS)])
    producer = make_producer(kafka, linger_ms=20)
    start_ms = int(time.time() * 1000) - batches * 2000 - 10_000
    sent, resent = [], 0
    for d in range(first_device, first_device + devices):
        phone = Phone(device_id=f"dev-{d:03d}", rng=np.random.default_rng(d), labelled=d % 2 == 0,
                      start_ms=start_ms, faults=faults)  # fmt: skip
        for _ in range(batches):
            batch = phone.next_batch()
            for _ in range(2 if batch.resend else 1):
                producer.send(topic, key=batch.body["device_id"].encode(),
                              value=json.dumps(batch.body).encode(),
                              headers=batch_record_headers(int(time.time() * 1000)))  # fmt: skip
            sent.append(batch.body)
            resent += batch.resend
    producer.send(topic, key=b"?", value=b"{not json", headers=batch_record_headers(0))
    producer.flush(timeout=60)
    producer.close()
    return sent, resent


def stream_settings(
    kafka: KafkaSettings, topic: str, folder: Path, *, lake_uri: str | None = None
) -> StreamSettings:
    return StreamSettings(
        lake=LakeSettings(uri=lake_uri or folder / "lake"), checkpoint_dir=folder / "checkpoint",
        status_file=folder / "status.json", idle_flush_s=600, timer_s=5,
        registry=RegistrySettings(dir=folder / "registry"),
        kafka=kafka.model_copy(update={"readings_topic": topic,
                                       "predictions_topic": f"{topic}.predictions"}),
    )  # fmt: skip


def test_every_sample_reaches_a_window_or_the_quarantine(
    spark, kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    topic = f"readings.{uuid.uuid4().hex[:8]}"
    faults = FaultRates(dropped_sample=0.02, null_axis=0.01, spike=0.005, saturation=0.005,
                        shuffled_samples=0.1, resend=0.1, skewed_clock=0.3)  # fmt: skip
    sent, resent = produce_fleet(kafka_broker, topic, devices=8, batches=20, faults=faults)
    settings = stream_settings(kafka_broker, topic, tmp_path)
    query = job.start(spark, settings, available_now=True)
    job.wait_until_drained(query)

    windows, quarantine = read_lake(settings.lake)
    counts = reconcile(sent, windows, quarantine)
    assert counts["unaccounted"] == 0 and counts["in_a_window"] > 0.9 * counts["samples"]
    assert counts["quarantined_alone"] > 0
    assert not windows.duplicated(["device_id", "window_start_ms"]).any()
    assert len(windows.iloc[0]["tensor"]) == 200 * 3
    assert {"null axis", "unparseable JSON"} <= set(quarantine["reason"])
    labelled = windows[windows["device_id"].isin({f"dev-{d:03d}" for d in range(0, 8, 2)})]
    assert labelled["label"].notna().mean() > 0.5  # mixed windows aside, labels come through
    assert windows[~windows.index.isin(labelled.index)]["label"].isna().all()
    status = json.loads(settings.status_file.read_text())
    assert status["totals"]["windows"] == len(windows)
    assert resent > 0 and status["totals"]["duplicates"] == resent
    assert status["totals"]["predictions"] == 0  # no model promoted: the windows flow anyway
    assert status["records_behind_topic_end"] == 0  # drained: read up to the topic's end
    topic_end = TopicEnd(kafka_broker, topic)
    try:  # the end it compared with is the topic's: every record sent, the resends and the bad one
        assert sum(topic_end(range(TOPIC_PARTITIONS)).values()) == len(sent) + resent + 1
    finally:
        topic_end.close()


def lake_folder(settings: StreamSettings) -> Path:
    folder = local_path(lake_root(settings.lake))
    assert folder is not None
    return folder


def run_stream(settings: StreamSettings, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MBD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "MBD_KAFKA_READINGS_TOPIC": settings.kafka.readings_topic,
        "MBD_KAFKA_PREDICTIONS_TOPIC": settings.kafka.predictions_topic,
        "MBD_REGISTRY_DIR": str(settings.registry.dir),
        "MBD_STREAM_STATUS_FILE": str(settings.status_file),
        "MBD_STREAM_IDLE_FLUSH_S": str(settings.idle_flush_s),
        "MBD_STREAM_TIMER_S": str(settings.timer_s),
        "MBD_STREAM_MAX_OFFSETS_PER_TRIGGER": "40",
        "MBD_SPARK_MASTER": "local[2]",
    }
    command = [sys.executable, "-m", "infra.cli", "stream", "--lake", settings.lake.uri,
               "--checkpoint", str(settings.checkpoint_dir), "--trigger", "0.5", *args]  # fmt: skip
    log = open(lake_folder(settings).parent / "stream.log", "ab")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_kill_9_and_restart_give_the_same_lake(kafka_broker: KafkaSettings, tmp_path: Path) -> None:
    topic = f"readings.{uuid.uuid4().hex[:8]}"
    produce_fleet(kafka_broker, topic, devices=6, batches=30, faults=FaultRates())
    # The reference's lake is a file:// URI outside the working directory.
    reference = stream_settings(
        kafka_broker, topic, tmp_path / "reference", lake_uri=f"file://{tmp_path}/reference/lake"
    )
    crashed = stream_settings(kafka_broker, topic, tmp_path / "crashed")
    for settings in (reference, crashed):
        lake_folder(settings).mkdir(parents=True)

    first = run_stream(crashed)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (lake_folder(crashed) / "windows").exists():
        time.sleep(0.5)
    time.sleep(2)  # let it get some batches further, then pull the plug mid-run
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    wrote = (lake_folder(crashed) / "windows").exists()
    assert wrote, "the first run wrote nothing before the kill"

    assert run_stream(crashed, "--available-now").wait(timeout=300) == 0
    assert run_stream(reference, "--available-now").wait(timeout=300) == 0
    for settings in (reference, crashed):
        # A drained run stops its query during a batch, which must end quietly: before the
        # driver's larger stack (common.spark.DRIVER_JAVA_OPTIONS) each log had a
        # StackOverflowError, and before job.stop's filter, py4j's traceback of the batch.
        log_file = lake_folder(settings).parent / "stream.log"
        log = log_file.read_text(errors="replace")
        assert "StackOverflowError" not in log, log_file
        assert "ERROR py4j" not in log, log_file

    columns = ["device_id", "window_start_ms", "label", "coverage", "samples"]
    after_crash, _ = read_lake(crashed.lake)
    uninterrupted, _ = read_lake(reference.lake)
    assert not after_crash.duplicated(["device_id", "window_start_ms"]).any()
    key = ["device_id", "window_start_ms"]
    left = after_crash[columns].sort_values(key).reset_index(drop=True)
    right = uninterrupted[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)
    tensors = dict(zip(zip(after_crash.device_id, after_crash.window_start_ms, strict=True),
                       after_crash.tensor, strict=True))  # fmt: skip
    for row in uninterrupted.itertuples():
        assert np.array_equal(tensors[(row.device_id, row.window_start_ms)], row.tensor)


def test_an_erased_phone_stays_out_of_a_replay_of_the_raw_topic(
    spark, kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    from common.erasure import forget
    from ingest.devices import DeviceRegistry

    topic = f"readings.{uuid.uuid4().hex[:8]}"
    produce_fleet(kafka_broker, topic, devices=4, batches=12, faults=FaultRates())
    settings = stream_settings(kafka_broker, topic, tmp_path / "first")
    job.wait_until_drained(job.start(spark, settings, available_now=True))
    windows, _ = read_lake(settings.lake)
    phone = "dev-001"
    assert phone in set(windows["device_id"])

    forget(
        phone,
        lake=settings.lake,
        devices=DeviceRegistry(tmp_path / "devices.json"),
        registry_dir=tmp_path / "registry",
        requested_by="test",
    )
    # A new checkpoint reads the whole raw topic again, into the same lake.
    replay = stream_settings(kafka_broker, topic, tmp_path / "replay").model_copy(
        update={"lake": settings.lake}
    )
    job.wait_until_drained(job.start(spark, replay, available_now=True))

    after, quarantine = read_lake(settings.lake)
    assert phone not in set(after["device_id"]) | set(quarantine["device_id"])
    others = windows[windows["device_id"] != phone]
    assert len(after) == 2 * len(others)  # the replay, a new query, wrote the others again
    status = json.loads(replay.status_file.read_text())
    assert status["totals"]["erased_skipped"] > 0
