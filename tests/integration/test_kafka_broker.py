"""The embedded Apache Kafka broker: real records, consumer groups, restarts and clean stops."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.kafka import ensure_topics, make_consumer, make_producer
from common.settings import KafkaSettings
from common.topics import TopicSpec
from infra import broker
from tests.integration.conftest import start_broker

pytestmark = pytest.mark.integration

RECORDS = 10_000


def produce_numbered(settings: KafkaSettings, topic: str, count: int) -> None:
    producer = make_producer(settings, linger_ms=20)
    try:
        for i in range(count):
            producer.send(topic, key=f"device-{i % 97}".encode(), value=f"record-{i}".encode())
        producer.flush(timeout=60)
    finally:
        producer.close()


def consume_all(
    settings: KafkaSettings, topic: str, *, group_id: str, expected: int, deadline_s: float = 60
) -> list[bytes]:
    """Poll ``group_id`` until ``expected`` records arrived or time ran out, committing."""
    consumer = make_consumer(settings, topic, group_id=group_id)
    values: list[bytes] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
            consumer.commit()
        return values
    finally:
        consumer.close()


def test_every_record_is_consumed_exactly_once_through_a_group(
    kafka_broker: KafkaSettings, fresh_topic: str
) -> None:
    produce_numbered(kafka_broker, fresh_topic, RECORDS)

    first = consume_all(kafka_broker, fresh_topic, group_id="readers", expected=RECORDS)
    assert len(first) == RECORDS
    assert set(first) == {f"record-{i}".encode() for i in range(RECORDS)}

    # The group committed its offsets: a new member of the same group sees nothing again.
    again = consume_all(kafka_broker, fresh_topic, group_id="readers", expected=1, deadline_s=5)
    assert again == []


def test_records_survive_a_broker_stop_and_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    settings = start_broker(data_dir)
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{settings.port}")
    try:
        ensure_topics(kafka, [TopicSpec(name="durable", partitions=4)])
        produce_numbered(kafka, "durable", RECORDS)
        assert broker.stop(data_dir)
        assert not broker.status(data_dir).running

        start_broker(data_dir, port=settings.port)
        values = consume_all(kafka, "durable", group_id="after-restart", expected=RECORDS)
        assert sorted(values) == sorted(f"record-{i}".encode() for i in range(RECORDS))
    finally:
        broker.stop(data_dir)


def _broker_processes(data_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "kafka.Kafka" in cmdline and str(data_dir.resolve()) in cmdline:
            pids.append(int(proc.name))
    return pids


def test_start_is_ready_within_30_s_and_stop_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    settings = broker.BrokerSettings(port=broker.free_port(), data_dir=data_dir, start_timeout_s=30)
    state = broker.start(settings, broker.JvmSettings())
    try:
        assert state.running and state.reachable
        assert _broker_processes(data_dir) == [state.pid]
    finally:
        assert broker.stop(data_dir)
    assert _broker_processes(data_dir) == []
    assert broker.stop(data_dir) is False  # stopping twice is harmless and says so


def test_start_on_a_busy_port_fails_naming_the_port(
    tmp_path: Path, kafka_broker: KafkaSettings
) -> None:
    busy = int(kafka_broker.bootstrap_servers.rsplit(":", 1)[1])
    settings = broker.BrokerSettings(port=busy, data_dir=tmp_path / "kafka")
    with pytest.raises(broker.BrokerError, match=f"port {busy}"):
        broker.start(settings, broker.JvmSettings())


def test_a_broker_that_cannot_start_reports_its_own_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    settings = start_broker(data_dir)
    broker.stop(data_dir)
    # A disk mix-up: the storage now says it belongs to another node.
    meta = data_dir / "log" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"))
    try:
        with pytest.raises(broker.BrokerError) as failure:
            broker.start(settings, broker.JvmSettings())
    finally:
        broker.kill(data_dir)
    assert "node" in str(failure.value).lower() and "7" in str(failure.value)
    assert _broker_processes(data_dir) == []


def mbd(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "infra.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_starts_reports_and_stops_the_broker(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "kafka", str(broker.free_port())
    started = mbd("broker", "start", "--port", port, "--data-dir", str(data_dir))
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        status = mbd("broker", "status", "--data-dir", str(data_dir))
        assert status.returncode == 0 and "answering" in status.stdout
    finally:
        stopped = mbd("broker", "stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _broker_processes(data_dir) == []
    assert mbd("broker", "status", "--data-dir", str(data_dir)).returncode == 3
