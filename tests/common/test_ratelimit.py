"""Per-device token buckets."""

from __future__ import annotations

from common.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate_per_device() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5  # one token takes 1/rate seconds
    assert limiter.acquire("b") == 0.0  # other phones are not affected
    clock.now = 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.retry_after_header(0.2) == "1"
    assert limiter.retry_after_header(2.1) == "3"


def _take(path: str, count: int, queue) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    limiter = RateLimiter(rate=0.001, burst=10, path=Path(path))
    queue.put(sum(limiter.acquire("phone-1") == 0.0 for _ in range(count)))


def test_processes_sharing_the_file_share_the_buckets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    path = str(tmp_path / "gateway.rates")
    workers = [context.Process(target=_take, args=(path, 10, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    allowed = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sum(allowed) == 10, allowed  # one burst in all, not one per process


def test_a_refilled_slot_is_free_for_another_key_and_a_full_table_still_limits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, slots=4, probe=4, clock=clock)
    for key in "abcd":
        assert limiter.acquire(key) == 0.0
    # Every slot holds a bucket that is not full: a fifth key takes the stalest one.
    assert limiter.acquire("e") == 0.0
    assert limiter.acquire("e") == 0.0
    assert limiter.acquire("e") > 0  # its own bucket, limited like any other
    clock.now = 10.0  # every bucket refilled: their slots are free again
    for key in "fghi":
        assert limiter.acquire(key) == 0.0
