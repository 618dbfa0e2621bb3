"""Token-bucket rate limits per key (a phone, an API token) that hold across worker processes.

The buckets live in a fixed table of slots in a memory-mapped file, so every worker process
of a service that maps the same file draws on the same buckets; without a file the table is
anonymous memory and the limit is per process. Each slot holds the key's 64-bit hash, its
tokens and when they were counted (``CLOCK_MONOTONIC``, which every process on the machine
shares). A key lives in one of ``probe`` slots after its hash; a slot whose bucket has refilled
completely holds nothing a fresh bucket would not, so it is free for another key. One
``flock`` on the file serialises the read-modify-write of a slot between processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SLOT = struct.Struct("<Qdd")  # key hash (0 = empty), tokens, last update


def _key_hash(key: str) -> int:
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return digest or 1


class RateLimiter:
    """``rate`` requests/s per key with bursts up to ``burst``; shared through ``path``."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        path: Path | None = None,
        slots: int = 1 << 17,
        probe: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate, self.burst, self.slots, self.probe = rate, float(burst), slots, probe
        self._clock = clock
        self._thread_lock = threading.Lock()
        size = slots * _SLOT.size
        self._fd: int | None = None
        if path is None:
            self._map = mmap.mmap(-1, size)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)  # a new file, or one made for other settings
            self._map = mmap.mmap(self._fd, size)

    def close(self) -> None:
        self._map.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _full_at(self, tokens: float, last: float, now: float) -> bool:
        return tokens + (now - last) * self.rate >= self.burst

    def _find_slot(self, key: int, now: float) -> int:
        """The slot holding ``key``, else the first free one after its hash, else the stalest."""
        free, stalest, stalest_last = -1, -1, math.inf
        for step in range(self.probe):
            index = (key + step) % self.slots
            held, tokens, last = _SLOT.unpack_from(self._map, index * _SLOT.size)
            if held == key:
                return index
            if free < 0 and (held == 0 or self._full_at(tokens, last, now)):
                free = index
            if last < stalest_last:
                stalest, stalest_last = index, last
        return free if free >= 0 else stalest

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0 when allowed, else the seconds until one is available."""
        hashed = _key_hash(key)
        with self._thread_lock:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                index = self._find_slot(hashed, now)
                held, tokens, last = _SLOT.unpack_from(self._map, index * _SLOT.size)
                if held != hashed:
                    tokens, last = self.burst, now
                tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
                allowed = tokens >= 1.0
                if allowed:
                    tokens -= 1.0
                _SLOT.pack_into(self._map, index * _SLOT.size, hashed, tokens, now)
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
