"""The ingest gateway against the real broker: what is accepted lands in Kafka as sent."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from common.kafka import make_consumer
from common.schema import ReadingBatch
from common.settings import GatewaySettings, KafkaSettings
from infra.broker import free_port
from ingest.app import create_app
from ingest.devices import DeviceRegistry
from ingest.metrics import STOPPED_TOTALS
from simulators.client import wait_until_ready
from tests.factories import batch_body

pytestmark = pytest.mark.integration


class Gateway:
    def __init__(self, client: TestClient, tokens: dict[str, str], kafka: KafkaSettings):
        self.client, self.tokens, self.kafka = client, tokens, kafka

    def post(self, body: object, device: str = "phone-1", **kwargs):
        headers = {"Authorization": f"Bearer {self.tokens[device]}"} if device else {}
        headers.update(kwargs.pop("headers", {}))
        if isinstance(body, bytes | str):
            headers.setdefault("Content-Type", "application/json")
            return self.client.post("/v1/readings", content=body, headers=headers, **kwargs)
        return self.client.post("/v1/readings", json=body, headers=headers, **kwargs)

    def records(self, expected: int, deadline_s: float = 30) -> list:
        consumer = make_consumer(
            self.kafka, self.kafka.readings_topic, group_id=None, consumer_timeout_ms=2000
        )
        found = []
        try:
            for record in consumer:
                found.append(record)
                if len(found) >= expected:
                    break
        finally:
            consumer.close()
        return found


def gateway_settings(kafka: KafkaSettings, tmp_path: Path, **overrides) -> GatewaySettings:
    topic = f"readings.{uuid.uuid4().hex[:10]}"
    return GatewaySettings(
        devices_file=tmp_path / "devices.json",
        kafka=kafka.model_copy(update={"readings_topic": topic}),
        **overrides,
    )


@pytest.fixture
def gateway(kafka_broker: KafkaSettings, tmp_path: Path) -> Iterator[Gateway]:
    settings = gateway_settings(kafka_broker, tmp_path, burst_per_device=1000)
    tokens = DeviceRegistry(settings.devices_file).add(["phone-1", "phone-2"])
    with TestClient(create_app(settings)) as client:
        yield Gateway(client, tokens, settings.kafka)


def test_accepted_batches_land_in_kafka_exactly_as_sent(gateway: Gateway) -> None:
    sent = [batch_body("phone-1", seq) for seq in range(5)] + [batch_body("phone-2", 0)]
    sent[1]["accel"][3]["x"] = None  # dirty but acceptable
    del sent[2]["label"]
    for body in sent:
        response = gateway.post(body, device=body["device_id"])
        assert response.status_code == 202, response.text
        assert response.json()["batch_seq"] == body["batch_seq"]

    records = gateway.records(expected=len(sent))
    assert len(records) == len(sent)
    by_key = {
        (json.loads(r.value)["device_id"], json.loads(r.value)["batch_seq"]): r for r in records
    }
    for body in sent:
        record = by_key[(body["device_id"], body["batch_seq"])]
        assert record.key == body["device_id"].encode()
        stored = json.loads(record.value)
        assert stored["accel"] == body["accel"]
        assert stored["gps"] == body["gps"]
        assert stored.get("label") == body.get("label")
        assert ReadingBatch.model_validate_json(record.value) == ReadingBatch.model_validate_json(
            json.dumps(body)
        )
        headers = dict(record.headers)
        assert headers["schema_version"] == b"1" and int(headers["ingest_ms"]) > 0


def test_a_resent_batch_is_accepted_again(gateway: Gateway) -> None:
    body = batch_body("phone-1", 7)
    assert gateway.post(body).status_code == 202
    assert gateway.post(body).status_code == 202
    records = gateway.records(expected=2)
    assert [json.loads(r.value)["batch_seq"] for r in records] == [7, 7]


def test_authentication(gateway: Gateway) -> None:
    body = batch_body("phone-1", 0)
    missing = gateway.post(body, device="")
    assert missing.status_code == 401 and "Authorization" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    bad = gateway.post(body, device="", headers={"Authorization": "Bearer mbd_00_nope"})
    assert bad.status_code == 401 and "unknown device token" in bad.json()["detail"]
    other = gateway.post(body, device="phone-2")
    assert other.status_code == 403 and "phone-1" in other.json()["detail"]
    assert gateway.records(expected=1) == []


@pytest.mark.parametrize(
    ("mutate", "field", "needle"),
    [
        (lambda b: b["accel"][0].update(x=171.0), "accel.0.x", "less than or equal to 160"),
        (lambda b: b["gps"][0].update(lat=95.5), "gps.0.lat", "less than or equal to 90"),
        (lambda b: b.update(batch_seq="one"), "batch_seq", "integer"),
        (lambda b: b.update(label="dancing"), "label", "dancing"),
        (lambda b: b["accel"][1].update(t=b["accel"][1]["t"] + 86_400_000), "accel.1.t", "future"),
        (lambda b: b.update(accel=b["accel"] * 30), "accel", "limit is 1000"),
    ],
)
def test_invalid_batches_get_422_naming_the_field(gateway: Gateway, mutate, field, needle) -> None:
    body = batch_body("phone-1", 0)
    mutate(body)
    response = gateway.post(body)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert any(p["field"] == field and needle in p["message"] for p in problems), problems


def test_malformed_json_and_huge_bodies(gateway: Gateway) -> None:
    broken = gateway.post(b'{"device_id": "phone-1", "batch_seq": ')
    assert broken.status_code == 422 and "JSON" in broken.text
    huge = gateway.post(b"{" + b" " * (1 << 20) + b"}")
    assert huge.status_code == 413 and "1048576" in huge.json()["detail"]


def test_rate_limit_answers_429_with_retry_after(
    kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    settings = gateway_settings(kafka_broker, tmp_path, rate_per_device=0.5, burst_per_device=2)
    token = DeviceRegistry(settings.devices_file).add(["phone-1"])["phone-1"]
    with TestClient(create_app(settings)) as client:
        statuses = []
        for seq in range(3):
            response = client.post(
                "/v1/readings",
                json=batch_body("phone-1", seq),
                headers={"Authorization": f"Bearer {token}"},
            )
            statuses.append(response.status_code)
        assert statuses == [202, 202, 429]
        assert int(response.headers["Retry-After"]) >= 1
        assert "phone-1" in response.json()["detail"]


def test_broker_unreachable_gives_503_with_retry_after(tmp_path: Path) -> None:
    from infra.broker import free_port

    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    settings = gateway_settings(nowhere, tmp_path, ack_timeout_s=1.0)
    token = DeviceRegistry(settings.devices_file).add(["phone-1"])["phone-1"]
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/readings",
            json=batch_body("phone-1", 0),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert "not stored" in response.json()["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    assert gateway.client.get("/readyz").status_code == 200
    gateway.post(batch_body("phone-1", 0, samples=40))
    gateway.post(batch_body("phone-1", 1), device="phone-2")
    text = gateway.client.get("/metrics").text
    assert "mbd_gateway_accepted_batches_total 1.0" in text
    assert "mbd_gateway_accepted_readings_total 41.0" in text
    assert 'mbd_gateway_rejected_batches_total{reason="forbidden"} 1.0' in text
    assert "mbd_gateway_request_seconds_count 2.0" in text
    assert "mbd_gateway_producer_queue_depth 0.0" in text


def test_the_gateway_logs_its_totals_when_it_stops(
    kafka_broker: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(kafka_broker, tmp_path)
    tokens = DeviceRegistry(settings.devices_file).add(["phone-1", "phone-2"])
    with caplog.at_level(logging.INFO, logger="ingest.app"):
        with TestClient(create_app(settings)) as client:
            gateway = Gateway(client, tokens, settings.kafka)
            gateway.post(batch_body("phone-1", 0, samples=40))
            gateway.post(batch_body("phone-1", 1), device="phone-2")
        stopped = [r.getMessage() for r in caplog.records if "gateway stopped" in r.getMessage()]

    assert stopped == [
        'gateway stopped, totals {"accepted_batches": 1, "accepted_readings": 41, '
        '"rejected_batches": 1}'
    ]


def test_every_gateway_worker_logs_its_totals_and_they_add_up(
    kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    settings = gateway_settings(kafka_broker, tmp_path)
    tokens = DeviceRegistry(settings.devices_file).add(["phone-1"])
    port = free_port()
    env = {
        **os.environ,
        "MBD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "MBD_KAFKA_READINGS_TOPIC": settings.kafka.readings_topic,
        "MBD_GATEWAY_DEVICES_FILE": str(settings.devices_file),
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "gateway", "--port", str(port), "--workers", "2"],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_ready(f"http://127.0.0.1:{port}")
            headers = {"Authorization": f"Bearer {tokens['phone-1']}"}
            url = f"http://127.0.0.1:{port}/v1/readings"
            for seq in range(6):
                body = batch_body("phone-1", seq, samples=10)  # and one GPS fix: 11 readings
                answer = httpx.post(url, headers=headers, json=body, timeout=30)
                assert answer.status_code == 202, answer.text
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)

    stopped = [line for line in log.read_text().splitlines() if STOPPED_TOTALS in line]
    assert len(stopped) == 2, log.read_text()[-3000:]
    logged = [json.loads(line.split(STOPPED_TOTALS, 1)[1]) for line in stopped]
    assert sum(totals["accepted_batches"] for totals in logged) == 6
    assert sum(totals["accepted_readings"] for totals in logged) == 66
