"""The dashboard page and its assets come from the API itself, nothing from outside."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

ASSETS = ["/static/dashboard.js", "/static/dashboard.css"]


def test_the_page_links_only_local_assets(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'data-refresh-ms="2000"' in page
    for asset in ASSETS:
        assert asset in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the machine may be offline"


def test_the_assets_are_served_and_fetch_only_the_api(client: TestClient) -> None:
    for asset in ASSETS:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "http://" not in response.text and "https://" not in response.text
    script = client.get("/static/dashboard.js").text
    for endpoint in ("/v1/devices", "/v1/models", "/v1/models/current", "/v1/stats"):
        assert endpoint in script
    assert "innerHTML" not in script  # values from the API are never parsed as HTML
