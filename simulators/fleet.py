"""A fleet of simulated phones in one asyncio process, posting to the gateway in real time.

Each phone wakes every ``interval_s``, makes the batch for the interval just gone and sends it
— unless a fault says otherwise: offline phones buffer and come back with a burst, late batches
are held back, out-of-order ones go after the next, resent ones go twice. Start times are
spread over the first interval so the gateway sees a steady stream rather than a wave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.files import SECRET_MODE, write_secret
from ingest.devices import DeviceRegistry
from simulators.client import GatewayClient, SendStats
from simulators.phone import Batch, FaultRates, Phone

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    devices: int
    duration_s: float
    labelled_fraction: float = 0.2
    seed: int = 0
    interval_s: float = 2.0
    rate_hz: float = 20.0
    gps_hz: float = 1.0
    faults: FaultRates = field(default_factory=FaultRates)
    dwell_scale: float = 1.0
    device_prefix: str = "sim-phone-"

    def device_ids(self) -> list[str]:
        return [f"{self.device_prefix}{i:06d}" for i in range(self.devices)]


def provision_tokens(
    device_ids: list[str], tokens_file: Path, registry_file: Path
) -> dict[str, str]:
    """Tokens for ``device_ids``: those saved in ``tokens_file``, new ones issued for the rest.

    New tokens are registered in the gateway's device registry (which keeps only hashes) and
    saved to ``tokens_file`` so the next run reuses them.
    """
    saved: dict[str, str] = {}
    if tokens_file.is_file():
        if tokens_file.stat().st_mode & 0o077:  # written by an older mbd, readable by others
            log.warning("%s was readable by others; made it 0600", tokens_file)
            tokens_file.chmod(SECRET_MODE)
        saved = json.loads(tokens_file.read_text())
    registry = DeviceRegistry(registry_file)
    registry.refresh()
    known = {d for d in device_ids if d in saved and registry.device_for(saved[d]) == d}
    missing = [d for d in device_ids if d not in known]
    if missing:
        saved.update(registry.add(missing))
        write_secret(tokens_file, json.dumps(saved))
    return {d: saved[d] for d in device_ids}


@dataclass
class FleetTruth:
    """What the phones were really doing, for end-to-end checks.

    ``activity`` holds the latest activity per phone. With a ``timeline`` file, every change of
    a phone's activity is appended to it as a JSON line ``{"device_id", "from_ms", "activity",
    "labelled"}``, ``from_ms`` in the phone's own (possibly skewed) clock, as its samples carry.
    """

    activity: dict[str, str] = field(default_factory=dict)
    labelled: set[str] = field(default_factory=set)
    timeline: Path | None = None

    def observe(self, device_id: str, from_ms: int, activity: str) -> None:
        if self.activity.get(device_id) == activity:
            return
        self.activity[device_id] = activity
        if self.timeline is not None:
            line = {"device_id": device_id, "from_ms": from_ms, "activity": activity,
                    "labelled": device_id in self.labelled}  # fmt: skip
            with self.timeline.open("a") as out:
                out.write(json.dumps(line) + "\n")


async def _phone_life(
    phone: Phone,
    client: GatewayClient,
    config: FleetConfig,
    first_tick: float,
    end: float,
    truth: FleetTruth,
    stopping: asyncio.Event,
) -> None:
    backlog: list[Batch] = []
    held: Batch | None = None
    offline_until = 0.0
    stragglers: list[asyncio.Task[bool]] = []
    tick = first_tick

    async def deliver(batch: Batch) -> None:
        nonlocal held
        if batch.late:
            stragglers.append(asyncio.create_task(_send_later(client, batch, config.faults)))
            return
        if batch.out_of_order and held is None:
            held = batch
            return
        await client.send(batch)
        if batch.resend:
            await client.send(batch, resend=True)
        if held is not None:
            late_one, held = held, None
            await client.send(late_one)

    while tick < end and not stopping.is_set():
        await asyncio.sleep(max(0.0, tick - time.time()))
        if stopping.is_set():
            break
        batch = phone.next_batch()
        batch_start_ms = phone.clock_ms - int(config.interval_s * 1000) + phone.skew_ms
        truth.observe(phone.device_id, batch_start_ms, batch.activity)
        now = time.time()
        if batch.goes_offline:
            offline_until = now + config.faults.offline_s
        if now < offline_until:
            backlog.append(batch)
        else:
            pending, backlog = [*backlog, batch], []
            for item in pending:
                await deliver(item)
        tick += config.interval_s
    for item in backlog:
        await deliver(item)
    if held is not None:
        await client.send(held)
    await asyncio.gather(*stragglers)


async def _send_later(client: GatewayClient, batch: Batch, faults: FaultRates) -> bool:
    await asyncio.sleep(faults.late_delay_s)
    return await client.send(batch)


async def run_fleet(
    config: FleetConfig,
    client: GatewayClient,
    *,
    truth: FleetTruth | None = None,
    on_tick: Callable[[SendStats, float], None] | None = None,
    stopping: asyncio.Event | None = None,
) -> SendStats:
    """Run every phone for ``config.duration_s`` seconds, or until ``stopping`` is set, then
    deliver what the phones still hold; returns the tallies."""
    stopping = stopping or asyncio.Event()
    rng = np.random.default_rng(config.seed)
    truth = truth if truth is not None else FleetTruth()
    start = time.time()
    end = start + config.duration_s
    phones = []
    for device_id in config.device_ids():
        offset = float(rng.uniform(0, config.interval_s))
        labelled = bool(rng.random() < config.labelled_fraction)
        if labelled:
            truth.labelled.add(device_id)
        phone = Phone(
            device_id=device_id,
            rng=np.random.default_rng(rng.integers(2**63)),
            labelled=labelled,
            # The first batch covers the interval that ends at the phone's first tick.
            start_ms=int((start + offset - config.interval_s) * 1000),
            interval_s=config.interval_s,
            rate_hz=config.rate_hz,
            gps_hz=config.gps_hz,
            faults=config.faults,
            dwell_scale=config.dwell_scale,
        )
        phones.append(_phone_life(phone, client, config, start + offset, end, truth, stopping))
    fleet = asyncio.gather(*phones)
    if on_tick is None:
        await fleet
        return client.stats
    while not fleet.done():
        on_tick(client.stats, time.time() - start)
        await asyncio.wait([fleet], timeout=0.5)
    on_tick(client.stats, time.time() - start)
    await fleet
    return client.stats
