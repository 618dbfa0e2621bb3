"""Reading a lake back and accounting for every sample sent into it (integration and e2e)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd

from common.kafka import make_consumer
from common.lake import QUARANTINE, WINDOWS, open_table, table_uri
from common.settings import KafkaSettings, LakeSettings


def read_table(uri: str | Path, *, version: int | None = None) -> pd.DataFrame:
    """The current rows of a Delta table (an empty frame where there is none)."""
    table = open_table(str(uri), version=version)
    return pd.DataFrame() if table is None else table.to_pandas()


def read_lake(lake: LakeSettings | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lake's windows and quarantine, as pandas frames."""
    if isinstance(lake, Path):
        lake = LakeSettings(uri=str(lake))
    return read_table(table_uri(lake, WINDOWS)), read_table(table_uri(lake, QUARANTINE))


def reconcile(sent: list[dict], windows: pd.DataFrame, quarantine: pd.DataFrame) -> dict:
    """Where every accepted accelerometer sample went; prints and returns the counts.

    A sample is in a window when a window (or a quarantined one) of its phone spans its time and
    lists its batch; or it was quarantined alone (with its batch and time).
    """
    spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    windowed = [windows] if len(windows) else []
    if len(quarantine):
        windowed.append(quarantine[quarantine["window_start_ms"].notna()])
    for frame in windowed:
        for device, start, end, seqs in zip(frame["device_id"], frame["window_start_ms"],
                                            frame["window_end_ms"], frame["batch_seqs"],
                                            strict=True):  # fmt: skip
            for seq in seqs:
                spans[(device, int(seq))].append((int(start), int(end)))
    if not len(quarantine):
        quarantine = pd.DataFrame({"device_id": [], "batch_seq": [], "t": []})
    single = set(
        zip(quarantine["device_id"], quarantine["batch_seq"], quarantine["t"], strict=True)
    )
    counts = {"samples": 0, "in_a_window": 0, "quarantined_alone": 0, "unaccounted": 0}
    for body in sent:
        device, seq = body["device_id"], body["batch_seq"]
        for sample in body["accel"]:
            counts["samples"] += 1
            t = sample["t"]
            if (device, seq, t) in single:
                counts["quarantined_alone"] += 1
            elif any(s <= t < e for s, e in spans[(device, seq)]):
                counts["in_a_window"] += 1
            else:
                counts["unaccounted"] += 1
    print("reconciliation:", json.dumps(counts))  # noqa: T201 - the figure the issue asks for
    return counts


def batches_in_kafka(
    kafka: KafkaSettings, wanted: set[tuple[str, int]], *, skip_key: bytes | None = None
) -> dict[tuple[str, int], dict]:
    """The first record body of each ``(device_id, batch_seq)`` of ``wanted`` in the readings
    topic (records keyed ``skip_key`` are not the gateway's and are passed over)."""
    consumer = make_consumer(kafka, kafka.readings_topic, group_id=None, consumer_timeout_ms=10_000)
    found: dict[tuple[str, int], dict] = {}
    try:
        for record in consumer:
            if skip_key is not None and record.key == skip_key:
                continue
            body = json.loads(record.value)
            key = (body["device_id"], body["batch_seq"])
            if key in wanted:
                found.setdefault(key, body)
                if len(found) == len(wanted):
                    break
    finally:
        consumer.close()
    return found
