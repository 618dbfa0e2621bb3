"""Finding 5: a phone's rate limit holds across the gateway's worker processes.

A real ``mbd gateway --workers 2`` with no broker behind it: a request the limiter lets
through goes on to Kafka and gets 503 (not stored), one it stops gets 429. Many phones'
worth of concurrent connections reach both workers; one burst is let through in all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from infra.broker import free_port
from ingest.devices import DeviceRegistry
from tests.factories import batch_body

BURST = 6
REQUESTS = 80


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"gateway did not start:\n{log.read_text()}")


def test_one_burst_in_all_across_two_workers(tmp_path: Path) -> None:
    devices = tmp_path / "devices.json"
    token = DeviceRegistry(devices).add(["phone-1"])["phone-1"]
    port = free_port()
    env = {
        **os.environ,
        "MBD_GATEWAY_DEVICES_FILE": str(devices),
        "MBD_GATEWAY_RATE_PER_DEVICE": "0.001",
        "MBD_GATEWAY_BURST_PER_DEVICE": str(BURST),
        "MBD_GATEWAY_ACK_TIMEOUT_S": "0.2",
        "MBD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nobody there
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "gateway", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, gateway, log)
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}

        def post(seq: int) -> int:
            body = batch_body("phone-1", seq)
            return httpx.post(
                f"{url}/v1/readings", json=body, headers=headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = Counter(pool.map(post, range(REQUESTS)))
        workers = {
            line.split("[")[1].split("]")[0]
            for line in log.read_text().splitlines()
            if "Started server process" in line
        }
    finally:
        gateway.terminate()
        gateway.wait(30)

    assert len(workers) == 2, log.read_text()
    assert statuses[429] == REQUESTS - BURST, statuses
    assert statuses[503] == BURST, statuses
