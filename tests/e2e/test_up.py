"""`mbd up` end to end: the whole pipeline on this machine under its supervisor.

It must come up in order, restart a service that dies, reach a promoted model and live
predictions for the simulated fleet without a manual step, and stop everything on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.broker import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def wait_for(what: str, condition, timeout_s: float, log: Path, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s; end of mbd up's output:\n"
                         f"{log.read_text()[-3000:]}")  # fmt: skip


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.load(reply)
    except OSError:
        return None


def running_pids(state_file: Path) -> dict[str, int]:
    services = json.loads(state_file.read_text())["services"]
    return {name: entry["pid"] for name, entry in services.items() if entry["pid"]}


def test_mbd_up_serves_live_predictions_restarts_what_dies_and_stops_cleanly(tmp_path: Path):
    data = tmp_path / "data"
    ports = {"broker": free_port(), "gateway": free_port(), "api": free_port()}
    env = {
        **os.environ,
        "MBD_UP_BROKER_PORT": str(ports["broker"]),
        "MBD_UP_GATEWAY_PORT": str(ports["gateway"]),
        "MBD_UP_API_PORT": str(ports["api"]),
        "MBD_UP_TRAIN_EVERY_S": "20",
        "MBD_UP_LABELLED_FRACTION": "0.7",
        "MBD_TRAIN_MIN_LABELLED_WINDOWS": "60",
        "MBD_TRAIN_MIN_NEW_WINDOWS": "150",
        "MBD_TRAIN_PRETRAIN_ROUNDS": "2",
        "MBD_TRAIN_FINETUNE_ROUNDS": "20",
        "MBD_SPARK_MASTER": "local[2]",
        "MBD_SPARK_DRIVER_MEMORY": "1g",
    }
    log = tmp_path / "up.log"
    command = [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(data), "--devices", "30"]
    up = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    state_file = data / "run" / "up.json"
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_for("every service ready", lambda: "mbd is up" in log.read_text(), 420, log)
        assert f"Dashboard: http://127.0.0.1:{ports['api']}/" in log.read_text()

        gateway_pid = running_pids(state_file)["gateway"]
        os.killpg(gateway_pid, signal.SIGKILL)
        wait_for("the gateway restarted", lambda: json.loads(state_file.read_text())
                 ["services"]["gateway"]["restarts"] == 1, 60, log)  # fmt: skip
        wait_for("the gateway answering again", lambda: get_json(
            f"http://127.0.0.1:{ports['gateway']}/readyz") is not None, 120, log)  # fmt: skip

        current = data / "registry" / "CURRENT"
        wait_for("a promoted model", current.exists, 900, log, poll_s=5)
        version = int(current.read_text().strip().lstrip("v"))

        def predictions_of_that_model():
            page = get_json(f"{api}/v1/devices?limit=1000")
            return page and [d for d in page["items"] if d["model_version"] == version]

        live = wait_for("live predictions in the API", predictions_of_that_model, 300, log)
        assert all(d["device_id"].startswith("sim-phone-") for d in live)

        # The model improves as data arrives and the scheduled trainer promotes better versions:
        # poll until the phones' predictions match what the simulator has them doing.
        def matches_truth():
            page = get_json(f"{api}/v1/devices?limit=1000")
            compared = compare_with_truth(page["items"] if page else [], data / "sim-truth.jsonl")
            print("labelled phones, prediction vs truth:", json.dumps(compared))  # noqa: T201
            good = compared["phones"] >= 5 and compared["matching"] >= 0.9 * compared["phones"]
            return compared if good else None

        wait_for("≥ 90 % of labelled phones predicted right", matches_truth, 600, log, poll_s=20)
        version = int(current.read_text().strip().lstrip("v"))
        status = subprocess.run([sys.executable, "-m", "infra.cli", "status", "--data-dir",
                                 str(data)], capture_output=True, text=True, env=env)  # fmt: skip
        report = json.loads(status.stdout)
        assert status.returncode == 0, report
        assert report["model"]["version"] >= version and report["lake_bytes"] > 0
    finally:
        pids = running_pids(state_file) if state_file.exists() else {}
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    assert "mbd stopped every service" in log.read_text()
    time.sleep(1)
    left = [name for name, pid in pids.items() if Path(f"/proc/{pid}").exists()]
    assert not left, f"still running after mbd up stopped: {left}"
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and str(data).encode() in _cmdline(p)]  # fmt: skip
    assert not leftovers, [(_cmdline(p)[:200]) for p in leftovers]


def compare_with_truth(devices: list[dict], timeline: Path) -> dict:
    """For labelled phones whose predicted window lies in one true activity: how many match."""
    changes: dict[str, list[tuple[int, str]]] = {}
    labelled = set()
    for line in timeline.read_text().splitlines():
        entry = json.loads(line)
        changes.setdefault(entry["device_id"], []).append((entry["from_ms"], entry["activity"]))
        if entry["labelled"]:
            labelled.add(entry["device_id"])
    phones = matching = 0
    for device in devices:
        if device["device_id"] not in labelled:
            continue
        start, end = device["window"]["start_ms"], device["window"]["end_ms"]
        segments = changes[device["device_id"]]
        ends = [t for t, _ in segments[1:]] + [end + 1]
        during = {
            a for (t, a), until in zip(segments, ends, strict=True) if t < end and until > start
        }
        if len(during) == 1:
            phones += 1
            matching += during == {device["activity"]}
    return {"phones": phones, "matching": matching}


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
