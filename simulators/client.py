"""Posting batches to the gateway the way a well-behaved phone does.

429 and 503 (and connection failures) mean "not stored yet": the client waits — Retry-After
when the gateway gives one, else exponential backoff with jitter — and resends the very same
batch (same ``batch_seq``). Other 4xx are final and counted by reason. Everything that happened
is tallied in :class:`SendStats`, including the exact set of batches answered 202.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

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


def _rejection_reason(response: httpx.Response) -> str:
    try:
        problems = response.json().get("problems") or []
    except ValueError:
        problems = []
    first = problems[0]["field"] if problems else ""
    return f"{response.status_code} {first}".strip()


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
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
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
        try:
            while True:
                response: httpx.Response | None = None
                started = time.perf_counter()
                try:
                    response = await self._http.post(
                        "/v1/readings", json=batch.body, headers=headers
                    )
                    status = str(response.status_code)
                except httpx.TransportError as error:
                    status = type(error).__name__
                if response is not None and response.status_code == 202:
                    stats.accepted += 1
                    stats.accepted_readings += batch.readings
                    stats.accepted_keys.add(batch.key)
                    if self.keep_latencies:
                        stats.latencies_s.append(time.perf_counter() - started)
                    return True
                if response is not None and response.status_code not in RETRYABLE:
                    stats.rejected[_rejection_reason(response)] += 1
                    return False
                wait_s = self._backoff(attempt, response)
                if time.monotonic() + wait_s > deadline:
                    stats.given_up += 1
                    log.warning("gave up on %s after %d attempts", batch.key, attempt + 1)
                    return False
                stats.retried += 1
                stats.retried_by_status[status] += 1
                attempt += 1
                await asyncio.sleep(wait_s)
        finally:
            stats.in_flight -= 1
