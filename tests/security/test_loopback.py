"""What ``mbd up`` runs listens on loopback only, and its Kafka password stays in its secret file.

A broker, a gateway and a streaming job are started as ``mbd up`` starts them (the broker by
``infra.broker.start``, the others as ``mbd`` processes with the client user's environment),
a few batches go through them, and then every listening TCP socket of their process trees
(from /proc/net/tcp and tcp6, matched to the processes by socket inode) must bind a loopback
address. The Spark checkpoint, the stream's status file and every log must not hold the
client's password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from common.settings import BrokerSettings, JvmSettings
from infra import broker
from ingest.devices import DeviceRegistry
from simulators.client import wait_until_ready
from tests.factories import batch_body
from tests.sockets import is_loopback, listening_addresses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def mbd(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "infra.cli", *args], env=env,
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(what: str, condition, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def test_every_socket_binds_loopback_and_the_password_stays_in_its_file(tmp_path: Path) -> None:
    kafka_dir = tmp_path / "kafka"
    broker_settings = BrokerSettings(port=broker.free_port(), data_dir=kafka_dir, secrets_dir=None)
    broker_pid = broker.start(broker_settings, JvmSettings()).pid
    assert broker_pid is not None
    topic = f"readings.{uuid.uuid4().hex[:8]}"
    status_file = tmp_path / "status" / "stream.json"
    gateway_port = broker.free_port()
    env = {
        **os.environ,
        **broker.client_environment(broker_settings),
        "MBD_KAFKA_READINGS_TOPIC": topic,
        "MBD_GATEWAY_DEVICES_FILE": str(tmp_path / "devices.json"),
        "MBD_REGISTRY_DIR": str(tmp_path / "registry"),
        "MBD_STREAM_STATUS_FILE": str(status_file),
        "MBD_STREAM_LIVE_SCORING": "false",
        "MBD_SPARK_MASTER": "local[1]",
    }
    tokens = DeviceRegistry(tmp_path / "devices.json").add(["phone-1"])
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "stream")}
    gateway = mbd("gateway", "--port", str(gateway_port), env=env, log=logs["gateway"])
    stream = mbd("stream", "--lake", str(tmp_path / "lake"), "--checkpoint",
                 str(tmp_path / "checkpoint"), "--trigger", "0.5", env=env,
                 log=logs["stream"])  # fmt: skip
    try:
        url = f"http://127.0.0.1:{gateway_port}"
        wait_until_ready(url, timeout_s=60)
        for seq in range(3):
            answer = httpx.post(f"{url}/v1/readings", json=batch_body("phone-1", seq),
                                headers={"Authorization": f"Bearer {tokens['phone-1']}"},
                                timeout=30)  # fmt: skip
            assert answer.status_code == 202, answer.text

        def read_by_the_stream() -> bool:
            if not status_file.exists():
                return False
            status = json.loads(status_file.read_text())
            return status.get("batch_id") is not None and status["records_behind_topic_end"] == 0

        wait_for("the stream reading the gateway's batches", read_by_the_stream, 150,
                 logs["stream"])  # fmt: skip

        bound = listening_addresses(
            {"broker": broker_pid, "gateway": gateway.pid, "stream": stream.pid}
        )
        assert len(bound["broker"]) == 2, bound  # the client and the controller listener
        assert bound["gateway"] and bound["stream"], bound  # uvicorn; Spark's driver RPC, ...
        open_to_network = {name: [a for a in addresses if not is_loopback(a[0])]
                           for name, addresses in bound.items()}  # fmt: skip
        assert open_to_network == {"broker": [], "gateway": [], "stream": []}, bound
    finally:
        for process in (gateway, stream):
            process.terminate()
        for process in (gateway, stream):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop(kafka_dir)

    password = (kafka_dir / "secrets" / "client.password").read_text().strip().encode()
    checkpoint = [path for path in (tmp_path / "checkpoint").rglob("*") if path.is_file()]
    written = [status_file, *logs.values(), kafka_dir / "broker.log", *checkpoint]
    assert any(path.parent.name == "offsets" for path in written)  # the checkpoint is there
    leaked = [str(path) for path in written if password in path.read_bytes()]
    assert leaked == []
