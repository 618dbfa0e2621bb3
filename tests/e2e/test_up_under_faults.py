"""`mbd up` end to end, and the reliability suite: the whole pipeline under faults.

The pipeline must come up in order, reach a promoted model and live predictions for the simulated
fleet without a manual step, and stop everything on SIGTERM. Under steady simulated traffic the
gateway, then the broker and the streaming job are killed with SIGKILL, the trainer is killed in
the middle of a run and the API is restarted; every one comes back under the supervisor. Then
the fleet stops and the pipeline drains: every batch answered 202 must be in the lake's windows
or in quarantine, no window twice, and the promoted model never changed because of the killed run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common.kafka import make_producer
from infra.broker import client_settings, free_port
from models.registry import Registry
from models.serving import load_version
from tests.browser import console_errors, headless_chromium
from tests.lake import batches_in_kafka, read_lake, reconcile
from tests.processes import alive
from tests.sockets import is_loopback, listening_addresses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2100)]


def wait_for(what: str, condition, timeout_s: float, log: Path, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s; end of mbd up's output:\n"
                         f"{log.read_text()[-3000:]}")  # fmt: skip


def get_json(url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.load(reply)
    except OSError:
        return None


def services(state_file: Path) -> dict[str, dict]:
    return json.loads(state_file.read_text())["services"]


def running_pids(state_file: Path) -> dict[str, int]:
    return {name: entry["pid"] for name, entry in services(state_file).items() if entry["pid"]}


class Pipeline:
    """What the test needs to reach of a running `mbd up`: its files, ports and processes."""

    def __init__(self, data: Path, ports: dict[str, int], log: Path) -> None:
        self.data, self.ports, self.log = data, ports, log
        self.state_file = data / "run" / "up.json"
        self.api = f"http://127.0.0.1:{ports['api']}"
        self.registry = Registry(data / "registry")

    def wait_for(self, what: str, condition, timeout_s: float, poll_s: float = 1.0):
        return wait_for(what, condition, timeout_s, self.log, poll_s)

    def kill(self, service: str, signum: int = signal.SIGKILL) -> None:
        """Signal a service's whole process group, then wait for the supervisor's restart."""
        restarts = services(self.state_file)[service]["restarts"]
        pid = running_pids(self.state_file)[service]
        if service == "broker":
            os.kill(pid, signum)  # the broker's JVM daemonised itself: its pid is the broker
        else:
            os.killpg(pid, signum)
        self.wait_for(f"{service} restarted", lambda: services(self.state_file)[service]
                      ["restarts"] == restarts + 1, 120)  # fmt: skip

    def gateway_ready(self) -> bool:
        return get_json(f"http://127.0.0.1:{self.ports['gateway']}/readyz") is not None

    def read_token(self) -> str:
        return (self.data / "secrets" / "api-read-token").read_text().strip()

    def devices(self) -> list[dict]:
        page = get_json(f"{self.api}/v1/devices?limit=1000", self.read_token())
        return page["items"] if page else []

    def stream_status(self) -> dict:
        path = self.data / "status" / "stream.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def current_version(self) -> int | None:
        return self.registry.current_version()


def test_mbd_up_under_faults_loses_nothing_and_keeps_serving(tmp_path: Path):
    data = tmp_path / "data"
    ports = {"broker": free_port(), "gateway": free_port(), "api": free_port()}
    report_file = tmp_path / "sim-report.json"
    env = {
        **os.environ,
        "MBD_UP_BROKER_PORT": str(ports["broker"]),
        "MBD_UP_GATEWAY_PORT": str(ports["gateway"]),
        "MBD_UP_API_PORT": str(ports["api"]),
        "MBD_UP_TRAIN_EVERY_S": "20",
        "MBD_UP_LABELLED_FRACTION": "0.7",
        "MBD_UP_SIM_REPORT": str(report_file),
        "MBD_TRAIN_MIN_LABELLED_WINDOWS": "60",
        "MBD_TRAIN_MIN_NEW_WINDOWS": "150",
        "MBD_TRAIN_PRETRAIN_ROUNDS": "2",
        "MBD_TRAIN_FINETUNE_ROUNDS": "20",
        "MBD_STREAM_IDLE_FLUSH_S": "10",  # phones that stop are flushed soon after
        "MBD_SPARK_MASTER": "local[2]",
        "MBD_SPARK_DRIVER_MEMORY": "1g",
    }
    log = tmp_path / "up.log"
    command = [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(data), "--devices", "30"]
    up = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    pipeline = Pipeline(data, ports, log)
    try:
        pipeline.wait_for("every service ready", lambda: "mbd is up" in log.read_text(), 420)
        printed = re.search(r"Dashboard: (\S+)", log.read_text())
        assert printed and printed[1] == (
            f"http://127.0.0.1:{ports['api']}/?token={pipeline.read_token()}"
        ), log.read_text()[-2000:]

        pipeline.kill("gateway")
        pipeline.wait_for("the gateway answering again", pipeline.gateway_ready, 120)

        current = data / "registry" / "CURRENT"
        pipeline.wait_for("a promoted model", current.exists, 900, poll_s=5)
        version = pipeline.current_version()
        pipeline.wait_for("live predictions of that model in the API", lambda: [
            d for d in pipeline.devices() if d["model_version"] == version], 300)  # fmt: skip
        poison_every_topic(pipeline)
        look_at_the_dashboard(printed[1], pipeline)
        every_socket_on_loopback(pipeline)

        pipeline.kill("broker")
        pipeline.wait_for("the gateway ready on the restarted broker", pipeline.gateway_ready, 180)

        killed_at = time.time()
        pipeline.kill("stream")
        pipeline.wait_for("the restarted streaming job's first micro-batch", lambda: pipeline
                          .stream_status().get("updated_at", 0) > killed_at + 5, 300)  # fmt: skip

        kill_trainer_mid_run(pipeline)

        pipeline.kill("api", signal.SIGTERM)
        faults_over_ms = int(time.time() * 1000)

        def predicted_after_the_faults() -> list[dict]:
            return [d for d in pipeline.devices() if d["window"]["end_ms"] > faults_over_ms]

        pipeline.wait_for("predictions after the faults", predicted_after_the_faults, 300)

        # The model improves as data arrives and the scheduled trainer promotes better versions:
        # poll until the phones' predictions match what the simulator has them doing.
        def matches_truth():
            compared = compare_with_truth(pipeline.devices(), data / "sim-truth.jsonl")
            print("labelled phones, prediction vs truth:", json.dumps(compared))  # noqa: T201
            good = compared["phones"] >= 5 and compared["matching"] >= 0.9 * compared["phones"]
            return compared if good else None

        pipeline.wait_for("≥ 90 % of labelled phones predicted right", matches_truth, 600, 20)

        drain_and_reconcile(pipeline, report_file)
        check_registry(pipeline.registry)
        status = subprocess.run([sys.executable, "-m", "infra.cli", "status", "--data-dir",
                                 str(data)], capture_output=True, text=True, env=env)  # fmt: skip
        report = json.loads(status.stdout)
        assert status.returncode == 0, report
        assert report["model"]["version"] == pipeline.current_version()
        assert report["lake_bytes"] > 0
        assert report["services"]["simulator"]["finished"]
    finally:
        pids = running_pids(pipeline.state_file) if pipeline.state_file.exists() else {}
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    assert "mbd stopped every service" in log.read_text()

    # A SIGKILLed JVM may take a moment to finish exiting.
    def left_running() -> list[str]:
        return [name for name, pid in pids.items() if alive(pid)]

    deadline = time.monotonic() + 10
    while left_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left_running(), f"still running after mbd up stopped: {left_running()}"
    no_secret_outside_its_file(data)
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and str(data).encode() in _cmdline(p)]  # fmt: skip
    assert not leftovers, [(_cmdline(p)[:200]) for p in leftovers]


POISON_KEY = b"poison"


def poison_every_topic(pipeline: Pipeline) -> None:
    """1,000 hostile records straight into both topics under the running fleet (600 readings of
    every kind the stream must quarantine, 400 predictions the API must skip): afterwards no
    endpoint answers 5xx, both count them, and the fleet's batches still reach the lake (checked
    by the drain at the end)."""
    from tests.security.test_poisoned_predictions import _hostile_records
    from tests.security.test_stream_poison import hostile_records

    kafka = client_settings(pipeline.data / "kafka")
    readings = hostile_records()[:600]
    predictions = [v for v in _hostile_records().values() if v is None or len(v) < 900_000]
    predictions = (predictions * 400)[:400]
    producer = make_producer(kafka)
    try:
        for value, headers, _ in readings:
            producer.send(kafka.readings_topic, key=POISON_KEY, value=value, headers=headers)
        for value in predictions:
            producer.send(kafka.predictions_topic, key=POISON_KEY, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()
    token = pipeline.read_token()

    def api_skipped_them() -> bool:
        stats = get_json(f"{pipeline.api}/v1/stats", token)
        return bool(stats and stats["api"]["malformed_total"] >= len(predictions))

    def stream_quarantined_them() -> bool:
        totals = pipeline.stream_status().get("totals", {})
        counted = {k.removeprefix("quarantined.") for k in totals if k.startswith("quarantined.")}
        return {reason for _, _, reason in readings} <= counted

    pipeline.wait_for("the API skipping the hostile predictions", api_skipped_them, 120)
    pipeline.wait_for("the stream quarantining the hostile readings", stream_quarantined_them, 180)
    for path in ("/v1/devices", "/v1/stats", "/v1/models", "/v1/models/current", "/metrics"):
        request = urllib.request.Request(
            pipeline.api + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # raises on any 4xx/5xx
            assert reply.status == 200, path
    assert pipeline.devices(), "the fleet's phones are still listed"


def look_at_the_dashboard(url: str, pipeline: Pipeline) -> None:
    """The printed URL opens the dashboard in headless Chromium and it shows live phones;
    without the token it answers 401, and the API refuses its data."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as browser:
        browser.get(f"{pipeline.api}/")
        locked = browser.find_element(By.TAG_NAME, "h1").text
        browser.get(url)
        WebDriverWait(browser, 60, poll_frequency=0.5).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#phones tr[data-device-id]")
        )
        shown = browser.current_url
        errors = console_errors(browser)
    assert locked.startswith("401"), locked
    assert shown == f"{pipeline.api}/"  # the token left the address bar for a cookie
    assert not [e for e in errors if "401" not in e], errors  # only the locked page's own
    assert get_json(f"{pipeline.api}/v1/devices") is None  # 401 without the token


