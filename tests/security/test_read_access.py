"""Finding 2: nothing of the fleet is readable without the read token; a device token reads
only its own phone; the dashboard opens with the token once and keeps it in a cookie."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.devices import DeviceRegistry
from models.registry import Registry
from tests.api.conftest import READ_TOKEN, api_settings, reader
from tests.api.factories import prediction

READ_ENDPOINTS = [
    "/v1/devices",
    "/v1/devices/phone-1/activity",
    "/v1/models",
    "/v1/models/current",
    "/v1/models/1",
    "/v1/models/1/report.png",
    "/v1/stats",
    "/metrics",
]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_every_read_endpoint_needs_the_read_token(client: TestClient, path: str) -> None:
    client.app.state.store.update(prediction("phone-1"))  # type: ignore[attr-defined]

    anonymous = client.get(path, headers={"Authorization": ""})
    wrong = client.get(path, headers=reader("z" * 43))
    allowed = client.get(path)

    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert allowed.status_code == 200, allowed.text


def test_a_device_token_reads_only_its_own_phone(client: TestClient, settings) -> None:
    tokens = DeviceRegistry(settings.devices_file).add(["phone-1", "phone-2"])
    store = client.app.state.store  # type: ignore[attr-defined]
    store.update(prediction("phone-1"))
    store.update(prediction("phone-2"))
    own = reader(tokens["phone-1"])

    assert client.get("/v1/devices/phone-1/activity", headers=own).status_code == 200
    assert client.get("/v1/devices/phone-2/activity", headers=own).status_code == 403
    assert client.get("/v1/devices", headers=own).status_code == 403
    assert client.get("/v1/models", headers=own).status_code == 403
    assert client.get("/metrics", headers=own).status_code == 403


def test_health_and_readiness_stay_open_and_say_nothing_private(
    client: TestClient, registry: Registry
) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.get(path, headers={"Authorization": ""})
        assert response.status_code == 200
        assert str(registry.root) not in response.text and "/" not in response.text


def test_the_dashboard_opens_with_the_token_once_then_keeps_it_in_a_cookie(
    client: TestClient,
) -> None:
    browser = TestClient(client.app)  # no Authorization header, as a browser sends none

    locked = browser.get("/")
    wrong = browser.get("/?token=" + "w" * 43, follow_redirects=False)
    opened = browser.get(f"/?token={READ_TOKEN}", follow_redirects=False)
    cookie = opened.headers["set-cookie"]
    page = browser.get("/")
    data = browser.get("/v1/devices")
    posted = browser.post("/v1/predict", json={"accel": []})

    assert locked.status_code == 401 and "read token" in locked.text
    assert wrong.status_code == 401 and "mbd_token" not in wrong.headers.get("set-cookie", "")
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert page.status_code == 200 and "<html" in page.text
    assert data.status_code == 200
    assert posted.status_code == 401  # the cookie counts for reads only, never for a POST


def test_an_unset_read_token_is_generated_0600(registry: Registry, tmp_path: Path) -> None:
    settings = api_settings(registry, tmp_path, read_token=None)
    with TestClient(create_app(settings)) as client:
        stored = settings.secrets_dir / "api-read-token"
        token = stored.read_text().strip()
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers=reader(token)).status_code == 200

    assert stored.stat().st_mode & 0o777 == 0o600
    assert stored.parent.stat().st_mode & 0o077 == 0  # its folder is the owner's alone
