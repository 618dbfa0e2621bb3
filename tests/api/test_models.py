"""The registry through the API: listing, figures, report, and admin-only promote/rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from models.registry import Registry
from tests.api.conftest import admin, api_settings, reader
from tests.api.factories import CLASSES, publish_classifier


def test_the_list_shows_every_version_and_which_is_promoted_and_serving(
    client: TestClient,
) -> None:
    body = client.get("/v1/models").json()

    assert body["promoted"] == 1 and body["serving"] == 1
    assert [v["version"] for v in body["versions"]] == [1, 2]
    first, second = body["versions"]
    assert first["promoted"] and first["serving"] and not second["promoted"]
    assert first["macro_f1"] == 0.8 and second["macro_f1"] == 0.82
    assert first["train_windows"] == 1200 and first["holdout_windows"] == 300
    assert first["report_url"] == "/v1/models/1/report.png"
    assert first["created_at"] == "2026-01-02T03:04:05Z"


def test_the_current_model_comes_with_its_metrics(client: TestClient) -> None:
    body = client.get("/v1/models/current").json()

    assert body["version"] == 1
    assert body["classes"] == list(CLASSES)
    assert body["metrics"]["macro_f1"] == 0.8
    assert len(body["metrics"]["confusion_matrix"]) == len(CLASSES)
    assert set(body["metrics"]["per_class"]) == set(CLASSES)
    assert "history" not in body["metrics"] and body["training_rounds"] == 5
    assert body["config"]["spec"]["input_dim"] == 600


@pytest.mark.parametrize("name", ["2", "v2"])
def test_one_version_by_number(client: TestClient, name: str) -> None:
    body = client.get(f"/v1/models/{name}").json()
    assert body["version"] == 2 and not body["promoted"]


def test_an_unknown_version_is_a_404_and_a_bad_one_a_422(client: TestClient) -> None:
    missing = client.get("/v1/models/9")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no model version v9 in ")

    bad = client.get("/v1/models/latest")
    assert bad.status_code == 422
    assert bad.json()["detail"] == "'latest' is not a model version like 3 or v3"


def test_the_report_is_served_as_png(client: TestClient, registry: Registry) -> None:
    response = client.get("/v1/models/1/report.png")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == registry.get(1).report_path.read_bytes()
    assert response.content.startswith(b"\x89PNG")


def test_a_version_without_report_is_a_404(registry: Registry, client: TestClient) -> None:
    publish_classifier(registry, report=False)

    response = client.get("/v1/models/3/report.png")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "v3 has no report", "problems": []}
    assert client.get("/v1/models").json()["versions"][2]["report_url"] is None


def test_no_current_model_is_a_404(tmp_path: Path) -> None:
    empty = Registry(tmp_path / "empty")
    with TestClient(create_app(api_settings(empty, tmp_path)), headers=reader()) as client:
        response = client.get("/v1/models/current")
        listing = client.get("/v1/models").json()

    assert response.status_code == 404
    assert response.json()["detail"] == "no model is promoted"
    assert listing == {"promoted": None, "serving": None, "load_error": None, "versions": []}


ADMIN_CALLS = [("/v1/models/2/promote", None), ("/v1/models/rollback", None)]


@pytest.mark.parametrize(("path", "body"), ADMIN_CALLS)
def test_admin_actions_without_a_token_are_401(client: TestClient, path: str, body: None) -> None:
    response = client.post(path, json=body, headers={"Authorization": ""})

    assert response.status_code == 401
    assert response.json()["detail"] == "missing 'Authorization: Bearer <token>'"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("path", "body"), ADMIN_CALLS)
def test_admin_actions_with_an_unknown_token_are_401(
    client: TestClient, registry: Registry, path: str, body: None
) -> None:
    response = client.post(path, json=body, headers=admin("not-the-admin-token-at-all"))

    assert response.status_code == 401
    assert response.json()["detail"] == "unknown token"
    assert registry.current_version() == 1


@pytest.mark.parametrize(("path", "body"), ADMIN_CALLS)
def test_admin_actions_with_the_read_token_are_403(
    client: TestClient, registry: Registry, path: str, body: None
) -> None:
    response = client.post(path, json=body)  # the client sends the read token

    assert response.status_code == 403
    assert response.json()["detail"] == "this token is not the admin token"
    assert registry.current_version() == 1


def test_without_a_configured_admin_token_one_is_generated_0600(
    registry: Registry, tmp_path: Path
) -> None:
    settings = api_settings(registry, tmp_path, admin_token=None)
    with TestClient(create_app(settings)) as client:
        stored = settings.secrets_dir / "api-admin-token"
        token = stored.read_text().strip()
        refused = client.post("/v1/models/2/promote", headers=admin())
        promoted = client.post("/v1/models/2/promote", headers=admin(token))

    assert stored.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 40
    assert refused.status_code == 401
    assert promoted.status_code == 200 and registry.current_version() == 2


def test_promote_switches_current_and_the_serving_model(
    client: TestClient, registry: Registry
) -> None:
    response = client.post(
        "/v1/models/v2/promote", json={"reason": "better on new phones"}, headers=admin()
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "action": "promote", "version": 2, "reason": "better on new phones", "serving": 2,
    }  # fmt: skip
    assert registry.current_version() == 2
    assert registry.history()[-1]["reason"] == "better on new phones"
    assert client.get("/v1/models/current").json()["version"] == 2


def test_promoting_an_unknown_version_is_a_404(client: TestClient) -> None:
    response = client.post("/v1/models/7/promote", headers=admin())

    assert response.status_code == 404
    assert response.json()["detail"].startswith("no model version v7 in ")


def test_promoting_a_version_that_does_not_load_is_a_409_and_changes_nothing(
    client: TestClient, registry: Registry
) -> None:
    publish_classifier(registry, model_bytes=b"truncated")

    response = client.post("/v1/models/3/promote", headers=admin())

    assert response.status_code == 409
    assert "is not a readable .keras zip archive" in response.json()["detail"]
    assert registry.current_version() == 1
    assert client.get("/v1/models").json()["serving"] == 1


def test_rollback_goes_back_to_the_previous_promotion(
    client: TestClient, registry: Registry
) -> None:
    client.post("/v1/models/2/promote", headers=admin())

    response = client.post("/v1/models/rollback", headers=admin())

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["serving"] == 1
    assert response.json()["reason"] == "rolled back through the API"
    assert registry.current_version() == 1


def test_rollback_with_nothing_before_is_a_409(client: TestClient) -> None:
    response = client.post("/v1/models/rollback", headers=admin())

    assert response.status_code == 409
    assert response.json()["detail"].startswith("nothing to roll back to from v1")
