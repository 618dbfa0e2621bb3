"""POST /v1/predict: raw samples → the shared window function → the serving model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.settings import WindowSettings, WireSettings
from common.windows import resample
from models.registry import Registry
from tests.api.conftest import api_settings, reader
from tests.api.factories import CLASSES, accel_samples
from tests.factories import batch_body


def test_ten_seconds_of_samples_get_an_activity_and_probabilities(client: TestClient) -> None:
    samples = accel_samples(end_ms=1_780_000_000_000)

    response = client.post("/v1/predict", json={"accel": samples, "device_id": "phone-7"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] == "phone-7"
    assert body["model_version"] == 1
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["activity"] == max(body["probabilities"], key=body["probabilities"].get)
    # The window ends one sampling period after the latest sample, which is its last grid point.
    assert body["window"] == {
        "start_ms": 1_780_000_000_000 - 9_950,
        "end_ms": 1_780_000_000_000 + 50,
        "coverage": 1.0,
        "samples_used": 200,
    }


def test_the_api_scores_exactly_what_the_shared_window_code_and_the_model_give(
    client: TestClient, registry: Registry
) -> None:
    samples = accel_samples(end_ms=1_780_000_000_000, seed=3)
    body = client.post("/v1/predict", json={"accel": samples}).json()

    t = np.array([s["t"] for s in samples])
    xyz = np.array([[s["x"], s["y"], s["z"]] for s in samples])
    window = resample(t, xyz, body["window"]["start_ms"], WindowSettings())
    expected = registry.load_model(1)(window.tensor.reshape(1, -1), training=False).numpy()[0]
    got = np.array([body["probabilities"][name] for name in CLASSES])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_phones_whole_batch_body_can_be_posted_as_is(client: TestClient) -> None:
    batch = batch_body("phone-1", 3, samples=200, start_ms=int(time.time() * 1000) - 11_000)

    response = client.post("/v1/predict", json=batch)

    assert response.status_code == 200, response.text
    assert response.json()["device_id"] == "phone-1"


def test_a_named_window_is_scored_instead_of_the_latest(client: TestClient) -> None:
    samples = accel_samples(end_ms=1_780_000_020_000, seconds=30)

    response = client.post(
        "/v1/predict", json={"accel": samples, "window_start_ms": 1_780_000_000_000}
    )

    assert response.status_code == 200, response.text
    assert response.json()["window"]["start_ms"] == 1_780_000_000_000
    assert response.json()["window"]["end_ms"] == 1_780_000_010_000


def test_samples_with_a_null_axis_are_left_out(client: TestClient) -> None:
    samples = accel_samples(end_ms=1_780_000_000_000)
    for sample in samples[::10]:
        sample["y"] = None

    response = client.post("/v1/predict", json={"accel": samples})

    assert response.status_code == 200, response.text
    assert response.json()["window"]["samples_used"] == 180
    assert response.json()["window"]["coverage"] == 0.9


def test_too_few_samples_for_a_window_get_a_422_naming_the_coverage(client: TestClient) -> None:
    samples = accel_samples(end_ms=1_780_000_000_000, seconds=2)

    response = client.post("/v1/predict", json={"accel": samples})

    assert response.status_code == 422
    body = response.json()
    assert "samples cover 20% of the 10 s window" in body["detail"]
    assert "need at least 80%" in body["detail"]
    assert body["problems"] == [{"field": "accel", "message": "too little coverage", "value": 0.2}]


def test_a_window_the_samples_miss_gets_a_422(client: TestClient) -> None:
    samples = accel_samples(end_ms=1_780_000_000_000)

    response = client.post(
        "/v1/predict", json={"accel": samples, "window_start_ms": 1_700_000_000_000}
    )

    assert response.status_code == 422
    assert "samples cover 0% " in response.json()["detail"]


def test_samples_whose_axes_are_all_null_get_a_422(client: TestClient) -> None:
    samples = [{"t": 1_780_000_000_000 + 50 * i, "x": None, "y": 9.8, "z": 0.1} for i in range(200)]

    response = client.post("/v1/predict", json={"accel": samples})

    assert response.status_code == 422
    assert "every accel sample has a null axis" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "accel", "Field required"),
        ({"accel": []}, "accel", "at least 1 item"),
        (
            {"accel": [{"t": 1_780_000_000, "x": 0, "y": 0, "z": 0}]},
            "accel.0.t",
            "not epoch milliseconds",
        ),
        (
            {"accel": [{"t": 1_780_000_000_000, "x": "fast", "y": 0, "z": 0}]},
            "accel.0.x",
            "valid number",
        ),
        (
            {"accel": [{"t": 1_780_000_000_000, "x": 999.0, "y": 0, "z": 0}]},
            "accel.0.x",
            "less than or equal to 160",
        ),
    ],
)
def test_malformed_samples_get_a_422_naming_the_field_and_value(
    client: TestClient, body: dict, field: str, words: str
) -> None:
    response = client.post("/v1/predict", json=body)

    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [p["field"] for p in problems] == [field]
    assert words in problems[0]["message"]
    assert field in response.json()["detail"]


def test_a_body_that_is_not_json_gets_a_422(client: TestClient) -> None:
    response = client.post(
        "/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"]


def test_more_samples_than_the_wire_limit_get_a_422(registry: Registry, tmp_path: Path) -> None:
    settings = api_settings(registry, tmp_path, wire=WireSettings(max_accel_samples=100))
    app = create_app(settings)
    with TestClient(app, headers=reader()) as client:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        response = client.post("/v1/predict", json={"accel": accel_samples()})

    assert response.status_code == 422
    assert response.json()["detail"] == "request has 200 accel samples, limit is 100"


def test_no_promoted_model_gets_a_503(tmp_path: Path) -> None:
    empty = Registry(tmp_path / "empty")
    with TestClient(create_app(api_settings(empty, tmp_path)), headers=reader()) as client:
        response = client.post("/v1/predict", json={"accel": accel_samples()})

    assert response.status_code == 503
    assert response.json()["detail"] == "no model is promoted yet"
    assert str(empty.root) not in response.text  # no path leaves the API
    assert response.headers["Retry-After"] == "5"


def test_a_promoted_model_that_never_loaded_gets_a_503_naming_why(
    registry: Registry, tmp_path: Path
) -> None:
    (registry.root / "v2" / "model.keras").write_bytes(b"not a zip")
    (registry.root / "CURRENT").write_text("v2\n")  # as if someone edited the pointer by hand
    app = create_app(api_settings(registry, tmp_path))
    with TestClient(app, headers=reader()) as client:
        deadline = time.monotonic() + 30
        while app.state.promoted.last_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        response = client.post("/v1/predict", json={"accel": accel_samples()})
        ready = client.get("/readyz")

    assert response.status_code == 503
    assert "v2 failed to load" in response.json()["detail"]
    assert "is not a readable .keras zip archive" in response.json()["detail"]
    assert ready.status_code == 503
    assert ready.json()["model"]["serving"] is None
