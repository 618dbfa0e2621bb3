"""Finding 3: a record on mbd.predictions that cannot be trusted is counted and skipped; it
never reaches the store, never makes an endpoint answer 5xx, and never pins a phone."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from api.consumer import PredictionConsumer
from api.store import LatestPredictions
from common.settings import KafkaSettings
from tests.api.factories import prediction

HOUR_MS = 3_600_000


def _record(**changes: object) -> bytes:
    good = json.loads(prediction("phone-1").model_dump_json())
    good.update(changes)
    return json.dumps(good).encode()


def _hostile_records() -> dict[str, bytes | None]:
    now = int(time.time() * 1000)
    return {
        "far future window": _record(
            window_start_ms=now + 10 * HOUR_MS, window_end_ms=now + 11 * HOUR_MS
        ),
        "year 275760": _record(
            window_start_ms=8_639_999_999_990_000, window_end_ms=8_640_000_000_000_000
        ),
        "int over 2^63": _record(window_end_ms=2**63 + 5),
        "huge model version": _record(model_version=2**70),
        "huge string": _record(activity="w" * 1_000_000),
        "many classes": _record(probabilities={f"c{i}": 0.0 for i in range(10_000)}),
        "not json": b'{"device_id": ',
        "not utf-8": b"\xff\xfe\x00garbage",
        "a list": b"[1, 2, 3]",
        "no value": None,
    }


@pytest.fixture
def reader_of_store(client: TestClient) -> PredictionConsumer:
    store: LatestPredictions = client.app.state.store  # type: ignore[attr-defined]
    return PredictionConsumer(KafkaSettings(), store)


def test_hostile_records_are_counted_and_skipped(
    client: TestClient, reader_of_store: PredictionConsumer
) -> None:
    records = _hostile_records()
    kept = [
        reader_of_store.handle(value, partition=0, offset=i)
        for i, value in enumerate(records.values())
    ]

    assert kept == [False] * len(records), dict(zip(records, kept, strict=True))
    assert reader_of_store.malformed == len(records)
    assert len(reader_of_store.store) == 0
    for path in ("/v1/devices", "/v1/stats", "/"):
        assert client.get(path).status_code == 200


def test_a_far_future_record_does_not_pin_a_phone(
    client: TestClient, reader_of_store: PredictionConsumer
) -> None:
    now = int(time.time() * 1000)
    reader_of_store.handle(
        _record(window_start_ms=now + 10 * HOUR_MS, window_end_ms=now + 11 * HOUR_MS)
    )
    assert reader_of_store.handle(prediction("phone-1", "jogging").model_dump_json().encode())

    listing = client.get("/v1/devices")
    activity = client.get("/v1/devices/phone-1/activity")

    assert listing.status_code == 200 and listing.json()["total"] == 1
    assert activity.json()["activity"] == "jogging"
