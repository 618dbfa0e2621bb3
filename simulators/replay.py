"""Replaying a labelled dataset in the WISDM raw format as a fleet of phones.

WISDM's raw files hold one reading a line: ``user,activity,timestamp,x,y,z;``. Each user becomes
one phone (``wisdm-<user>``); its readings are cut into batches of ``interval_s`` and sent at
real time or ``speed`` times faster. Timestamps may be nanoseconds (WISDM v1.1, since phone
boot) or milliseconds; they are rebased onto the present so the gateway sees recent event times
with the recording's own spacing. Activity names go through a label map and must end in the
configured class list.

A line that cannot be a reading the gateway accepts (too many fields, a number that is not one,
a time past the wire's bounds, an acceleration no phone reads, bytes that are not UTF-8) is
skipped and counted by reason, with the numbers of its first lines: a dataset of a million lines
with a few bad ones still replays, and the summary says which lines to look at.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from common.schema import ECHO_CHARS, MAX_ABS_ACCEL, MAX_EPOCH_MS, MAX_INT64, DeviceId
from simulators.client import GatewayClient, SendStats
from simulators.phone import Batch

NS_THRESHOLD = 10**13  # above this a timestamp is nanoseconds: as ms it would be past year 2286
DEVICE_PREFIX = "wisdm-"
LINES_NAMED = 5  # line numbers kept per reason for the summary
_DEVICE_ID = TypeAdapter(DeviceId)


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
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)  # the first few, by reason

    @property
    def readings(self) -> int:
        return sum(len(readings) for readings in self.readings_by_user.values())

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        lines = self.skipped_lines.setdefault(reason, [])
        if len(lines) < LINES_NAMED:
            lines.append(line)

    def skip_summary(self) -> list[str]:
        """One line per reason: ``skipped N lines, REASON (lines 3, 9, ...)``."""
        summary = []
        for reason, count in self.skipped.most_common():
            lines = self.skipped_lines.get(reason, [])
            where = ", ".join(str(n) for n in lines) + (", ..." if count > len(lines) else "")
            noun = "line" if count == 1 else "lines"
            summary.append(f"skipped {count} {noun}, {reason} ({noun} {where})")
        return summary


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


def _short(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def _axes(values: list[str]) -> tuple[float, float, float] | str:
    """x, y, z in m/s², or why the line has none the gateway would take."""
    try:
        x, y, z = (float(value) for value in values)
    except ValueError:
        return "axis not a number"
    if not all(math.isfinite(v) and abs(v) <= MAX_ABS_ACCEL for v in (x, y, z)):
        return f"axis beyond ±{MAX_ABS_ACCEL:.0f} m/s² or not finite"
    return x, y, z


def _time_ms(stamp: str) -> int | str:
    """The reading's time in the recording's own milliseconds, or why it has none."""
    try:
        timestamp = int(stamp)
    except ValueError:
        return "timestamp not an integer"
    # Past these no time survives rebasing: an int64 or a date after 2100 (a 30-digit number).
    if not 0 < timestamp <= MAX_INT64 or to_ms(timestamp) > MAX_EPOCH_MS:
        return "timestamp out of range"
    return to_ms(timestamp)


def parse_wisdm(
    lines: Iterable[str | bytes], classes: tuple[str, ...], label_map: dict[str, str] | None = None,
    *, device_prefix: str = DEVICE_PREFIX,
) -> ParsedDataset:  # fmt: skip
    """Readings per user, in time order; lines that give none counted in ``skipped`` by reason.

    ``lines`` may be bytes (as read from the file), which must be UTF-8.
    """
    label_map = label_map or {}
    wanted = {name.lower(): name for name in classes}
    dataset = ParsedDataset()
    by_user: dict[str, list[Reading]] = defaultdict(list)
    usable_user: dict[str, bool] = {}
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                dataset.skip("not UTF-8", number)
                continue
        for record in line.strip().split(";"):
            record = record.strip().rstrip(",")
            if not record:
                continue
            fields = [part.strip() for part in record.split(",")]
            if len(fields) != 6:
                dataset.skip(f"{len(fields)} fields, expected 6", number)
                continue
            user, activity, stamp, *values = fields
            label = label_map.get(activity.lower(), activity)
            if label.lower() not in wanted:
                dataset.skip(f"activity {_short(activity)!r} not in the class list", number)
                continue
            if user not in usable_user:
                usable_user[user] = _usable_device_id(f"{device_prefix}{user}")
            if not usable_user[user]:
                dataset.skip("user not usable in a device id", number)
                continue
            t_ms, axes = _time_ms(stamp), _axes(values)
            if isinstance(t_ms, str) or isinstance(axes, str):
                dataset.skip(t_ms if isinstance(t_ms, str) else str(axes), number)
                continue
            by_user[user].append(Reading(user, wanted[label.lower()], t_ms, *axes))
    for user, readings in by_user.items():
        readings.sort(key=lambda reading: reading.t_ms)
        dataset.readings_by_user[user] = readings
    return dataset


def _usable_device_id(device_id: str) -> bool:
    try:
        _DEVICE_ID.validate_python(device_id)
    except ValidationError:
        return False
    return True


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
    device_prefix: str = DEVICE_PREFIX,
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
    with path.open("rb") as lines:  # decoded line by line: a bad byte costs its line only
        return parse_wisdm(lines, classes, label_map)