def no_secret_outside_its_file(data: Path) -> None:
    """No file the run wrote holds a password or token, except the 0600 files that keep them."""
    kept = [*(data / "secrets").iterdir(), *(data / "kafka" / "secrets").iterdir()]
    kept.append(data / "sim-tokens.json")  # the simulated phones' own device tokens
    secrets = {path.read_text().strip() for path in kept[:-1]}
    secrets |= set(json.loads(kept[-1].read_text()).values())
    for path in kept:
        assert path.stat().st_mode & 0o077 == 0, path
    leaks = [
        str(path)
        for path in data.rglob("*")
        if path.is_file()
        and path not in kept
        and any(s.encode() in path.read_bytes() for s in secrets)
    ]
    assert not leaks, leaks


def every_socket_on_loopback(pipeline: Pipeline) -> None:
    """Every listening socket of every service `mbd up` runs binds a loopback address."""
    bound = listening_addresses(running_pids(pipeline.state_file))
    assert {"broker", "gateway", "stream", "api"} <= {name for name, a in bound.items() if a}, bound
    exposed = {
        name: [a for a in addresses if not is_loopback(a[0])] for name, addresses in bound.items()
    }
    assert not any(exposed.values()), bound


ROUND = re.compile(r"(pretrain-\d+|finetune) round \d+:")
OUTCOME = re.compile(r"v\d+ (promoted|not promoted)|retraining (skipped|failed)")


