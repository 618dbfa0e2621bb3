"""The latest prediction per phone, in bounded memory: what the device endpoints answer from.

One entry per phone, replaced only by a prediction for a later window (records may arrive
out of order across partitions or after a replay). Entries are kept in the order they were
last updated, so the least recently updated phone is evicted first when there are more than
``max_devices``, and phones silent for longer than ``ttl_s`` are forgotten, as are erased
phones (``erased`` names them; checked every ``erased_check_s``). Thread-safe: the Kafka
consumer thread writes while request handlers read.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from common.schema import Prediction


@dataclass(frozen=True)
class DeviceActivity:
    """A phone's latest prediction and when this API received it (epoch seconds)."""

    prediction: Prediction
    received_at: float


@dataclass(frozen=True)
class DevicePage:
    items: list[DeviceActivity]
    total: int
    activities: dict[str, int]  # phones per activity over the whole selection, not the page
    more: bool  # phones after the last item of this page


class LatestPredictions:
    """Latest prediction per device, at most ``max_devices`` of them, none older than ``ttl_s``."""

    def __init__(
        self,
        *,
        max_devices: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        on_evict: Callable[[int], None] | None = None,
        erased: Callable[[], frozenset[str]] | None = None,
        erased_check_s: float = 2.0,
    ) -> None:
        if max_devices < 1:
            raise ValueError(f"max_devices must be >= 1, got {max_devices}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.max_devices, self.ttl_s = max_devices, ttl_s
        self._clock = clock
        self._on_evict = on_evict
        self._entries: OrderedDict[str, DeviceActivity] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self._erased_source, self._erased_check_s = erased, erased_check_s
        self._erased: frozenset[str] = frozenset()
        self._erased_checked = -math.inf

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, prediction: Prediction) -> bool:
        """Keep ``prediction`` unless the phone already has one for a later window (or was
        erased)."""
        now = self._clock()
        if prediction.device_id in self.erased():
            return False
        with self._lock:
            known = self._entries.get(prediction.device_id)
            if known is not None and known.prediction.window_end_ms > prediction.window_end_ms:
                return False
            self._entries[prediction.device_id] = DeviceActivity(prediction, now)
            self._entries.move_to_end(prediction.device_id)
            evicted = self._evict(now)
        if evicted and self._on_evict:
            self._on_evict(evicted)
        return True

    def erased(self) -> frozenset[str]:
        """The erased phones, asked again after ``erased_check_s``; their entries go."""
        if self._erased_source is None:
            return self._erased
        now = time.monotonic()
        if now - self._erased_checked >= self._erased_check_s:
            self._erased_checked = now
            for device_id in self._erased_source() - self._erased:
                self.forget(device_id)
        return self._erased

    def forget(self, device_id: str) -> bool:
        """Drop the phone's entry and refuse its predictions from now on (an erasure); False
        if it had no entry."""
        with self._lock:
            self._erased = self._erased | {device_id}
            return self._entries.pop(device_id, None) is not None

    def _evict(self, now: float) -> int:
        """Drop the oldest entries: silent past the TTL, then any over the limit."""
        evicted = 0
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if len(self._entries) <= self.max_devices and now - oldest.received_at <= self.ttl_s:
                break
            self._entries.popitem(last=False)
            evicted += 1
        self.evicted += evicted
        return evicted

    def expire(self) -> int:
        """Forget phones silent past the TTL (called periodically when no records arrive)."""
        with self._lock:
            evicted = self._evict(self._clock())
        if evicted and self._on_evict:
            self._on_evict(evicted)
        return evicted

    def get(self, device_id: str) -> DeviceActivity | None:
        self.erased()
        entry = self._entries.get(device_id)
        if entry is None or self._clock() - entry.received_at > self.ttl_s:
            return None
        return entry

    def page(
        self,
        *,
        within_s: float | None = None,
        offset: int = 0,
        limit: int = 100,
        after: str | None = None,
    ) -> DevicePage:
        """Phones heard from within ``within_s`` (default: the TTL), ordered by device id,
        from the one after ``after`` (a cursor: the last id of the page before), skipping
        ``offset``. Only the page is ordered, not every phone."""
        self.erased()
        horizon = self._clock() - min(within_s if within_s is not None else self.ttl_s, self.ttl_s)
        with self._lock:
            recent = [entry for entry in self._entries.values() if entry.received_at >= horizon]
        mix = Counter(entry.prediction.activity for entry in recent)
        following = (
            recent if after is None else [e for e in recent if e.prediction.device_id > after]
        )
        wanted = offset + limit
        first = heapq.nsmallest(wanted, following, key=lambda entry: entry.prediction.device_id)
        return DevicePage(
            items=first[offset:],
            total=len(recent),
            activities=dict(mix),
            more=len(following) > wanted,
        )
