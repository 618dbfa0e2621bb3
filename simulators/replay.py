"""Replaying a labelled dataset in the WISDM raw format as a fleet of phones.

WISDM's raw files hold one reading a line: ``user,activity,timestamp,x,y,z;``. Each user becomes
one phone (``wisdm-<user>``); its readings are cut into batches of ``interval_s`` and sent at
real time or ``speed`` times faster. Timestamps may be nanoseconds (WISDM v1.1, since phone
boot) or milliseconds; they are rebased onto the present so the gateway sees recent event times
with the recording's own spacing. Activity names go through a label map and must end in the
configured class list; lines that do not parse are skipped and counted by reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.client import GatewayClient, SendStats
from simulators.phone import Batch

NS_THRESHOLD = 10**13  # above this a timestamp is nanoseconds: as ms it would be past year 2286


@dataclass(frozen=True)
class Reading:
    user: str
    label: str
    t_ms: int
    x: float
    y: float
    z: float


@dataclass
class ParsedDataset:
    readings_by_user: dict[str, list[Reading]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def readings(self) -> int:
        return sum(len(readings) for readings in self.readings_by_user.values())


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"A=walking,B=jogging"`` → ``{"a": "walking", "b": "jogging"}`` (keys case-insensitive)."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"label map entry {item!r} is not SOURCE=CLASS")
        mapping[source.strip().lower()] = target.strip()
    return mapping


def to_ms(timestamp: int) -> int:
    return timestamp // 1_000_000 if timestamp > NS_THRESHOLD else timestamp


def parse_wisdm(
    lines: Iterable[str], classes: tuple[str, ...], label_map: dict[str, str] | None = None
) -> ParsedDataset:
    """Readings per user, in time order; malformed lines counted in ``skipped`` by reason."""
    label_map = label_map or {}
    wanted = {name.lower(): name for name in classes}
    dataset = ParsedDataset()
    by_user: dict[str, list[Reading]] = defaultdict(list)
    for line in lines:
        for record in line.strip().split(";"):
            record = record.strip().rstrip(",")
            if not record:
                continue
            fields = [part.strip() for part in record.split(",")]
            if len(fields) != 6:
                dataset.skipped[f"{len(fields)} fields, expected 6"] += 1
                continue
            user, activity, stamp, *axes = fields
            label = label_map.get(activity.lower(), activity)
            if label.lower() not in wanted:
                dataset.skipped[f"activity {activity!r} not in the class list"] += 1
                continue
            try:
                t_ms = to_ms(int(stamp))
                x, y, z = (float(axis) for axis in axes)
            except ValueError:
                dataset.skipped["unparseable timestamp or axis"] += 1
                continue
            if t_ms <= 0:
                dataset.skipped["timestamp not positive"] += 1
                continue
            by_user[user].append(Reading(user, wanted[label.lower()], t_ms, x, y, z))
    for user, readings in by_user.items():
        readings.sort(key=lambda reading: reading.t_ms)
        dataset.readings_by_user[user] = readings
    return dataset


def user_batches(
    readings: list[Reading], *, device_id: str, interval_s: float, event_offset_ms: int
) -> list[tuple[int, Batch]]:
    """(offset ms from the recording's start, batch) pairs; a batch never mixes activities."""
    batches: list[tuple[int, Batch]] = []
    interval_ms = int(interval_s * 1000)
    first = readings[0].t_ms
    current: list[Reading] = []

    def close() -> None:
        if not current:
            return
        end_offset = current[-1].t_ms - first
        body: dict[str, Any] = {
            "device_id": device_id,
            "batch_seq": len(batches),
            "sent_at": datetime.fromtimestamp((current[-1].t_ms + event_offset_ms) / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "label": current[0].label,
            "accel": [
                {"t": r.t_ms + event_offset_ms, "x": r.x, "y": r.y, "z": r.z} for r in current
            ],
            "gps": [],
        }
        batches.append((end_offset, Batch(body=body, activity=current[0].label)))
        current.clear()

    for reading in readings:
        if current and (
            reading.label != current[0].label or reading.t_ms - current[0].t_ms >= interval_ms
        ):
            close()
        current.append(reading)
    close()
    return batches


async def replay(
    dataset: ParsedDataset,
    client: GatewayClient,
    *,
    speed: float = 1.0,
    interval_s: float = 2.0,
    device_prefix: str = "wisdm-",
) -> SendStats:
    """Send every user's batches, paced by the recording's own clock divided by ``speed``."""
    start_s = time.time()
    lengths = [r[-1].t_ms - r[0].t_ms for r in dataset.readings_by_user.values() if r]
    length_ms = max(lengths, default=0)
    # Event time = start - L(1 - 1/speed) + offset: never ahead of the wall clock when sent.
    base_ms = int(start_s * 1000 - length_ms * (1 - 1 / speed))

    async def one_user(user: str, readings: list[Reading]) -> None:
        offset = base_ms - readings[0].t_ms
        for end_offset, batch in user_batches(
            readings,
            device_id=f"{device_prefix}{user}",
            interval_s=interval_s,
            event_offset_ms=offset,
        ):
            await asyncio.sleep(max(0.0, start_s + end_offset / 1000 / speed - time.time()))
            await client.send(batch)

    await asyncio.gather(
        *(one_user(user, readings) for user, readings in dataset.readings_by_user.items())
    )
    return client.stats


def read_dataset(path: Path, classes: tuple[str, ...], label_map: dict[str, str]) -> ParsedDataset:
    with path.open(encoding="utf-8", errors="replace") as lines:
        return parse_wisdm(lines, classes, label_map)