def kill_trainer_mid_run(pipeline: Pipeline) -> None:
    """SIGKILL the trainer while it pretrains (fine-tuning, evaluation and publishing still
    ahead): nothing it served may change, and no version may come of the killed run."""
    trainer_log = pipeline.data / "logs" / "trainer.log"

    def pretraining_now() -> bool:
        lines = [line for line in trainer_log.read_text().splitlines()
                 if ROUND.search(line) or OUTCOME.search(line)]  # fmt: skip
        return bool(lines) and "pretrain-" in lines[-1]

    before = trainer_log.read_text()
    pipeline.wait_for("the trainer in a new run's pretraining", lambda: pretraining_now()
                      and trainer_log.read_text() != before, 300, poll_s=0.5)  # fmt: skip
    served, versions = pipeline.current_version(), [v.version for v in pipeline.registry.versions()]
    pipeline.kill("trainer")
    assert pipeline.current_version() == served
    assert [v.version for v in pipeline.registry.versions()] == versions
    assert load_version(pipeline.registry, served).version == served


def drain_and_reconcile(pipeline: Pipeline, report_file: Path) -> None:
    """Stop the fleet, let the pipeline drain, and account for every acknowledged batch."""
    os.killpg(running_pids(pipeline.state_file)["simulator"], signal.SIGTERM)
    pipeline.wait_for("the fleet finished, not restarted", lambda: services(
        pipeline.state_file)["simulator"]["finished"], 200)  # fmt: skip
    assert services(pipeline.state_file)["simulator"]["restarts"] == 0
    fleet = json.loads(report_file.read_text())
    acknowledged = {(device, seq) for device, seq in fleet["accepted_keys"]}
    assert fleet["given_up"] == 0 and len(acknowledged) > 1000, fleet

    kafka = client_settings(pipeline.data / "kafka")
    bodies = batches_in_kafka(kafka, acknowledged, skip_key=POISON_KEY)
    missing = acknowledged - bodies.keys()
    assert not missing, f"{len(missing)} acknowledged batches not in Kafka: {sorted(missing)[:5]}"
    sent = [bodies[key] for key in sorted(acknowledged)]

    def drained():
        windows, quarantine = read_lake(pipeline.data / "lake")
        counts = reconcile(sent, windows, quarantine)
        return (counts, windows) if counts["unaccounted"] == 0 else None

    counts, windows = pipeline.wait_for("every acknowledged sample in the lake or quarantine",
                                        drained, 300, poll_s=15)  # fmt: skip
    assert counts["in_a_window"] > 0.9 * counts["samples"], counts
    twice = windows[windows.duplicated(["device_id", "window_start_ms"], keep=False)]
    assert twice.empty, twice[["device_id", "window_start_ms"]].head()


def check_registry(registry: Registry) -> None:
    """Every listed version is whole and loads; CURRENT names one of them."""
    versions = registry.versions()
    assert registry.current_version() in {v.version for v in versions}
    for version in versions:
        assert version.macro_f1 is not None
        assert load_version(registry, version.version).version == version.version


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
