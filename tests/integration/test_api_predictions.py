"""The prediction API reads the predictions topic of a real broker into GET /v1/devices."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.kafka import make_producer
from common.settings import ApiSettings, KafkaSettings, RegistrySettings
from tests.api.conftest import READ_TOKEN, reader
from tests.api.factories import prediction

pytestmark = pytest.mark.integration


def poll(check, *, timeout_s: float = 60.0, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every_s)


def test_predictions_on_the_topic_show_up_per_device(
    kafka_broker: KafkaSettings, fresh_topic: str, tmp_path: Path
) -> None:
    kafka = kafka_broker.model_copy(update={"predictions_topic": fresh_topic})
    settings = ApiSettings(
        kafka=kafka,
        registry=RegistrySettings(dir=tmp_path / "registry"),
        stream_status_file=tmp_path / "stream.json",
        gateway_url=None,
        read_token=READ_TOKEN,
        secrets_dir=tmp_path / "secrets",
        devices_file=tmp_path / "devices.json",
    )
    producer = make_producer(kafka)
    now_ms = int(time.time() * 1000)
    try:
        # Sent before the API starts: found again by looking back device_ttl_s in time.
        early = prediction("phone-a", "walking", window_end_ms=now_ms - 20_000)
        producer.send(fresh_topic, key=early.to_record()[0], value=early.to_record()[1]).get(30)
        with TestClient(create_app(settings), headers=reader()) as client:
            assert poll(lambda: client.get("/v1/devices").json()["total"] == 1)

            later = [
                prediction("phone-a", "sitting", window_end_ms=now_ms - 5_000),
                prediction("phone-b", "jogging", window_end_ms=now_ms),
                prediction("phone-a", "jogging", window_end_ms=now_ms - 15_000),  # late, older
            ]
            for item in later:
                key, value = item.to_record()
                producer.send(fresh_topic, key=key, value=value)
            producer.send(fresh_topic, key=b"phone-c", value=b"{not a prediction")
            producer.flush(30)

            # Records of different phones sit on different partitions: wait for all of them.
            def all_read() -> bool:
                flow = client.get("/v1/stats").json()["api"]
                return flow["predictions_total"] == 4 and flow["malformed_total"] == 1

            assert poll(all_read)
            listing = client.get("/v1/devices").json()
            phone_a = client.get("/v1/devices/phone-a/activity").json()
            stats = client.get("/v1/stats").json()["api"]
            ready = client.get("/readyz").json()
            metrics = client.get("/metrics").text
    finally:
        producer.close()

    assert {d["device_id"]: d["activity"] for d in listing["items"]} == {
        "phone-a": "sitting",
        "phone-b": "jogging",
    }
    assert listing["activities"] == {"sitting": 1, "jogging": 1}
    assert phone_a["window"]["end_ms"] == now_ms - 5_000
    assert stats["reader_running"] and stats["devices"] == 2
    assert ready["predictions"]["assigned_partitions"] == 4
    assert "mbd_api_predictions_malformed_total 1.0" in metrics
