"""Property-based run over the prediction API's own OpenAPI document: no request, with or
without a valid token, earns a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from ingest.devices import DeviceRegistry
from models.registry import Registry
from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, api_settings
from tests.api.factories import prediction, publish_classifier

EXAMPLES = 300  # per generation mode and token: 1,200 requests in all, over every operation


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    folder = tmp_path_factory.mktemp("api-properties")
    registry = Registry(folder / "registry")
    publish_classifier(registry, seed=0, macro_f1=0.8)
    publish_classifier(registry, seed=1, macro_f1=0.82)
    registry.promote(1, reason="first")
    settings = api_settings(registry, folder, rate_per_token=1e6, burst_per_token=10**6)
    device_token = DeviceRegistry(settings.devices_file).add(["phone-1"])["phone-1"]
    app = create_app(settings)
    with TestClient(app):
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        for phone in ("phone-1", "phone-2"):
            app.state.store.update(prediction(phone))
        yield app, device_token


@pytest.mark.parametrize("authenticated", [True, False], ids=["valid-tokens", "no-or-bad-token"])
@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_no_request_earns_a_5xx(api_app, mode, authenticated: bool) -> None:
    app, device_token = api_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    tokens = (
        [READ_TOKEN, ADMIN_TOKEN, device_token] if authenticated else [None, "mbd_x_y", "z" * 43]
    )
    strategy = st.tuples(
        st.one_of(*(op.as_strategy(generation_mode=mode) for op in operations)),
        st.sampled_from(tokens),
    )
    statuses: Counter[int] = Counter()
    seen: set[str] = set()

    @given(drawn=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(drawn) -> None:
        case, token = drawn
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        case.headers = headers
        response = case.call()
        statuses[response.status_code] += 1
        seen.add(f"{case.method} {case.path}")
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        )

    call()
    assert sum(statuses.values()) >= EXAMPLES, statuses
    assert len(seen) >= 8, seen  # the run reached most of the API, not one route
    if not authenticated:
        assert set(statuses) <= {200, 400, 401, 404, 405, 413, 415, 422, 503}, statuses
        assert 401 in statuses, statuses
