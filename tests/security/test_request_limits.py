"""Finding 1: the API limits bodies before parsing, needs a token to predict, and rate-limits
each token before its body is read."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from models.registry import Registry
from tests.api.conftest import api_settings, reader
from tests.api.factories import accel_samples
from tests.api.server import running_server

MIB = 1 << 20


def test_predict_needs_a_token(client: TestClient) -> None:
    body = {"accel": accel_samples()}

    anonymous = client.post("/v1/predict", json=body, headers={"Authorization": ""})
    unknown = client.post("/v1/predict", json=body, headers=reader("x" * 40))

    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    assert unknown.status_code == 401
    assert client.post("/v1/predict", json=body).status_code == 200  # the read token


def test_a_body_over_the_limit_is_413_before_it_is_read(registry: Registry, tmp_path: Path) -> None:
    app = create_app(api_settings(registry, tmp_path))
    with running_server(app) as url, httpx.Client(base_url=url, headers=reader()) as http:
        declared = http.post(
            "/v1/predict",
            content=b"{" + b" " * (49 * MIB) + b"}",
            headers={"Content-Type": "application/json"},
        )

        def chunks():  # no Content-Length: the API counts what arrives and stops at the limit
            for _ in range(8):
                yield b" " * MIB

        streamed = http.post(
            "/v1/predict", content=chunks(), headers={"Content-Type": "application/json"}
        )
        alive = http.get("/healthz")

    assert declared.status_code == 413 and declared.json()["code"] == "too_large"
    assert streamed.status_code == 413
    assert f"{MIB} bytes" in streamed.json()["detail"]
    assert alive.status_code == 200


def test_the_number_of_samples_is_bounded(registry: Registry, tmp_path: Path) -> None:
    from common.settings import WireSettings

    settings = api_settings(registry, tmp_path, wire=WireSettings(max_accel_samples=100))
    app = create_app(settings)
    with TestClient(app, headers=reader()) as client:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        response = client.post("/v1/predict", json={"accel": accel_samples(seconds=10)})

    assert response.status_code == 422
    assert response.json()["detail"] == "request has 200 accel samples, limit is 100"


def test_the_rate_limit_comes_before_the_body_is_parsed(registry: Registry, tmp_path: Path) -> None:
    settings = api_settings(registry, tmp_path, rate_per_token=0.01, burst_per_token=2)
    app = create_app(settings)
    with TestClient(app, headers=reader()) as client:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        answers = [
            client.post(
                "/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            for _ in range(3)
        ]
        other = client.get("/v1/devices", headers={"Authorization": "Bearer " + "y" * 40})

    assert [a.status_code for a in answers] == [422, 422, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[2].json()["code"] == "rate_limited"
    assert other.status_code == 401  # an unknown token is refused, not limited
