"""/healthz, /readyz and /metrics, and a promoted model that fails to load."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from models.registry import Registry
from tests.api.conftest import api_settings, reader
from tests.api.factories import accel_samples, publish_classifier


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_once_the_promoted_model_serves(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "model": {"serving": 1, "promoted": 1, "loading": None, "load_failed": False},
        "predictions": None,
        "devices_file": "ok",
    }


def test_not_ready_without_a_promoted_model(tmp_path: Path) -> None:
    with TestClient(
        create_app(api_settings(Registry(tmp_path / "empty"), tmp_path)), headers=reader()
    ) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["model"]["serving"] is None


def test_a_model_that_fails_to_load_leaves_the_previous_one_serving(
    client: TestClient, registry: Registry, caplog
) -> None:
    publish_classifier(registry, model_bytes=b"\x00" * 100)
    (registry.root / "CURRENT").write_text("v3\n")  # a pointer edited by hand, past the checks
    promoted = client.app.state.promoted  # type: ignore[attr-defined]
    # The watcher may read the pointer mid-write (empty: an error of its own) before it reads v3.
    deadline = time.monotonic() + 30
    while "v3 failed" not in (promoted.last_error or "") and time.monotonic() < deadline:
        time.sleep(0.02)

    ready = client.get("/readyz", headers={"Authorization": ""})  # open to anyone
    models = client.get("/v1/models").json()
    answer = client.post("/v1/predict", json={"accel": accel_samples()})
    metrics = client.get("/metrics").text

    assert ready.status_code == 200
    model = ready.json()["model"]
    assert model["serving"] == 1 and model["promoted"] == 3 and model["load_failed"]
    assert "model file" not in ready.text  # the error is for readers, not for anyone
    assert models["load_error"].startswith("v3 failed to load: model file v3/model.keras")
    assert str(registry.root) not in models["load_error"]
    assert "v3 failed to load" in caplog.text and "still serving v1" in caplog.text
    assert answer.status_code == 200 and answer.json()["model_version"] == 1
    assert "mbd_api_model_load_failing 1.0" in metrics

    registry.promote(2, reason="a good one")  # the next switch clears the error
    deadline = time.monotonic() + 30
    while client.get("/readyz").json()["model"]["serving"] != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get("/readyz").json()["model"]["load_failed"] is False
    assert client.get("/v1/models").json()["load_error"] is None


def test_metrics_count_predictions_and_show_the_serving_version(client: TestClient) -> None:
    client.post("/v1/predict", json={"accel": accel_samples()})
    client.post("/v1/predict", json={"accel": accel_samples(seconds=1)})
    client.post("/v1/predict", json={"accel": []})

    text = client.get("/metrics").text

    assert 'mbd_api_predict_answers_total{status="200"} 1.0' in text
    assert 'mbd_api_predict_answers_total{status="422"} 2.0' in text
    assert "mbd_api_predict_seconds_count 3.0" in text  # refusals are timed too
    assert "mbd_api_model_version 1.0" in text
    assert "mbd_api_devices 0.0" in text
