"""An in-process gateway with no broker behind it: enough for everything decided before Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from common.settings import GatewaySettings, KafkaSettings
from infra.broker import free_port
from ingest.app import create_app
from ingest.devices import DeviceRegistry


def offline_settings(tmp_path: Path, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "devices_file": tmp_path / "devices.json",
        "ack_timeout_s": 0.2,
        "kafka": KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@contextmanager
def offline_gateway(tmp_path: Path, **overrides: object) -> Iterator[tuple[TestClient, str]]:
    """(client, phone-1's token) of a gateway whose broker is not there: 503 past validation."""
    settings = offline_settings(tmp_path, **overrides)
    token = DeviceRegistry(settings.devices_file).add(["phone-1"])["phone-1"]
    with TestClient(create_app(settings)) as client:
        yield client, token
