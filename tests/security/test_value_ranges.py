"""Finding 4: one accepted range for event times and integers, at the gateway and in predict."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import accel_samples
from tests.factories import batch_body
from tests.security.gateway import offline_gateway

DAY_MS = 86_400_000


def _with(change) -> dict:  # type: ignore[no-untyped-def]
    body = batch_body("phone-1", 0)
    change(body)
    return body


CASES = [
    ("batch_seq", lambda b: b.update(batch_seq=2**63)),
    ("batch_seq", lambda b: b.update(batch_seq=10**30)),
    ("accel.0.t", lambda b: b["accel"][0].update(t=2**63)),
    ("accel.0.t", lambda b: b["accel"][0].update(t=10**29)),
    ("gps.0.t", lambda b: b["gps"][0].update(t=-(2**63) - 1)),
    ("sent_at", lambda b: b.update(sent_at="9999-12-31T23:59:59Z")),
    ("sent_at", lambda b: b.update(sent_at="1970-01-01T00:00:01Z")),
]


@pytest.mark.parametrize(("field", "change"), CASES)
def test_the_gateway_refuses_values_out_of_range_naming_the_field(
    tmp_path: Path, field: str, change
) -> None:
    with offline_gateway(tmp_path) as (client, token):
        response = client.post(
            "/v1/readings", json=_with(change), headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 422, response.text
    assert any(p["field"] == field for p in response.json()["problems"]), response.json()


@pytest.mark.parametrize("t", [2**63, 10**29, int(time.time() * 1000) + DAY_MS, 999_999_999_999])
def test_predict_refuses_times_out_of_range_and_counts_them(client: TestClient, t: int) -> None:
    samples = accel_samples()
    samples[-1]["t"] = t

    response = client.post("/v1/predict", json={"accel": samples})
    metrics = client.get("/metrics").text

    assert response.status_code == 422, response.text
    assert 'mbd_api_predict_answers_total{status="422"} 1.0' in metrics
    assert 'status="200"' not in metrics and 'status="500"' not in metrics


def test_predict_refuses_a_window_start_out_of_range(client: TestClient) -> None:
    response = client.post("/v1/predict", json={"accel": accel_samples(), "window_start_ms": 2**64})
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "window_start_ms"
