"""Streaming freshness: phones posting steadily in real time, how soon a window is served.

D simulated phones each send one 2-second batch to Kafka every 2 s, in real time, for a while;
the streaming job runs with its normal trigger and a promoted model (the production shape,
untrained: the cost of scoring is what counts here). For every window that ends in the steady
part of the run it measures seconds from the window's end to (1) the end of the lake write of
its micro-batch and (2) its prediction arriving at a consumer of mbd.predictions.

Used by ``bench/streaming.py``; the figures are p50/p95 of both.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from deltalake import DeltaTable
from kafka import KafkaConsumer
from pyspark.sql import DataFrame, SparkSession

from common.kafka import client_security, ensure_topics, make_producer
from common.lake import WINDOWS, table_uri
from common.schema import batch_record_headers
from common.settings import (
    KafkaSettings,
    LakeSettings,
    ModelSettings,
    RegistrySettings,
    StreamSettings,
)
from common.topics import TopicSpec
from models.build import ModelSpec, build_classifier
from models.job import save_version
from models.registry import Registry
from models.spectrum import spectrum_width
from simulators.phone import Phone
from streaming import job
from streaming.scoring import LiveScorer

CLASSES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")


def promote_untrained_model(registry: Registry) -> int:
    width = spectrum_width(200)
    spec = ModelSpec.from_settings(ModelSettings(), input_dim=600, classes=CLASSES,
                                   axis_mean=(0, 9.8, 0), axis_std=(3, 3, 3),
                                   magnitude=(9.8, 3.0),
                                   spectrum=((0.0,) * width, (1.0,) * width))  # fmt: skip
    model = build_classifier(spec)
    version = save_version(registry, model, config={"spec": spec.to_json()}, metrics={}).version
    registry.promote(version, reason="freshness benchmark")
    return version


class TimedScorer:
    """Records when each micro-batch's lake write ended, then scores its windows."""

    def __init__(self, scorer: LiveScorer) -> None:
        self.scorer = scorer
        self.written_at: dict[int, float] = {}

    def __call__(self, windows: DataFrame, batch_id: int, count: int) -> int:
        self.written_at.setdefault(batch_id, time.time())  # called right after the lake write
        return self.scorer(windows, batch_id, count)

    def in_lake(self, lake: LakeSettings) -> dict[tuple[str, int], float]:
        """(device, window end) → when its micro-batch's lake write ended."""
        table = DeltaTable(table_uri(lake, WINDOWS))
        rows = table.to_pandas(columns=["device_id", "window_end_ms", "batch_id"])
        return {
            (device, int(end)): self.written_at[int(batch)]
            for device, end, batch in rows.itertuples(index=False)
            if int(batch) in self.written_at
        }


def post_steadily(kafka: KafkaSettings, topic: str, *, phones: int, seconds: float,
                  stop: threading.Event) -> int:  # fmt: skip
    """Every phone sends its batch of the last 2 s at the end of those 2 s; returns batches."""
    producer = make_producer(kafka, linger_ms=5)
    start_ms = int(time.time() * 1000)
    fleet = [Phone(device_id=f"fresh-{i:04d}", rng=np.random.default_rng(i), labelled=False,
                   start_ms=start_ms) for i in range(phones)]  # fmt: skip
    sent, tick = 0, 0
    while not stop.is_set() and tick * 2 < seconds:
        due = start_ms / 1000 + (tick + 1) * 2.0
        stop.wait(max(0.0, due - time.time()))
        for phone in fleet:
            batch = phone.next_batch()
            value = json.dumps(batch.body).encode()
            producer.send(topic, key=phone.device_id.encode(), value=value,
                          headers=batch_record_headers(int(time.time() * 1000)))  # fmt: skip
            sent += 1
        tick += 1
    producer.flush(timeout=60)
    producer.close()
    return sent


def receive_predictions(kafka: KafkaSettings, topic: str, stop: threading.Event,
                        arrived: dict[tuple[str, int], float]) -> None:  # fmt: skip
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_list,
                             auto_offset_reset="earliest", consumer_timeout_ms=500,
                             **client_security(kafka))  # fmt: skip
    try:
        while not stop.is_set():
            for record in consumer:
                value = json.loads(record.value)
                arrived.setdefault((value["device_id"], value["window_end_ms"]), time.time())
    finally:
        consumer.close()


def percentiles(delays: list[float]) -> dict[str, float | int | None]:
    if not delays:
        return {"p50_s": None, "p95_s": None, "windows": 0}
    p50, p95 = np.percentile(delays, [50, 95])
    return {"p50_s": round(float(p50), 2), "p95_s": round(float(p95), 2), "windows": len(delays)}


def percentiles_ms(durations: list[int]) -> dict[str, float | None]:
    if not durations:
        return {"p50": None, "max": None}
    return {"p50": float(np.percentile(durations, 50)), "max": float(max(durations))}


def measure(spark: SparkSession, kafka: KafkaSettings, folder: Path, *, phones: int,
            seconds: float, trigger_s: float, lateness_s: float) -> dict[str, Any]:  # fmt: skip
    topic = f"bench.fresh.{int(time.time())}"
    ensure_topics(kafka, [TopicSpec(name=topic, partitions=4),
                          TopicSpec(name=f"{topic}.predictions", partitions=4)])  # fmt: skip
    settings = StreamSettings(
        lake=LakeSettings(uri=folder / "fresh-lake"), checkpoint_dir=folder / "fresh-checkpoint",
        status_file=folder / "fresh-status.json", trigger_s=trigger_s, lateness_s=lateness_s,
        starting_offsets="latest", registry=RegistrySettings(dir=folder / "registry"),
        kafka=kafka.model_copy(update={"readings_topic": topic,
                                       "predictions_topic": f"{topic}.predictions"}),
    )  # fmt: skip
    version = promote_untrained_model(Registry(settings.registry.dir))
    scorer = TimedScorer(LiveScorer(settings))
    query = job.start(spark, settings, scorer=scorer)
    arrived: dict[tuple[str, int], float] = {}
    stop = threading.Event()
    listener = threading.Thread(
        target=receive_predictions,
        daemon=True,
        args=(kafka, settings.kafka.predictions_topic, stop, arrived),
    )
    listener.start()
    time.sleep(5)  # the query's first (empty) batch
    began = time.time()
    sent = post_steadily(kafka, topic, phones=phones, seconds=seconds, stop=threading.Event())
    time.sleep(lateness_s + 4 * trigger_s + 10)  # let the last windows through
    durations = [p["batchDuration"] for p in query.recentProgress if p["numInputRows"]]
    job.stop(query)
    stop.set()
    listener.join(timeout=10)

    warm_up_ms = (began + 20) * 1000  # the first windows include Spark's warm-up
    in_lake = scorer.in_lake(settings.lake)
    steady = [(key, key[1] / 1000) for key in in_lake if key[1] >= warm_up_ms]
    to_lake = [in_lake[key] - end for key, end in steady]
    to_prediction = [arrived[key] - end for key, end in steady if key in arrived]
    return {
        "phones": phones,
        "seconds": seconds,
        "trigger_s": trigger_s,
        "lateness_s": lateness_s,
        "batches_sent": sent,
        "model_version": version,
        "window_end_to_lake": percentiles(to_lake),
        "window_end_to_prediction": percentiles(to_prediction),
        "steady_windows_without_prediction": len(steady) - len(to_prediction),
        "micro_batch_ms": percentiles_ms(durations),
    }
