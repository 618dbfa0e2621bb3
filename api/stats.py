"""Pipeline rates for the dashboard: the gateway's, the streaming job's and this API's own.

- The gateway's accepted batches and readings per second come from its Prometheus
  ``/metrics`` (two counters), scraped at most every ``min_interval_s`` with a short timeout;
  the rate is the difference between two scrapes.
- The streaming job writes its last micro-batch's progress to a JSON status file
  (``StreamSettings.status_file``, see ``streaming/job.py``); it is read as is, with its age.
- Predictions read from Kafka per second are counted here by :class:`RateMeter`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

GATEWAY_COUNTERS = {
    "mbd_gateway_accepted_batches": "batches",
    "mbd_gateway_accepted_readings": "readings",
}


class RateMeter:
    """Events per second over the last ``span_s`` seconds."""

    def __init__(self, span_s: float = 10.0) -> None:
        self.span_s = span_s
        self.total = 0
        self._marks: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += count
            self._marks.append((now, self.total))
            while len(self._marks) > 2 and now - self._marks[0][0] > self.span_s:
                self._marks.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            if not self._marks or now - self._marks[-1][0] > self.span_s:
                return 0.0
            first_t, first_total = self._marks[0]
            if len(self._marks) == 1:
                return 0.0
            return (self.total - first_total) / max(now - first_t, 1e-3)


MAX_STATUS_BYTES = 1 << 20  # a status is a few kB; anything larger is not the stream's


def read_stream_status(path: Path) -> dict[str, Any]:
    """The streaming job's last progress report and its age, or why there is none."""
    try:
        if path.stat().st_size > MAX_STATUS_BYTES:
            return {"available": False, "reason": f"{path} is over {MAX_STATUS_BYTES} bytes"}
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"available": False, "reason": f"no status file at {path} (is `mbd stream` up?)"}
    except (OSError, ValueError) as error:
        return {"available": False, "reason": f"{path} is unreadable: {error}"}
    if not isinstance(status, dict):
        return {"available": False, "reason": f"{path} holds no JSON object"}
    updated = status.get("updated_at")
    age = time.time() - updated if isinstance(updated, int | float) else None
    return {"available": True, "age_s": None if age is None else round(age, 1), **status}


def parse_gateway_counters(text: str) -> dict[str, float]:
    """The gateway's accepted-batch and accepted-reading totals from its Prometheus text."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = GATEWAY_COUNTERS.get(family.name)
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[name] = float(sample.value)
    return totals


class GatewayRate:
    """Accepted batches and readings per second at the gateway, from two scrapes."""

    def __init__(
        self,
        url: str | None,
        *,
        min_interval_s: float = 2.0,
        timeout_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._transport = transport
        self.min_interval_s, self.timeout_s = min_interval_s, timeout_s
        self._last: tuple[float, dict[str, float]] | None = None
        self._rates: dict[str, float] = {}
        self._error: str | None = None if url else "no gateway URL configured"
        self._lock = threading.Lock()

    async def current(self) -> dict[str, Any]:
        if self.url is None:
            return {"available": False, "reason": self._error}
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= self.min_interval_s:
            await self._scrape(now)
        with self._lock:
            if self._error:
                return {"available": False, "url": self.url, "reason": self._error}
            per_s = {f"{name}_per_s": round(value, 2) for name, value in self._rates.items()}
            totals = self._last[1] if self._last else {}
            return {"available": True, "url": self.url, **per_s, "totals": totals}

    async def _scrape(self, now: float) -> None:
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_s, transport=self._transport
            ) as client:
                response = await client.get(f"{self.url}/metrics")
                response.raise_for_status()
            totals = parse_gateway_counters(response.text)
        except (httpx.HTTPError, ValueError) as error:
            with self._lock:
                reason = str(error) or type(error).__name__
                self._error = f"gateway metrics at {self.url}/metrics: {reason}"
                self._last = (now, {})
            return
        with self._lock:
            if self._last and self._last[1]:
                elapsed = now - self._last[0]
                self._rates = {
                    name: max(0.0, (value - self._last[1].get(name, 0.0)) / elapsed)
                    for name, value in totals.items()
                }
            self._last, self._error = (now, totals), None
