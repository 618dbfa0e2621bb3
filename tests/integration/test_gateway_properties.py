"""Property-based run against the gateway's own OpenAPI document: no input earns a 5xx."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.settings import GatewaySettings, KafkaSettings
from ingest.app import create_app
from ingest.devices import DeviceRegistry

pytestmark = pytest.mark.integration

EXAMPLES = 300  # per generation mode: 600 requests in all


@pytest.fixture(scope="module")
def gateway_app(kafka_broker: KafkaSettings, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("gateway-properties")
    settings = GatewaySettings(
        devices_file=folder / "devices.json",
        burst_per_device=100_000,
        kafka=kafka_broker.model_copy(update={"readings_topic": "properties.readings"}),
    )
    app = create_app(settings)
    with TestClient(app):  # runs the lifespan: topics created, producer connected
        # The app's own registry: tokens issued here are seen at once (others within 1 s).
        yield app, app.state.registry


tokens: dict[str, str] = {}


def token_for(registry: DeviceRegistry, body: object) -> str:
    """A real token for the body's device when it names a plausible one, else phone-0's."""
    device = body.get("device_id") if isinstance(body, dict) else None
    if not isinstance(device, str) or not device or len(device) > 64 or not device.isascii():
        device = "phone-0"
    if device not in tokens:
        try:
            tokens.update(registry.add([device]))
        except ValueError:
            device = "phone-0"
            if device not in tokens:
                tokens.update(registry.add([device]))
    return tokens[device]


@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_readings_never_answer_5xx(gateway_app, mode) -> None:
    app, registry = gateway_app
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)["/v1/readings"]["POST"]
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def post(case) -> None:
        # A real token, so requests get past authentication to the body's validation.
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token_for(registry, case.body)}"
        case.headers = headers
        response = case.call()
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"

    post()
    assert sum(statuses.values()) >= EXAMPLES, statuses
    assert 422 in statuses, statuses


finite = st.floats(min_value=-150, max_value=150, allow_nan=False, allow_infinity=False)
axis = st.one_of(st.none(), finite)


@st.composite
def valid_batches(draw) -> dict:
    # Times relative to "now", made absolute when posted: the strategy must not read the clock.
    start = -draw(st.integers(min_value=10_000, max_value=86_400_000))
    offsets = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=200))
    return {
        "device_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True)),
        "batch_seq": draw(st.integers(0, 2**40)),
        "sent_at": "2026-01-01T00:00:00Z",
        "label": draw(st.sampled_from([None, "walking", "sitting", "upstairs"])),
        "accel": [
            {"t": start + o, "x": draw(axis), "y": draw(axis), "z": draw(axis)} for o in offsets
        ],
        "gps": [
            {
                "t": start,
                "lat": draw(st.floats(-90, 90)),
                "lon": draw(st.floats(-180, 180)),
                "acc_m": draw(st.floats(0, 100)),
            }
        ],
    }


def test_every_valid_batch_is_accepted(gateway_app) -> None:
    app, registry = gateway_app
    client = TestClient(app)

    @given(body=valid_batches())
    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    def post(body: dict) -> None:
        now_ms = int(time.time() * 1000)
        for sample in body["accel"] + body["gps"]:
            sample["t"] += now_ms
        headers = {"Authorization": f"Bearer {token_for(registry, body)}"}
        response = client.post("/v1/readings", json=body, headers=headers)
        assert response.status_code == 202, response.text

    post()
