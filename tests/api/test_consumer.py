"""The predictions reader keeps good records and counts and skips the rest (no broker here)."""

from __future__ import annotations

import json

import pytest

from api.consumer import PredictionConsumer
from api.store import LatestPredictions
from common.settings import KafkaSettings
from tests.api.factories import prediction


@pytest.fixture
def reader() -> PredictionConsumer:
    return PredictionConsumer(KafkaSettings(), LatestPredictions(max_devices=10, ttl_s=60))


def test_a_prediction_record_is_kept(reader: PredictionConsumer) -> None:
    _, value = prediction("phone-1", "sitting").to_record()

    assert reader.handle(value)

    entry = reader.store.get("phone-1")
    assert entry is not None and entry.prediction.activity == "sitting"
    assert reader.consumed == 1 and reader.malformed == 0


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"{not json",
        b"[1, 2]",
        json.dumps({"device_id": "phone-1"}).encode(),
        json.dumps({**prediction("p").model_dump(), "activity": "flying"}).encode(),
        json.dumps({**prediction("p").model_dump(), "window_end_ms": 1}).encode(),
        json.dumps({**prediction("p").model_dump(), "model_version": "latest"}).encode(),
    ],
)
def test_malformed_records_are_counted_and_skipped(
    reader: PredictionConsumer, value: bytes | None
) -> None:
    assert not reader.handle(value)
    assert reader.handle(prediction("phone-2").to_record()[1])  # and reading goes on

    assert reader.malformed == 1 and reader.consumed == 1
    assert len(reader.store) == 1
