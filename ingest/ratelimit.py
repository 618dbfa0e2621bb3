"""Per-phone rate limiting: a token bucket for each device, refilled continuously."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class DeviceRateLimiter:
    """Allows ``rate`` requests/s per device with bursts up to ``burst``.

    Memory grows with the number of distinct devices seen, which the device registry bounds.
    """

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, device_id: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, last = self._buckets.get(device_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[device_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[device_id] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
