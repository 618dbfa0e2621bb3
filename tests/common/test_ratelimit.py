"""Per-device token buckets."""

from __future__ import annotations

from ingest.ratelimit import DeviceRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate_per_device() -> None:
    clock = FakeClock()
    limiter = DeviceRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5  # one token takes 1/rate seconds
    assert limiter.acquire("b") == 0.0  # other phones are not affected
    clock.now = 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.retry_after_header(0.2) == "1"
    assert limiter.retry_after_header(2.1) == "3"
