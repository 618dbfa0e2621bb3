"""POST /v1/predict latency and throughput, against the same model called in-process.

Publishes and promotes a model of the default size (``ModelSettings``: encoder 256-128 over
10 s × 20 Hz × 3 = 600 inputs; untrained weights score as fast as trained ones) in a
temporary registry, starts the API (``api.app:create_app_from_env`` under uvicorn, one
process, the predictions reader off) and pre-builds request bodies of 10 s of samples. Then:

1. throughput: ``--concurrency`` senders post as fast as answers come back for ``--seconds``;
2. latency at a fixed rate: an open-loop sender at ``--rate`` requests/s (default 100, the
   goal is p99 < 25 ms there) for ``--seconds``;
3. the baseline, in this process on the same bodies: the model alone
   (``LoadedModel.predict`` on the resampled window) and the route's whole work without HTTP
   (parse, window, model), and what the API adds before a body is read: the credential
   check and the rate limit (``Credentials.authenticate`` and ``RateLimiter.acquire``), as a
   share of the route's work.

Every request carries the API's read token, as a client of the secured API does; its rate
limit is set above what the bench sends.

The load generator (aiohttp) shares the machine's cores with the API. The last line printed
is one JSON object.

    python -m bench.predict [--seconds 15] [--concurrency 8] [--rate 100] [--bodies 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

from common.settings import DEFAULT_CLASSES, ModelSettings, WindowSettings, WireSettings
from infra.broker import free_port
from models.registry import Registry

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def publish_default_model(registry: Registry, window: WindowSettings) -> int:
    """Publish and promote a default-size classifier; returns its version."""
    from models.build import ModelSpec, build_classifier
    from models.spectrum import spectrum_width

    width = spectrum_width(window.samples)
    spec = ModelSpec.from_settings(ModelSettings(), input_dim=window.samples * 3,
                                   classes=DEFAULT_CLASSES, axis_mean=(0.0, 9.8, 0.0),
                                   axis_std=(3.0, 3.0, 3.0), magnitude=(9.8, 3.0),
                                   spectrum=((0.0,) * width, (1.0,) * width))  # fmt: skip
    staging = registry.staging()
    build_classifier(spec).save(staging / "model.keras")
    (staging / "config.json").write_text(json.dumps({"spec": spec.to_json(), "train": {}}))
    (staging / "metrics.json").write_text(json.dumps({"macro_f1": 0.0, "note": "benchmark"}))
    version = registry.publish(staging).version
    registry.promote(version, reason="benchmark")
    return version


def make_bodies(count: int, window: WindowSettings) -> list[bytes]:
    """Request bodies: 10 s of 20 Hz samples each, a walking-like signal with noise."""
    rng = np.random.default_rng(0)
    end_ms = int(time.time() * 1000)
    step = 1000.0 / window.rate_hz
    bodies = []
    for i in range(count):
        n = window.samples
        t = end_ms - i * 997 - np.round((n - 1 - np.arange(n)) * step).astype(np.int64)
        phase = 2 * np.pi * rng.uniform(1, 3) * np.arange(n) / window.rate_hz
        xyz = np.column_stack([2 * np.sin(phase), 9.8 + 3 * np.cos(phase), np.zeros(n)])
        xyz += rng.normal(0, 0.4, xyz.shape)
        accel = [
            {
                "t": int(ti),
                "x": round(float(x), 4),
                "y": round(float(y), 4),
                "z": round(float(z), 4),
            }
            for ti, (x, y, z) in zip(t, xyz, strict=True)
        ]
        bodies.append(json.dumps({"device_id": f"bench-{i}", "accel": accel}).encode())
    return bodies


def ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")


READ_TOKEN = secrets.token_urlsafe(32)
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {READ_TOKEN}"}


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    started = time.perf_counter()
    async with session.post(url, data=body, headers=HEADERS) as r:
        await r.read()
        statuses[r.status] += 1
    latencies.append(time.perf_counter() - started)


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float):
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sent = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def sender() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                await _post(session, url, body, latencies, statuses)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, dict(statuses), elapsed


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float):
    """Requests started at a fixed rate whatever the answers do (no coordinated omission)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        tasks = []
        t0 = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(
                _post(session, url, bodies[i % len(bodies)], latencies, statuses)))  # fmt: skip
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return latencies, dict(statuses), elapsed


def credential_check_ms(folder: Path, calls: int = 20_000) -> dict[str, float]:
    """What the API does for every request before reading its body: the read token checked
    and one request taken from its rate limit (µs per call; p50 and p99)."""
    from api.app import api_credentials
    from common.settings import ApiSettings

    settings = ApiSettings(
        read_token=READ_TOKEN, secrets_dir=folder / "secrets", devices_file=folder / "none.json"
    )
    credentials = api_credentials(settings)
    times: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        principal = credentials.authenticate(READ_TOKEN)
        assert principal is not None
        credentials.limiter.acquire(principal.key)
        times.append(time.perf_counter() - started)
    return {
        "auth_p50_us": round(float(np.percentile(times, 50)) * 1e6, 1),
        "auth_p99_us": round(float(np.percentile(times, 99)) * 1e6, 1),
    }


