"""What the fault tests run their faults under: mbd's services as processes, and a simulated
fleet posting through the gateway from a thread."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from common.kafka import default_topics, ensure_topics
from common.settings import BrokerSettings, KafkaSettings
from infra import kafka_cluster
from simulators.client import GatewayClient, SendStats
from simulators.fleet import FleetConfig, run_fleet
from tests.lake import batches_in_kafka, read_lake, reconcile

T = TypeVar("T")


def fresh_topics(
    brokers: BrokerSettings, prefix: str, devices_file: Path
) -> tuple[KafkaSettings, dict[str, str]]:
    """New readings and predictions topics on ``brokers`` (a uuid in their names): their client
    settings, and the environment that points mbd's services at them with the shared login."""
    topic = f"{prefix}.{uuid.uuid4().hex[:8]}"
    kafka = kafka_cluster.client_settings(
        brokers.data_dir,
        readings_topic=f"{topic}.readings",
        predictions_topic=f"{topic}.predictions",
    )
    ensure_topics(kafka, default_topics(kafka))
    env = {
        **os.environ,
        **kafka_cluster.client_environment(brokers),
        "MBD_KAFKA_READINGS_TOPIC": kafka.readings_topic,
        "MBD_KAFKA_PREDICTIONS_TOPIC": kafka.predictions_topic,
        "MBD_GATEWAY_DEVICES_FILE": str(devices_file),
        "MBD_STREAM_LIVE_SCORING": "false",
        "MBD_STREAM_TRIGGER_S": "1",
    }
    return kafka, env


def mbd(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``mbd ARGS`` as its own process, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(what: str, condition: Callable[[], T], timeout_s: float, poll_s: float = 0.5) -> T:
    """``condition()``'s first truthy value, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s")


def stream_status(status_file: Path) -> dict[str, Any]:
    """The streaming job's last status, or {} before its first batch."""
    try:
        return json.loads(status_file.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Fleet:
    """Simulated phones posting through the gateway at ``url`` from a thread, until their
    ``config.duration_s`` ends or :meth:`stop`; ``stats`` counts what was acknowledged."""

    config: FleetConfig
    url: str
    tokens: dict[str, str]
    stats: SendStats = field(default_factory=SendStats)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        stop = asyncio.Event()
        async with GatewayClient(self.url, self.tokens, give_up_after_s=300, max_backoff_s=2) as c:
            c.stats = self.stats
            task = asyncio.create_task(run_fleet(self.config, c, stopping=stop))
            while not (self.stopping.is_set() or task.done()):
                await asyncio.sleep(0.2)
            stop.set()
            await task

    def join(self, timeout_s: float = 300) -> SendStats:
        """Wait for the fleet to deliver what its phones hold; its tallies."""
        assert self.thread is not None
        self.thread.join(timeout=timeout_s)
        assert not self.thread.is_alive(), f"the fleet still ran after {timeout_s:.0f} s"
        return self.stats

    def stop(self, timeout_s: float = 300) -> SendStats:
        self.stopping.set()
        return self.join(timeout_s)


def wait_until_stored(
    kafka: KafkaSettings, acknowledged: set[tuple[str, int]], lake: Path, timeout_s: float = 300
) -> tuple[dict[str, int], pd.DataFrame]:
    """Wait until every sample of the ``acknowledged`` batches (each read back from Kafka, where
    all must be) is in the lake's windows or quarantine; the accounting, and the windows."""
    bodies = batches_in_kafka(kafka, acknowledged)
    missing = acknowledged - bodies.keys()
    assert not missing, f"{len(missing)} acknowledged batches not in Kafka: {sorted(missing)[:5]}"
    sent = [bodies[key] for key in sorted(acknowledged)]

    def stored() -> tuple[dict[str, int], pd.DataFrame] | None:
        windows, quarantine = read_lake(lake)
        counts = reconcile(sent, windows, quarantine)
        return (counts, windows) if counts["unaccounted"] == 0 else None

    return wait_for("every acknowledged sample in the lake", stored, timeout_s, poll_s=5)
