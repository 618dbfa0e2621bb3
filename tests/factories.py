"""Small builders of wire-format batches for tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def batch_body(
    device_id: str,
    batch_seq: int,
    *,
    samples: int = 40,
    start_ms: int | None = None,
    label: str | None = "walking",
    rate_hz: int = 20,
) -> dict[str, Any]:
    """A valid batch: ``samples`` accelerometer readings at ``rate_hz`` and one GPS fix."""
    start_ms = start_ms if start_ms is not None else int(time.time() * 1000) - 2000
    step = 1000 // rate_hz
    body: dict[str, Any] = {
        "device_id": device_id,
        "batch_seq": batch_seq,
        "sent_at": datetime.fromtimestamp((start_ms + samples * step) / 1000, UTC).isoformat(),
        "accel": [
            {"t": start_ms + i * step, "x": 0.1 * i, "y": 9.81 - 0.01 * i, "z": -0.5 + 0.02 * i}
            for i in range(samples)
        ],
        "gps": [{"t": start_ms, "lat": 53.35 + batch_seq * 1e-5, "lon": -6.26, "acc_m": 5.0}],
    }
    if label is not None:
        body["label"] = label
    return body