def in_process(registry: Registry, version: int, bodies: list[bytes]) -> dict[str, float]:
    """The same model and route code on the same bodies, without HTTP: seconds per call."""
    from api.routes.predict import parse_request, window_from_samples
    from common.settings import ApiSettings
    from models.serving import load_version

    window, wire = WindowSettings(), WireSettings()
    settings = ApiSettings(window=window, wire=wire, read_token=READ_TOKEN)
    model = load_version(registry, version)
    tensors = []
    pipeline: list[float] = []
    for body in bodies * 2:
        started = time.perf_counter()
        request = parse_request(body, settings)
        _, result = window_from_samples(request, window, max_samples=wire.max_accel_samples)
        model.predict(result.tensor.reshape(1, -1))
        pipeline.append(time.perf_counter() - started)
        tensors.append(result.tensor.reshape(1, -1))
    alone: list[float] = []
    for tensor in tensors:
        started = time.perf_counter()
        model.predict(tensor)
        alone.append(time.perf_counter() - started)
    return {"model_p50": ms(alone, 50), "model_p99": ms(alone, 99),
            "pipeline_p50": ms(pipeline, 50), "pipeline_p99": ms(pipeline, 99)}  # fmt: skip


def wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the API exited with status {server.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API at {base} was not ready within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--bodies", type=int, default=500)
    args = parser.parse_args()

    window = WindowSettings()
    bodies = make_bodies(args.bodies, window)
    with tempfile.TemporaryDirectory(prefix="mbd-bench-predict-") as tmp:
        registry = Registry(Path(tmp) / "registry")
        version = publish_default_model(registry, window)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MBD_REGISTRY_DIR": str(registry.root),
            "MBD_API_CONSUME_PREDICTIONS": "false",
            "MBD_API_GATEWAY_URL": "",
            "MBD_API_STREAM_STATUS_FILE": str(Path(tmp) / "none.json"),
            "MBD_API_READ_TOKEN": READ_TOKEN,
            "MBD_API_SECRETS_DIR": str(Path(tmp) / "secrets"),
            "MBD_API_DEVICES_FILE": str(Path(tmp) / "devices.json"),
            "MBD_API_RATE_PER_TOKEN": "1000000",
            "MBD_API_BURST_PER_TOKEN": "1000000",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app_from_env", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"],
            env=env,
        )  # fmt: skip
        try:
            wait_ready(base, server)
            url = f"{base}/v1/predict"
            asyncio.run(closed_loop(url, bodies, args.concurrency, 3.0))  # warm-up
            c_lat, c_status, c_elapsed = asyncio.run(
                closed_loop(url, bodies, args.concurrency, args.seconds)
            )
            o_lat, o_status, o_elapsed = asyncio.run(
                open_loop(url, bodies, args.rate, args.seconds)
            )
        finally:
            server.terminate()
            server.wait(30)
        local = in_process(registry, version, bodies)
        local.update(credential_check_ms(Path(tmp)))

    throughput = sum(c_status.values()) / c_elapsed
    print(
        f"closed loop, {args.concurrency} concurrent: {throughput:.0f} requests/s, "
        f"p50 {ms(c_lat, 50)} ms, p99 {ms(c_lat, 99)} ms, statuses {c_status}"
    )
    print(
        f"open loop at {args.rate:g}/s: achieved {sum(o_status.values()) / o_elapsed:.1f}/s, "
        f"p50 {ms(o_lat, 50)} ms, p99 {ms(o_lat, 99)} ms, statuses {o_status}"
    )
    print(
        f"in-process, same bodies: model alone p50 {local['model_p50']} ms "
        f"p99 {local['model_p99']} ms; parse+window+model p50 {local['pipeline_p50']} ms "
        f"p99 {local['pipeline_p99']} ms; token check + rate limit p50 {local['auth_p50_us']} µs "
        f"p99 {local['auth_p99_us']} µs"
    )
    result = {
        "benchmark": "predict",
        "model": {"encoder_units": list(ModelSettings().encoder_units),
                  "input_features": ModelSettings().input_features,
                  "input_dim": window.samples * 3},
        "closed_loop": {"concurrency": args.concurrency, "seconds": args.seconds,
                        "requests_per_s": round(throughput, 1), "p50_ms": ms(c_lat, 50),
                        "p99_ms": ms(c_lat, 99), "statuses": c_status},
        "paced": {"rate_per_s": args.rate, "achieved_per_s": round(
                      sum(o_status.values()) / o_elapsed, 1),
                  "p50_ms": ms(o_lat, 50), "p99_ms": ms(o_lat, 99), "statuses": o_status,
                  "goal_p99_ms": 25.0, "meets_goal": ms(o_lat, 99) < 25.0},
        "in_process": local,
        "ratio_api_p50_to_model_p50": round(ms(o_lat, 50) / local["model_p50"], 1),
        "ratio_api_p50_to_pipeline_p50": round(ms(o_lat, 50) / local["pipeline_p50"], 1),
        "ratio_auth_p50_to_pipeline_p50": round(
            local["auth_p50_us"] / 1000 / local["pipeline_p50"], 4
        ),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
