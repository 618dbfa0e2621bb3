"""`mbd simulate` and `mbd simulate replay` against a running gateway and the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.kafka import make_consumer
from common.settings import KafkaSettings
from infra.broker import free_port
from simulators.client import wait_until_ready

pytestmark = pytest.mark.integration

WISDM = (
    "\n".join(
        f"{user},{activity},{49105962326000 + i * 50_000_000},0.{i % 10},9.8,0.1;"
        for user, activity in (("33", "Walking"), ("17", "Sitting"))
        for i in range(120)
    )
    + "\n17,Flying,49105962326000,0.1,9.8,0.1;\n"
)


@pytest.fixture
def gateway(kafka_broker: KafkaSettings, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "MBD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "MBD_GATEWAY_DEVICES_FILE": str(tmp_path / "devices.json"),
        "MBD_SIM_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "MBD_SIM_GATEWAY_URL": f"http://127.0.0.1:{port}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "gateway", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_ready(f"http://127.0.0.1:{port}")
        yield env
    finally:
        process.terminate()
        process.wait(timeout=30)


def mbd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_simulate_reports_every_batch_accepted(gateway: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = mbd(gateway, "simulate", "--devices", "5", "--duration", "4s", "--labelled-fraction",
               "1", "--quiet", "--report", str(report))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 10 and summary["accepted_distinct"] == 10
    details = json.loads(report.read_text())
    assert len(details["accepted_keys"]) == 10 and len(details["labelled"]) == 5
    # A second run reuses the saved tokens instead of issuing new ones.
    again = mbd(gateway, "simulate", "--devices", "5", "--duration", "2s", "--quiet")
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["sent"] == 5
    listed = mbd(gateway, "devices", "list", "--devices-file", gateway["MBD_GATEWAY_DEVICES_FILE"])
    assert listed.stdout.count("1 token(s)") == 5


def test_sigterm_stops_the_fleet_with_a_report_and_a_restart_reuses_no_key(
    gateway: dict[str, str], kafka_broker: KafkaSettings, tmp_path: Path
) -> None:
    reports = [tmp_path / "first.json", tmp_path / "second.json"]
    for report in reports:
        fleet = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "simulate", "--devices", "4", "--duration", "10m",
             "--quiet", "--report", str(report)],
            env=gateway, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(5)  # a few batches per phone
        fleet.send_signal(signal.SIGTERM)
        out, err = fleet.communicate(timeout=60)
        assert fleet.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["given_up"] == 0
    first, second = (
        {tuple(key) for key in json.loads(r.read_text())["accepted_keys"]} for r in reports
    )
    assert len(first) >= 8 and len(second) >= 8, (first, second)
    assert not first & second  # batch_seq goes on from the clock: nothing to take for a resend
    consumer = make_consumer(kafka_broker, kafka_broker.readings_topic, group_id=None,
                             consumer_timeout_ms=5000)  # fmt: skip
    stored = set()
    for record in consumer:
        body = json.loads(record.value)
        stored.add((body["device_id"], body["batch_seq"]))
    consumer.close()
    assert first | second <= stored


def test_replay_sends_a_wisdm_file_as_one_phone_per_user(
    gateway: dict[str, str], tmp_path: Path
) -> None:
    dataset = tmp_path / "wisdm.txt"
    dataset.write_text(WISDM)
    done = mbd(gateway, "simulate", "replay", str(dataset), "--speed", "20", "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["accepted_readings"] == 240 and summary["rejected"] == {}
    assert "not in the class list" in done.stderr  # the skipped line is reported, not hidden
