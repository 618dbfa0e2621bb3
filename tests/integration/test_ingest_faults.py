"""Zero loss through a broker outage: the simulator keeps posting while Kafka is killed and
restarted; afterwards every batch the gateway answered 202 is in Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from common.kafka import make_consumer
from common.settings import KafkaSettings
from infra import broker
from simulators.client import GatewayClient, wait_until_ready
from simulators.fleet import FleetConfig, provision_tokens, run_fleet
from tests.integration.conftest import start_broker

pytestmark = pytest.mark.integration


def keys_in_topic(kafka: KafkaSettings, expected: set[tuple[str, int]]) -> set[tuple[str, int]]:
    consumer = make_consumer(kafka, kafka.readings_topic, group_id=None, consumer_timeout_ms=5000)
    found: set[tuple[str, int]] = set()
    try:
        for record in consumer:
            body = json.loads(record.value)
            found.add((body["device_id"], body["batch_seq"]))
            if expected <= found:
                break
    finally:
        consumer.close()
    return found


def test_no_acknowledged_batch_is_lost_when_the_broker_dies(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    broker_settings = start_broker(data_dir)
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker_settings.port}")
    port = broker.free_port()
    url = f"http://127.0.0.1:{port}"
    registry = tmp_path / "devices.json"
    env = {
        **os.environ,
        "MBD_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "MBD_GATEWAY_DEVICES_FILE": str(registry),
        "MBD_GATEWAY_ACK_TIMEOUT_S": "2",
    }
    config = FleetConfig(devices=40, duration_s=24, labelled_fraction=0.5, seed=3)
    tokens = provision_tokens(
        config.device_ids(), tmp_path / "tokens.json", tmp_path / "devices.json"
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "gateway", "--port", str(port)],
        env=env,
        stdout=open(tmp_path / "gateway.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    readiness_during_outage: list[int] = []
    outage_errors: list[BaseException] = []
    try:
        wait_until_ready(url)

        def outage() -> None:
            try:
                kill_and_restart()
            except BaseException as error:  # surfaced in the main thread below
                outage_errors.append(error)

        def kill_and_restart() -> None:
            time.sleep(6)
            broker.kill(data_dir)  # kill -9: no clean shutdown
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                try:
                    ready = httpx.get(f"{url}/readyz", timeout=5)
                    readiness_during_outage.append(ready.status_code)
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            start_broker(data_dir, port=broker_settings.port)

        chaos = threading.Thread(target=outage)
        chaos.start()

        async def fleet():
            async with GatewayClient(url, tokens, give_up_after_s=90, max_backoff_s=2) as client:
                return await run_fleet(config, client)

        stats = asyncio.run(fleet())
        chaos.join()
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        broker.stop(data_dir)
        broker.start(broker_settings, broker.JvmSettings())  # reopen to read what was stored

    try:
        assert not outage_errors, outage_errors
        assert stats.given_up == 0
        assert stats.retried_by_status.get("503", 0) > 0, stats.summary()
        assert 503 in readiness_during_outage
        seqs: dict[str, list[int]] = {}
        for device, seq in sorted(stats.accepted_keys):
            seqs.setdefault(device, []).append(seq)
        assert set(seqs) == set(config.device_ids())  # every phone, its 12 batches in a row
        assert all(s == list(range(s[0], s[0] + 12)) for s in seqs.values()), seqs
        found = keys_in_topic(kafka, stats.accepted_keys)
        missing = stats.accepted_keys - found
        assert not missing, (
            f"{len(missing)} acknowledged batches missing, e.g. {sorted(missing)[:5]}"
        )
    finally:
        broker.stop(data_dir)
