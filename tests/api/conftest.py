"""Fixtures of the API tests: a registry with two real small models and an app over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from common.settings import ApiSettings, LakeSettings, RegistrySettings, WindowSettings
from models.registry import Registry
from tests.api.factories import publish_classifier

ADMIN_TOKEN = "test-admin-token-0123456789"
READ_TOKEN = "test-read-token-9876543210-abcdef"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """v1 (promoted) and v2 (published, not promoted)."""
    registry = Registry(tmp_path / "registry")
    publish_classifier(registry, seed=0, macro_f1=0.8)
    publish_classifier(registry, seed=1, macro_f1=0.82)
    registry.promote(1, reason="first")
    return registry


def api_settings(registry: Registry, tmp_path: Path, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "registry": RegistrySettings(dir=registry.root),
        "admin_token": ADMIN_TOKEN,
        "read_token": READ_TOKEN,
        "secrets_dir": tmp_path / "secrets",
        "devices_file": tmp_path / "devices.json",
        "consume_predictions": False,
        "model_check_interval_s": 0.05,
        "stream_status_file": tmp_path / "status" / "stream.json",
        "gateway_url": None,
        "window": WindowSettings(),
        "lake": LakeSettings(uri=tmp_path / "lake"),
    }
    values.update(overrides)
    return ApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(registry: Registry, tmp_path: Path) -> ApiSettings:
    return api_settings(registry, tmp_path)


def serving_client(settings: ApiSettings, *, version: int | None = None) -> Iterator[TestClient]:
    """A client of the API that sends the read token with every request (as a reader would)."""
    app = create_app(settings)
    with TestClient(app, headers=reader()) as client:
        if settings.registry.dir.joinpath("CURRENT").exists():
            assert app.state.promoted.wait_until_serving(version, timeout_s=60)
        yield client


@pytest.fixture
def client(settings: ApiSettings) -> Iterator[TestClient]:
    """The API serving v1; the predictions reader is off (tests feed the store)."""
    yield from serving_client(settings, version=1)


@pytest.fixture
def app(client: TestClient) -> FastAPI:
    return client.app  # type: ignore[return-value]


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reader(token: str = READ_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
