"""Finding 9: a huge label is echoed only as a short prefix, anything but JSON is 415, the
phones' list pages with a cursor, and guessable admin or read tokens are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from common.settings import ApiSettings
from tests.api.factories import prediction
from tests.factories import batch_body
from tests.security.gateway import offline_gateway


def test_a_huge_label_is_echoed_as_a_short_prefix(tmp_path: Path) -> None:
    body = batch_body("phone-1", 0)
    body["label"] = "L" * 500_000
    with offline_gateway(tmp_path) as (client, token):
        response = client.post(
            "/v1/readings", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 422
    assert len(response.content) < 2_000, len(response.content)
    assert response.json()["problems"][0]["field"] == "label"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_the_gateway_answers_415_to_anything_but_json(
    tmp_path: Path, content_type: str | None
) -> None:
    with offline_gateway(tmp_path) as (client, token):
        headers = {"Authorization": f"Bearer {token}"}
        if content_type:
            headers["Content-Type"] = content_type
        response = client.post("/v1/readings", content=b'{"device_id": "phone-1"}', headers=headers)

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_the_api_answers_415_to_anything_but_json(client: TestClient) -> None:
    response = client.post(
        "/v1/predict", content=b"accel=1", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_the_phones_list_pages_with_a_cursor_through_every_phone_once(
    client: TestClient,
) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    phones = [f"phone-{i:04d}" for i in range(2_500)]
    for phone in reversed(phones):
        store.update(prediction(phone))

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if after:
            params["after"] = after
        page = client.get("/v1/devices", params=params).json()
        seen += [item["device_id"] for item in page["items"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            break

    assert seen == phones and pages == 3
    assert client.get("/v1/devices", params={"limit": 1001}).status_code == 422


@pytest.mark.parametrize(
    "token", ["x" * 32, "ab" * 20, "abcabcabcabcabcabcabcabc", "0000111100001111aaaa"]
)
def test_guessable_tokens_are_refused_naming_the_setting(token: str) -> None:
    with pytest.raises(ValidationError, match="admin_token is too guessable"):
        ApiSettings(admin_token=token)
    with pytest.raises(ValidationError, match="read_token is too guessable"):
        ApiSettings(read_token=token)
