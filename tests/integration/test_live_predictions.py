"""Live inference: windows scored by the promoted model appear in mbd.predictions."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from common.kafka import client_security
from common.schema import Prediction
from common.settings import KafkaSettings, ModelSettings
from models.build import ModelSpec, build_classifier
from models.job import save_version
from models.registry import Registry
from models.spectrum import spectrum_width
from simulators.phone import FaultRates
from streaming import job
from tests.integration.test_stream_lake import produce_fleet, read_lake, stream_settings

pytestmark = pytest.mark.integration
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLASSES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")


def promote_small_model(registry: Registry, seed: int) -> int:
    """A real (untrained) classifier of the production shape, published and promoted: it
    reads the window's spectrum, the default input."""
    import keras

    keras.utils.set_random_seed(seed)
    spec = ModelSpec.from_settings(
        ModelSettings(encoder_units=(16,)), input_dim=600, classes=CLASSES,
        axis_mean=(0.0, 9.8, 0.0), axis_std=(3.0, 3.0, 3.0), magnitude=(9.8, 2.0),
        spectrum=((0.0,) * spectrum_width(200), (1.0,) * spectrum_width(200)),
    )  # fmt: skip
    model = build_classifier(spec)
    version = save_version(registry, model, config={"spec": spec.to_json()}, metrics={}).version
    registry.promote(version, reason="test")
    return version


def read_predictions(kafka: KafkaSettings, topic: str) -> list[Prediction]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap_list, auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=5000,
        **client_security(kafka),
    )  # fmt: skip
    try:
        return [Prediction.model_validate_json(record.value) for record in consumer]
    finally:
        consumer.close()


def test_windows_are_scored_by_the_promoted_version_and_follow_a_new_one(
    spark, kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    topic = f"readings.{uuid.uuid4().hex[:8]}"
    settings = stream_settings(kafka_broker, topic, tmp_path)
    registry = Registry(settings.registry.dir)
    first = promote_small_model(registry, seed=1)
    produce_fleet(kafka_broker, topic, devices=4, batches=12, faults=FaultRates())
    job.wait_until_drained(job.start(spark, settings, available_now=True))

    windows, _ = read_lake(settings.lake)
    predictions = read_predictions(kafka_broker, settings.kafka.predictions_topic)
    assert len(windows) > 0
    scored = {(p.device_id, p.window_start_ms, p.window_end_ms) for p in predictions}
    in_lake = set(zip(windows["device_id"], windows["window_start_ms"], windows["window_end_ms"],
                      strict=True))  # fmt: skip
    assert scored == in_lake
    for p in predictions:
        assert p.model_version == first and p.activity in CLASSES
        assert set(p.probabilities) == set(CLASSES)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.activity == max(p.probabilities, key=p.probabilities.get)

    second = promote_small_model(registry, seed=2)
    # Phones the first run has not seen: the same phones again would resend their first
    # batch_seqs over the same times, and a drain keeps no state to recognise them.
    more, _ = produce_fleet(
        kafka_broker, topic, devices=2, batches=12, faults=FaultRates(), first_device=4
    )
    job.wait_until_drained(job.start(spark, settings, available_now=True))
    everything = read_predictions(kafka_broker, settings.kafka.predictions_topic)
    later = [
        p for p in everything if (p.device_id, p.window_start_ms, p.window_end_ms) not in scored
    ]
    assert later and all(p.model_version == second for p in later)
    assert len(everything) == len(predictions) + len(later)
    assert {p.device_id for p in later} == {body["device_id"] for body in more}
