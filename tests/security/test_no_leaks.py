"""Finding 6: error bodies carry a code and a message, never a path, a traceback or a secret;
no file a service writes holds a secret outside the 0600 secret files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from common.settings import SparkSettings, TrainSettings
from ingest.devices import DeviceRegistry
from models.registry import Registry
from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, api_settings, reader
from tests.api.factories import publish_classifier
from tests.factories import batch_body
from tests.security.gateway import offline_gateway

SPARK_SECRET = "spark-secret-Qw3rty-9d8f7g6h5j4k"


def _requests(client: TestClient, device_token: str) -> list:  # type: ignore[type-arg]
    wrong = {"Authorization": "Bearer " + "q" * 43}
    bad_batch = b'{"accel": [{"t": 1180591620717411303424, "x": "a", "y": null, "z": 1e400}]}'
    return [
        client.get("/v1/models/99"),
        client.get("/v1/models/3/report.png"),
        client.get("/v1/models/latest"),
        client.get("/v1/devices/nobody/activity"),
        client.get("/v1/devices", headers=wrong),
        client.get("/v1/devices", headers=reader(device_token)),
        client.post("/v1/models/3/promote", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        client.post("/v1/models/rollback", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        client.post("/v1/predict", content=bad_batch, headers={"Content-Type": "application/json"}),
        client.post("/v1/predict", content=b"\xff" * 100, headers={"Content-Type": "text/plain"}),
        client.post(
            "/v1/predict", content=b"[" * 50_000, headers={"Content-Type": "application/json"}
        ),
        client.get("/readyz", headers={"Authorization": ""}),
        client.get("/?token=" + "p" * 43),
    ]


def test_api_errors_name_no_path_and_no_secret(registry: Registry, tmp_path: Path) -> None:
    publish_classifier(registry, model_bytes=b"\x00" * 64, report=False)  # v3 does not load
    settings = api_settings(registry, tmp_path)
    device_token = DeviceRegistry(settings.devices_file).add(["phone-1"])["phone-1"]
    app = create_app(settings)
    with TestClient(app, headers=reader()) as client:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        responses = _requests(client, device_token)

    assert all(r.status_code < 500 for r in responses), [r.status_code for r in responses]
    for response in responses:
        text = response.text
        for secret in (READ_TOKEN, ADMIN_TOKEN, device_token, str(tmp_path), "Traceback"):
            assert secret not in text, (response.request.url, text)
        if response.status_code >= 400 and response.headers["content-type"] == "application/json":
            assert set(response.json()) == {"code", "detail", "problems"}, text


def test_gateway_errors_name_no_path_and_no_secret(tmp_path: Path) -> None:
    with offline_gateway(tmp_path) as (client, token):
        auth = {"Authorization": f"Bearer {token}"}
        responses = [
            client.post("/v1/readings", json=batch_body("phone-1", 0), headers=auth),  # 503
            client.post("/v1/readings", json=batch_body("phone-2", 0), headers=auth),  # 403
            client.post(
                "/v1/readings",
                content=b"{" * 1000,
                headers={**auth, "Content-Type": "application/json"},
            ),
            client.post("/v1/readings", json={}, headers={"Authorization": "Bearer mbd_x_y"}),
            client.get("/readyz"),
        ]

    for response in responses:
        for secret in (token, str(tmp_path), "Traceback", "127.0.0.1"):
            assert secret not in response.text, response.text
    assert [r.status_code for r in responses[:4]] == [503, 403, 422, 401]
    assert all(r.json()["code"] for r in responses[:4])


def test_a_model_versions_config_names_spark_settings_but_not_their_values() -> None:
    settings = TrainSettings(
        spark=SparkSettings(extra_conf={"spark.authenticate.secret": SPARK_SECRET})
    )
    written = json.loads(settings.model_dump_json())  # what models/job.py puts in config.json

    assert SPARK_SECRET not in json.dumps(written)
    assert "spark.authenticate.secret" in written["spark"]["extra_conf"]


def test_no_file_of_the_api_holds_a_secret_outside_its_0600_file(
    registry: Registry, tmp_path: Path
) -> None:
    settings = api_settings(registry, tmp_path, read_token=None, admin_token=None)
    with TestClient(create_app(settings)) as client:
        secrets = {
            path: path.read_text().strip() for path in sorted(settings.secrets_dir.iterdir())
        }
        for token in secrets.values():
            client.get("/v1/devices", headers=reader(token))
            client.get("/v1/devices", headers=reader(token + "x"))

    assert len(secrets) == 2
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        if path in secrets:
            assert os.stat(path).st_mode & 0o777 == 0o600
            continue
        data = path.read_bytes()
        for token in secrets.values():
            assert token.encode() not in data, path
