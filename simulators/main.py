"""Wires the simulator from its settings: tokens, the HTTP client, the live display, the report."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from common.settings import GatewaySettings, SimulatorSettings, WireSettings
from simulators.client import GatewayClient, SendStats
from simulators.fleet import FleetConfig, FleetTruth, provision_tokens, run_fleet
from simulators.replay import DEVICE_PREFIX, parse_label_map, read_dataset, replay

log = logging.getLogger(__name__)


def _display(stats: SendStats, elapsed_s: float, total_s: float | None) -> Table:
    table = Table(title="mbd simulate", show_header=False, min_width=48)
    progress = f"{elapsed_s:,.0f} s" + (f" of {total_s:,.0f} s" if total_s else "")
    rate = stats.accepted_readings / elapsed_s if elapsed_s > 0 else 0.0
    rows = [
        ("elapsed", progress),
        ("batches sent", f"{stats.sent:,}"),
        ("accepted (202)", f"{stats.accepted:,}  ({rate:,.0f} readings/s)"),
        ("rejected", ", ".join(f"{k}: {v}" for k, v in stats.rejected.items()) or "0"),
        ("retried", ", ".join(f"{k}: {v}" for k, v in stats.retried_by_status.items()) or "0"),
        ("in flight", f"{stats.in_flight:,}"),
        ("given up", f"{stats.given_up:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _write_report(path: Path, stats: SendStats, extra: dict[str, Any]) -> None:
    report = {**stats.summary(), **extra, "accepted_keys": sorted(stats.accepted_keys)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))


async def _run_with_display(work: Any, stats_source: GatewayClient, total_s: float | None,
                            quiet: bool) -> None:  # fmt: skip
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        await work
        return
    with Live(console=console, refresh_per_second=2) as live:
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.ensure_future(work)
        while not task.done():
            live.update(_display(stats_source.stats, loop.time() - started, total_s))
            await asyncio.wait([task], timeout=0.5)
        live.update(_display(stats_source.stats, loop.time() - started, total_s))
        await task


def _stop_on_signals() -> asyncio.Event:
    """SIGTERM or Ctrl-C: the phones stop making batches and deliver what they hold, so the
    report counts every acknowledged batch; a second signal interrupts at once."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        log.info("%s: the phones stop after delivering what they hold", signum.name)
        stopping.set()
        loop.remove_signal_handler(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    return stopping


def _client(settings: SimulatorSettings, tokens: dict[str, str]) -> GatewayClient:
    return GatewayClient(
        settings.gateway_url,
        tokens,
        max_connections=settings.max_connections,
        give_up_after_s=settings.give_up_after_s,
        max_backoff_s=settings.max_backoff_s,
    )


def simulate_fleet(
    settings: SimulatorSettings,
    gateway: GatewaySettings,
    *,
    duration_s: float,
    seed: int,
    faults: Any,
    dwell_scale: float = 1.0,
    report: Path | None = None,
    quiet: bool = False,
    truth_file: Path | None = None,
) -> SendStats:
    config = FleetConfig(
        devices=settings.devices,
        duration_s=duration_s,
        labelled_fraction=settings.labelled_fraction,
        seed=seed,
        interval_s=settings.interval_s,
        rate_hz=settings.rate_hz,
        gps_hz=settings.gps_hz,
        faults=faults,
        dwell_scale=dwell_scale,
        device_prefix=settings.device_prefix,
    )
    tokens = provision_tokens(config.device_ids(), settings.tokens_file, gateway.devices_file)
    truth = FleetTruth(timeline=truth_file)

    async def main() -> SendStats:
        stopping = _stop_on_signals()
        async with _client(settings, tokens) as client:
            fleet = run_fleet(config, client, truth=truth, stopping=stopping)
            await _run_with_display(fleet, client, duration_s, quiet)
            return client.stats

    stats = asyncio.run(main())
    if report:
        _write_report(report, stats, {"truth": truth.activity, "labelled": sorted(truth.labelled)})
    return stats


def replay_dataset(
    settings: SimulatorSettings,
    gateway: GatewaySettings,
    wire: WireSettings,
    *,
    path: Path,
    speed: float,
    label_map: str | None,
    report: Path | None = None,
    quiet: bool = False,
) -> SendStats:
    dataset = read_dataset(path, wire.classes, parse_label_map(label_map))
    if not dataset.readings_by_user:
        reasons = "; ".join(dataset.skip_summary()) or "it is empty"
        raise ValueError(f"{path} has no usable readings: {reasons}")
    for line in dataset.skip_summary():
        log.warning("%s: %s", path, line)
    device_prefix = DEVICE_PREFIX
    devices = [f"{device_prefix}{user}" for user in dataset.readings_by_user]
    tokens = provision_tokens(devices, settings.tokens_file, gateway.devices_file)

    async def main() -> SendStats:
        async with _client(settings, tokens) as client:
            work = replay(dataset, client, speed=speed, interval_s=settings.interval_s,
                          device_prefix=device_prefix)  # fmt: skip
            await _run_with_display(work, client, None, quiet)
            return client.stats

    stats = asyncio.run(main())
    if report:
        _write_report(report, stats, {"skipped": dict(dataset.skipped),
                                      "skipped_lines": dataset.skipped_lines})  # fmt: skip
    return stats
