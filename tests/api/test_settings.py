"""ApiSettings fail fast and name the bad value."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from common.settings import ApiSettings


def test_defaults() -> None:
    settings = ApiSettings(_env_file=None)
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.admin_token is None and settings.max_devices == 100_000


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBD_API_PORT", "9001")
    monkeypatch.setenv("MBD_API_ADMIN_TOKEN", "s3cret-admin-token-long")
    monkeypatch.setenv("MBD_REGISTRY_DIR", "/srv/models")
    settings = ApiSettings()
    assert settings.port == 9001 and str(settings.registry.dir) == "/srv/models"
    assert settings.admin_token is not None
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("admin_token", "short", "admin_token is 5 characters; use at least 16"),
        ("read_token", "ab" * 20, "read_token is too guessable (40 bits of entropy, need 64)"),
        ("gateway_url", "gateway:8000", "gateway_url 'gateway:8000' is not an http(s):// URL"),
        ("max_devices", 0, "greater than or equal to 1"),
    ],
)
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ApiSettings(**{field: value})
