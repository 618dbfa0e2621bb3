"""Baseline: raw kafka-python producer throughput against the real Apache Kafka broker.

~1 KB records, acks=all, idempotent, under a few producer settings. Later benchmarks divide their
figures by ``baseline_records_per_s`` measured here. Starts its own broker in a temporary folder
unless ``--bootstrap`` names one. The last line printed is one JSON object.

    python bench/kafka_producer.py [--records 50000] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.kafka import ensure_topics, make_producer
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from common.topics import TopicSpec
from infra import broker
from infra.jars import ensure_jars

RECORD_BYTES = 1024
PRODUCER_SETTINGS: dict[str, dict[str, Any]] = {
    "default (linger 5 ms, 16 KiB batches)": {"linger_ms": 5, "batch_size": 16384},
    "no linger, 16 KiB batches": {"linger_ms": 0, "batch_size": 16384},
    "linger 20 ms, 256 KiB batches": {"linger_ms": 20, "batch_size": 262144},
    "linger 20 ms, 256 KiB, lz4": {
        "linger_ms": 20,
        "batch_size": 262144,
        "compression_type": "lz4",
    },
}


@contextmanager
def running_broker(
    bootstrap: str | None, *, authentication: bool = True
) -> Iterator[KafkaSettings]:
    """The broker at ``bootstrap`` (``MBD_KAFKA_*`` say how to log in), or a new one in a
    temporary folder, authenticating its clients unless ``authentication`` is False."""
    if bootstrap:
        yield KafkaSettings(bootstrap_servers=bootstrap)
        return
    jvm = JvmSettings()
    ensure_jars(jvm)
    with tempfile.TemporaryDirectory(prefix="mbd-bench-kafka-") as tmp:
        settings = BrokerSettings(
            port=broker.free_port(), data_dir=Path(tmp), authentication=authentication,
            secrets_dir=Path(tmp) / "secrets",
        )  # fmt: skip
        broker.start(settings, jvm)
        try:
            yield broker.client_settings(Path(tmp))
        finally:
            broker.stop(Path(tmp))


def measure_producer(
    kafka: KafkaSettings, *, records: int, record_bytes: int = RECORD_BYTES, **overrides: Any
) -> dict[str, float]:
    """Send ``records`` records of ``record_bytes`` to a new topic, acks=all; wait for every ack."""
    topic = f"bench.{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka, [TopicSpec(name=topic, partitions=4)])
    # Random payload: realistic for compression, and not something the broker can dedupe.
    payloads = [os.urandom(record_bytes // 2).hex().encode() for _ in range(256)]
    keys = [f"phone-{i:06d}".encode() for i in range(1000)]
    producer = make_producer(kafka, **overrides)
    try:
        producer.send(topic, key=b"warmup", value=payloads[0]).get(timeout=30)
        started = time.perf_counter()
        for i in range(records):
            producer.send(topic, key=keys[i % len(keys)], value=payloads[i % len(payloads)])
        producer.flush(timeout=300)
        elapsed = time.perf_counter() - started
    finally:
        producer.close()
    return {
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed, 1),
        "mb_per_s": round(records * record_bytes / elapsed / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with running_broker(args.bootstrap) as kafka:
        for name, overrides in PRODUCER_SETTINGS.items():
            results[name] = measure_producer(kafka, records=args.records, **overrides)
            print(f"{name}: {json.dumps(results[name])}", flush=True)

    default = results[next(iter(PRODUCER_SETTINGS))]["records_per_s"]
    best_name = max(results, key=lambda name: results[name]["records_per_s"])
    for figures in results.values():
        figures["ratio_to_default"] = round(figures["records_per_s"] / default, 2)
    summary = {
        "benchmark": "kafka_producer",
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
        "record_bytes": RECORD_BYTES,
        "acks": "all",
        "settings": results,
        "baseline_setting": best_name,
        "baseline_records_per_s": results[best_name]["records_per_s"],
        "baseline_mb_per_s": results[best_name]["mb_per_s"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
