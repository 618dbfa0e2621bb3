"""Brokers killed under a running simulated fleet: three brokers, replication 3, min ISR 2.

One gateway (``mbd gateway``) and one streaming job (``mbd stream``) run on the shared
three-broker cluster for the whole module while 20 simulated phones post through it; a probe
phone posts one batch at a time so each test can see what the gateway answers right after a
kill. The tests run in file order: the last one stops the fleet, drains the stream and accounts
for every batch that was answered 202 during the faults.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from infra import kafka_cluster
from infra.broker import free_port
from ingest.devices import DeviceRegistry
from simulators.client import wait_until_ready
from simulators.fleet import FleetConfig, provision_tokens
from tests.cluster.fleet import Fleet, fresh_topics, mbd, stream_status, wait_for, wait_until_stored

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

PROBE = "probe-phone"


@dataclass
class Probe:
    """A phone that posts one batch at a time and remembers what was acknowledged."""

    url: str
    token: str
    seq: int = 0
    acknowledged: list[dict] = field(default_factory=list)

    def post(self) -> tuple[int, float, httpx.Response | None]:
        """(status, seconds it took, response) for one new batch; status 0 for no answer."""
        self.seq += 1
        now = int(time.time() * 1000)
        body = {
            "device_id": PROBE,
            "batch_seq": self.seq,
            "sent_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now / 1000)),
            "accel": [{"t": now - 2000 + 50 * i, "x": 0.1, "y": 9.8, "z": 0.2} for i in range(40)],
            "gps": [],
        }
        started = time.monotonic()
        try:
            reply = httpx.post(
                f"{self.url}/v1/readings",
                json=body,
                timeout=30,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError:
            return 0, time.monotonic() - started, None
        if reply.status_code == 202:
            self.acknowledged.append(body)
        return reply.status_code, time.monotonic() - started, reply

    def until_accepted(self, timeout_s: float) -> float:
        """Post until a batch is answered 202; the seconds that took."""
        started = time.monotonic()
        answers = []
        while time.monotonic() - started < timeout_s:
            status, _, _ = self.post()
            answers.append(status)
            if status == 202:
                return time.monotonic() - started
        raise AssertionError(f"no 202 within {timeout_s:.0f} s; answers {answers}")


@dataclass
class Pipeline:
    brokers: BrokerSettings
    kafka: KafkaSettings
    gateway: subprocess.Popen
    stream: subprocess.Popen
    status_file: Path
    lake: Path
    probe: Probe
    fleet: Fleet

    def stream_batch(self) -> int:
        return int(stream_status(self.status_file).get("batch_id", -1))

    def partition_leaders(self) -> dict[int, int]:
        return kafka_cluster.leader_counts(
            kafka_cluster.partitions(self.kafka, [self.kafka.readings_topic])
        )


@pytest.fixture(scope="module")
def pipeline(three_brokers: BrokerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("broker-faults")
    kafka, env = fresh_topics(three_brokers, "cluster", root / "devices.json")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "MBD_LAKE_URI": str(root / "lake"),
            "MBD_STREAM_CHECKPOINT_DIR": str(root / "checkpoint"),
            "MBD_STREAM_STATUS_FILE": str(root / "stream.json"),
            "MBD_SPARK_MASTER": "local[2]",
        }
    )
    config = FleetConfig(devices=20, duration_s=3600, labelled_fraction=0.5, seed=5)
    tokens = provision_tokens(config.device_ids(), root / "tokens.json", root / "devices.json")
    probe_token = DeviceRegistry(root / "devices.json").add([PROBE])[PROBE]
    gateway = mbd("gateway", "--port", str(port), env=env, log=root / "gateway.log")
    stream = mbd("stream", env=env, log=root / "stream.log")
    wait_until_ready(url, timeout_s=60)
    fleet = Fleet(config, url, tokens)
    fleet.start()
    built = Pipeline(
        brokers=three_brokers,
        kafka=kafka,
        gateway=gateway,
        stream=stream,
        status_file=root / "stream.json",
        lake=root / "lake",
        probe=Probe(url, probe_token),
        fleet=fleet,
    )
    try:
        wait_for("the stream's first batches", lambda: built.stream_batch() >= 2, 240)
        yield built
    finally:
        fleet.stop(timeout_s=120)
        for process in (gateway, stream):
            process.terminate()
            process.wait(timeout=60)
        for node in kafka_cluster.status(three_brokers.data_dir):  # leave all three up
            if not node.running:
                kafka_cluster.start(three_brokers, JvmSettings())
                break


def test_losing_the_busiest_leader_stops_nothing(pipeline: Pipeline) -> None:
    """Kills (SIGKILL) the broker leading the most partitions of the readings topic while the
    fleet posts; the probe's first 202 after it must come within 20 s (a new leader elected),
    and the streaming job, never restarted, must complete new micro-batches after the kill."""
    wait_for("the fleet's first acknowledgements", lambda: pipeline.fleet.stats.accepted > 20, 60)
    leaders = pipeline.partition_leaders()
    victim = max(leaders, key=leaders.get)
    batch_before = pipeline.stream_batch()
    assert kafka_cluster.kill_node(pipeline.brokers.data_dir, victim)

    elapsed = pipeline.probe.until_accepted(timeout_s=20)
    led = f"led {leaders[victim]} of {sum(leaders.values())} partitions"
    print(f"killed broker {victim} ({led}); first 202 after {elapsed:.1f} s")  # noqa: T201
    assert victim not in pipeline.partition_leaders()
    wait_for(
        "a stream batch after the kill", lambda: pipeline.stream_batch() >= batch_before + 3, 120
    )
    assert pipeline.stream.poll() is None and pipeline.gateway.poll() is None

    kafka_cluster.start_node(pipeline.brokers, JvmSettings(), victim)
    kafka_cluster.wait_fully_replicated(pipeline.kafka, [pipeline.kafka.readings_topic])


def test_losing_two_brokers_refuses_writes_until_one_returns(pipeline: Pipeline) -> None:
    """Kills the busiest leader, then (once writes flow again) a second broker: with one copy
    left no write can reach min.insync.replicas 2, so three probes in a row must be answered
    503 with Retry-After, never 202. Both brokers then come back and a 202 follows."""
    leaders = pipeline.partition_leaders()
    first = max(leaders, key=leaders.get)
    second = next(node for node in (1, 2, 3) if node != first)
    assert kafka_cluster.kill_node(pipeline.brokers.data_dir, first)
    pipeline.probe.until_accepted(timeout_s=20)
    assert kafka_cluster.kill_node(pipeline.brokers.data_dir, second)

    answers = []
    for _ in range(3):
        status, took, reply = pipeline.probe.post()
        answers.append((status, round(took, 1)))
        assert status == 503, answers
        assert reply is not None and int(reply.headers["Retry-After"]) >= 1
    print(f"killed brokers {first} and {second}: answers (status, s) {answers}")  # noqa: T201

    for node in (first, second):
        kafka_cluster.start_node(pipeline.brokers, JvmSettings(), node)
    elapsed = pipeline.probe.until_accepted(timeout_s=60)
    print(f"both back; first 202 after {elapsed:.1f} s")  # noqa: T201
    kafka_cluster.wait_fully_replicated(pipeline.kafka, [pipeline.kafka.readings_topic])


def test_after_the_drain_every_acknowledged_batch_is_stored_once(pipeline: Pipeline) -> None:
    """Stops the fleet after the faults above and lets the stream drain: every batch answered
    202 (the fleet's and the probe's) must be in Kafka and, sample by sample, in the lake's
    windows or in quarantine, with no window written twice."""
    stats = pipeline.fleet.stop()
    assert stats.given_up == 0, stats.summary()
    acknowledged = set(stats.accepted_keys) | {
        (body["device_id"], body["batch_seq"]) for body in pipeline.probe.acknowledged
    }
    counts, windows = wait_until_stored(pipeline.kafka, acknowledged, pipeline.lake)
    print(f"fleet {json.dumps(stats.summary())}; lake {json.dumps(counts)}")  # noqa: T201
    twice = windows[windows.duplicated(["device_id", "window_start_ms"], keep=False)]
    assert twice.empty, twice[["device_id", "window_start_ms"]].head()
    assert pipeline.stream.poll() is None  # the stream ran through every fault
