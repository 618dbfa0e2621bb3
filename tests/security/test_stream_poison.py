"""Poison on the real topic: the streaming job reads ~1,000 hostile records beside a fleet's.

The job runs as ``mbd stream`` does (Spark's Kafka source, the per-device step in Spark's Python
workers, the lake writer). It must drain without failing, quarantine every hostile record with
its reason (counted in its status), window none of them, and account for every sample the fleet
sent. The kinds are those of ``test_stream_hostile_records`` that fit in one Kafka record.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from common.kafka import make_producer
from common.settings import KafkaSettings
from simulators.phone import FaultRates
from streaming import job
from tests.integration.conftest import authenticated_clients, kafka_broker  # noqa: F401
from tests.integration.test_stream_lake import produce_fleet, read_lake, stream_settings
from tests.lake import reconcile
from tests.security.test_stream_hostile_records import (
    BAD_INGEST_HEADERS,
    BROKEN_BEFORE,
    HANDLED_BEFORE,
    HOSTILE,
    body,
    encoded,
    headers,
)

pytestmark = pytest.mark.integration
HOSTILE_RECORDS = 1000
FITS_A_RECORD = 900_000  # the broker's default limit is 1 MiB a record


def hostile_records() -> list[tuple[bytes | None, list, str]]:
    """(value, headers, reason) of every kind that fits a record, repeated up to 1,000 records,
    each from its own phone so that none is dropped as a resend of another."""
    kinds = [(value, headers(), reason) for _, value, reason in BROKEN_BEFORE + HANDLED_BEFORE]
    late = encoded(body(t0=4_070_908_800_000 - 60_000))
    kinds += [(late, headers(header), "ingest time invalid") for _, header in BAD_INGEST_HEADERS]
    kinds = [kind for kind in kinds if kind[0] is None or len(kind[0]) < FITS_A_RECORD]
    records = []
    for i in range(HOSTILE_RECORDS):
        value, record_headers, reason = kinds[i % len(kinds)]
        if value is not None:
            value = value.replace(HOSTILE.encode(), f"hostile-{i:04d}".encode())
        records.append((value, record_headers, reason))
    return records


def test_the_job_quarantines_poison_and_keeps_the_fleets_windows(
    spark,
    kafka_broker: KafkaSettings,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    topic = f"readings.{uuid.uuid4().hex[:8]}"
    sent, _ = produce_fleet(kafka_broker, topic, devices=4, batches=15, faults=FaultRates())
    poison = hostile_records()
    producer = make_producer(kafka_broker)
    for value, record_headers, _ in poison:
        producer.send(topic, key=b"poison", value=value, headers=record_headers)
    producer.flush(timeout=60)
    producer.close()

    settings = stream_settings(kafka_broker, topic, tmp_path)
    query = job.start(spark, settings, available_now=True)
    job.wait_until_drained(query)  # raises what failed the query

    windows, quarantine = read_lake(settings.lake)
    fleet = {batch["device_id"] for batch in sent}
    assert set(windows["device_id"]) == fleet  # every phone of the fleet, and nothing else
    assert reconcile(sent, windows, quarantine)["unaccounted"] == 0
    # The fleet's one bad record (produce_fleet's) aside, every quarantined row is poison's.
    from_poison = quarantine[~quarantine["device_id"].isin(fleet)]
    assert len(from_poison) >= HOSTILE_RECORDS
    assert from_poison["raw"].fillna("").str.len().max() <= 1024
    status = json.loads(settings.status_file.read_text())
    counted = {key.removeprefix("quarantined."): n for key, n in status["totals"].items()
               if key.startswith("quarantined.")}  # fmt: skip
    expected = {reason for _, _, reason in poison}
    assert expected <= set(counted), expected - set(counted)
    assert sum(counted.values()) == len(quarantine)
