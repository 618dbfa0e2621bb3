"""Switching CURRENT back and forth under concurrent POST /v1/predict fails no request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from api.app import create_app
from models.registry import Registry
from tests.api.conftest import api_settings, reader
from tests.api.factories import accel_samples
from tests.api.server import running_server

CLIENTS = 6
SWITCHES = [2, 1, 2, 1, 2, 1]


def test_reloads_under_concurrent_requests_fail_nothing(registry: Registry, tmp_path: Path) -> None:
    # As many requests as the clients can send: the rate limit is not what this test is about.
    app = create_app(
        api_settings(registry, tmp_path, model_check_interval_s=0.05, rate_per_token=1e6)
    )
    body = {"accel": accel_samples(end_ms=1_780_000_000_000)}
    outcomes: Counter[str] = Counter()
    versions: Counter[int] = Counter()
    latest = {"version": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30, headers=reader()) as client:
            while not stop.is_set():
                try:
                    response = client.post("/v1/predict", json=body)
                except httpx.HTTPError as error:
                    with lock:
                        outcomes[f"{type(error).__name__}"] += 1
                    continue
                with lock:
                    outcomes[str(response.status_code)] += 1
                    if response.status_code == 200:
                        version = response.json()["model_version"]
                        versions[version] += 1
                        latest["version"] = version

    def answered_by(version: int, *, more_than: int = 0, timeout_s: float = 60) -> bool:
        """Poll until the latest answers come from ``version``, over ``more_than`` of them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with lock:
                if latest["version"] == version and versions[version] > more_than:
                    return True
            time.sleep(0.01)
        return False

    with running_server(app) as url:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        threads = [threading.Thread(target=hammer, args=(url,)) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            assert answered_by(1)
            for version in SWITCHES:
                with lock:
                    before = versions[version]
                registry.promote(version, reason="reload test")
                # Some requests on the new version, in flight across the swap, before the next.
                assert answered_by(version, more_than=before + 20), f"v{version} never answered"
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 200
    assert set(versions) == {1, 2}
