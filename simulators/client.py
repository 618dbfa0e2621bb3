"""Posting batches to the gateway the way a well-behaved phone does.

429 and 503 (and connection failures) mean "not stored yet": the client waits — Retry-After
when the gateway gives one, else exponential backoff with jitter — and resends the very same
batch (same ``batch_seq``). Other 4xx are final and counted by reason. Everything that happened
is tallied in :class:`SendStats`, including the exact set of batches answered 202.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from simulators.phone import Batch

log = logging.getLogger(__name__)
RETRYABLE = {429, 502, 503, 504}


@dataclass
class SendStats:
    sent: int = 0  # distinct batches handed to the client (resends not counted)
    accepted: int = 0  # 202 answers, resends included
    accepted_readings: int = 0
    accepted_keys: set[tuple[str, int]] = field(default_factory=set)
    rejected: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    retried_by_status: Counter[str] = field(default_factory=Counter)
    given_up: int = 0
    in_flight: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "accepted_distinct": len(self.accepted_keys),
            "accepted_readings": self.accepted_readings,
            "rejected": dict(self.rejected),
            "retried": self.retried,
            "retried_by_status": dict(self.retried_by_status),
            "given_up": self.given_up,
        }


def _rejection_reason(status: int, body: bytes) -> str:
    try:
        problems = json.loads(body).get("problems") or []
    except (ValueError, AttributeError):
        problems = []
    first = problems[0].get("field", "") if problems and isinstance(problems[0], dict) else ""
    return f"{status} {first}".strip()


def wait_until_ready(base_url: str, *, timeout_s: float = 30.0) -> None:
    """Block until the gateway's /readyz answers 200 (broker reachable), or raise TimeoutError."""
    import httpx  # a plain blocking probe, for scripts and tests that start a gateway

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url.rstrip('/')}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"gateway at {base_url} not ready within {timeout_s:g} s")


class GatewayClient:
    def __init__(
        self,
        base_url: str,
        tokens: dict[str, str],
        *,
        max_connections: int = 200,
        give_up_after_s: float = 120.0,
        max_backoff_s: float = 10.0,
        timeout_s: float = 15.0,
        keep_latencies: bool = False,
    ) -> None:
        self.tokens = tokens
        self.give_up_after_s = give_up_after_s
        self.max_backoff_s = max_backoff_s
        self.keep_latencies = keep_latencies
        self.stats = SendStats()
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp: httpx's connection pool serialises badly beyond a few dozen connections.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            base = float(retry_after)
        else:
            base = min(self.max_backoff_s, 0.25 * 2**attempt)
        return base * random.uniform(0.8, 1.3)  # jitter: phones must not retry in lockstep

    async def send(self, batch: Batch, *, resend: bool = False) -> bool:
        """Post until the gateway accepts or finally rejects the batch; True when accepted."""
        stats = self.stats
        if not resend:
            stats.sent += 1
        headers = {
            "Authorization": f"Bearer {self.tokens[batch.body['device_id']]}",
            "Content-Type": "application/json",
        }
        deadline = time.monotonic() + self.give_up_after_s
        attempt = 0
        stats.in_flight += 1
        url = f"{self.base_url}/v1/readings"
        body = json.dumps(batch.body).encode()
        try:
            while True:
                status: int | None = None
                retry_after: str | None = None
                started = time.perf_counter()
                try:
                    async with self._http().post(url, data=body, headers=headers) as response:
                        status, answer = response.status, await response.read()
                        retry_after = response.headers.get("Retry-After")
                except (aiohttp.ClientError, TimeoutError) as error:
                    answer = type(error).__name__.encode()
                if status == 202:
                    stats.accepted += 1
                    stats.accepted_readings += batch.readings
                    stats.accepted_keys.add(batch.key)
                    if self.keep_latencies:
                        stats.latencies_s.append(time.perf_counter() - started)
                    return True
                if status is not None and status not in RETRYABLE:
                    stats.rejected[_rejection_reason(status, answer)] += 1
                    return False
                wait_s = self._backoff(attempt, retry_after)
                if time.monotonic() + wait_s > deadline:
                    stats.given_up += 1
                    log.warning("gave up on %s after %d attempts", batch.key, attempt + 1)
                    return False
                stats.retried += 1
                stats.retried_by_status[str(status) if status else answer.decode()] += 1
                attempt += 1
                await asyncio.sleep(wait_s)
        finally:
            stats.in_flight -= 1
