"""Ingest throughput and latency: simulated phones → gateway → the real broker, on one machine.

Starts a broker and ``mbd gateway`` (uvicorn) in subprocesses, pre-generates realistic batches
with the simulator's phones (2 s of 20 Hz accelerometer + 1 Hz GPS = 42 readings), then:

1. throughput: ``--concurrency`` connections post as fast as answers come back, for
   ``--seconds``; accepted readings/s and latency. The load comes from ``wrk`` (a C load
   generator, ``make bench`` installs it from Debian) running bench/ingest_load.lua over the
   pre-built batches, or with ``--client aiohttp`` from Python, which costs the shared cores
   about 0.3 ms of CPU a request (measured with the gateway's own cost, 1.2-1.5 ms);
2. latency at half the goal's rate (25,000 readings/s, the issue's "p99 < 100 ms at half that
   rate"), then at half the measured throughput: an open-loop sender (bench/open_loop.py, raw
   asyncio over keep-alive connections, a fraction of aiohttp's CPU a request); p50/p99
   latency, each request's from the moment it was due. On a machine that posts more than the
   goal, half its own throughput is a heavier load than half the goal's;
3. the raw kafka-python producer (bench/kafka_producer.py's measurement) in the same run, as
   the baseline ratio;
4. the cost of Kafka authentication: the throughput run again, with a fresh gateway, against
   a second broker started without SASL (``BrokerSettings(authentication=False)``, only for
   this comparison); ``sasl_ratio`` is accepted batches/s with SASL/SCRAM over without.
   ``--no-sasl-comparison`` skips it;
5. the cost of replication: three brokers (replication 3, ``min.insync.replicas`` 2) against
   one, both authenticated, each arm on fresh brokers and a fresh gateway, the two alternating
   (three, one, three, ...) for ``--replication-repeats`` pairs: the throughput run, then the
   paced runs at half the goal's rate (the same offered load in both arms; skipped in an arm
   whose throughput run carried less, where it would measure only a growing queue) and at
   half the arm's own measured throughput (a load each arm can carry). ``replication_ratio``
   is accepted batches/s with three brokers over one, of the arms' medians.
   ``--no-replication-comparison`` skips it.

The load generators run on the same 2 cores as the gateway and the broker. The
per-device rate limit is lifted for the run (each phone would otherwise be capped at 5 req/s).
The last line printed is one JSON object.

    python -m bench.ingest [--devices 2000] [--seconds 20] [--workers 2] [--concurrency 64]
                           [--client wrk|aiohttp] [--no-sasl-comparison] [--sasl-repeats 3]
                           [--no-replication-comparison] [--replication-repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.brokers import running_brokers
from bench.kafka_producer import measure_producer, running_broker
from bench.open_loop import http_post, open_loop
from common.kafka import default_topics, ensure_topics, settings_environment
from common.settings import KafkaSettings
from infra.broker import free_port
from simulators.client import wait_until_ready
from simulators.fleet import provision_tokens
from simulators.phone import Phone

LOAD_SCRIPT = Path(__file__).with_name("ingest_load.lua")
GOAL_READINGS_PER_S = 50_000


def make_batches(devices: int, per_device: int) -> tuple[list[str], list[list[bytes]], int]:
    """Serialized batches per device (generated up front so the sender stays cheap)."""
    rng = np.random.default_rng(0)
    start_ms = int(time.time() * 1000) - per_device * 2000 - 60_000
    ids, bodies, readings = [], [], 0
    for i in range(devices):
        phone = Phone(device_id=f"bench-{i:06d}", rng=np.random.default_rng(rng.integers(2**63)),
                      labelled=i % 5 == 0, start_ms=start_ms)  # fmt: skip
        batches = [phone.next_batch() for _ in range(per_device)]
        readings = batches[0].readings
        ids.append(phone.device_id)
        bodies.append([json.dumps(b.body).encode() for b in batches])
    return ids, bodies, readings


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")


async def _post(
    session: aiohttp.ClientSession, url: str, token: str, body: bytes, latencies: list[float],
    statuses: Counter[int],
) -> None:  # fmt: skip
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers(token)) as response:
        await response.read()
        statuses[response.status] += 1
    latencies.append(time.perf_counter() - started)


async def closed_loop(url: str, jobs: list[tuple[str, bytes]], concurrency: int, seconds: float):
    """``concurrency`` senders, each posting its next batch as soon as the last was answered."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cursor = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def sender() -> None:
            nonlocal cursor
            while time.perf_counter() < deadline and cursor < len(jobs):
                token, body = jobs[cursor]
                cursor += 1
                await _post(session, f"{url}/v1/readings", token, body, latencies, statuses)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, dict(statuses), elapsed, cursor


def wrk_closed_loop(
    url: str, jobs: list[tuple[str, bytes]], concurrency: int, seconds: float, folder: Path
) -> dict[str, Any]:
    """The closed loop from ``wrk`` (one thread): requests, statuses, seconds and latency."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `make bench` installs it, or use --client aiohttp")
    requests = folder / "requests.tsv"
    with requests.open("wb") as out:
        for token, body in jobs:
            out.write(token.encode() + b"\t" + body + b"\n")
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s",
               "-s", str(LOAD_SCRIPT), url, "--", str(requests), "1"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if not lines:
        raise RuntimeError(f"wrk printed no WRK_RESULT line:\n{run.stdout}\n{run.stderr}")
    result = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    result["statuses"] = {int(status): n for status, n in result["statuses"].items()}
    return result


def python_closed_loop(
    url: str, jobs: list[tuple[str, bytes]], concurrency: int, seconds: float
) -> dict[str, Any]:
    """The same closed loop from aiohttp, in this process."""
    latencies, statuses, elapsed, sent = asyncio.run(closed_loop(url, jobs, concurrency, seconds))
    return {
        "requests": sent, "seconds": elapsed, "statuses": statuses,
        "latency_p50_ms": percentile(latencies, 50), "latency_p99_ms": percentile(latencies, 99),
    }  # fmt: skip


def paced_run(
    port: int, jobs: list[tuple[str, bytes]], *, rate: float, seconds: float,
    readings_per_batch: int,
) -> dict[str, Any]:  # fmt: skip
    """``rate`` batches a second for ``seconds`` from the open-loop sender (jobs reused in turn:
    a resent batch is accepted again); its latency figures."""
    count = int(rate * seconds)
    paced = [http_post("127.0.0.1", port, "/v1/readings", body, headers(token))
             for token, body in (jobs[i % len(jobs)] for i in range(count))]  # fmt: skip
    load = asyncio.run(open_loop("127.0.0.1", port, paced, rate=rate))
    return {
        "load_generator": "bench/open_loop.py (latency from each request's due time)",
        "target_batches_per_s": round(rate, 1),
        "target_readings_per_s": round(rate * readings_per_batch, 1),
        "achieved_batches_per_s": round(len(paced) / load.seconds, 1),
        "requests": len(paced), "statuses": dict(load.statuses),
        "connections": load.connections,
        "latency_p50_ms": percentile(load.latencies_s, 50),
        "latency_p99_ms": percentile(load.latencies_s, 99),
    }  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (uvicorn workers), in MB."""
    total = 0
    for proc in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return round(total / 1024, 1)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [grandchild for kid in kids for grandchild in _children(kid)]


def start_gateway(kafka: KafkaSettings, registry: Path, workers: int) -> tuple[Any, str]:
    """``mbd gateway`` on a free port writing to ``kafka``'s broker; the process and its URL."""
    port = free_port()
    env = {
        **os.environ,
        **settings_environment(kafka),
        "MBD_GATEWAY_DEVICES_FILE": str(registry),
        "MBD_GATEWAY_RATE_PER_DEVICE": "100000",
        "MBD_GATEWAY_BURST_PER_DEVICE": "100000",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "gateway", "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return gateway, f"http://127.0.0.1:{port}"


def measure_throughput(
    url: str, jobs: list[tuple[str, bytes]], args: argparse.Namespace, folder: Path,
    readings_per_batch: int,
) -> dict[str, Any]:  # fmt: skip
    """Warm the gateway up, then the closed loop of ``--seconds``: accepted batches/s, latency."""
    wait_until_ready(url, timeout_s=60)
    # Warm-up: connections, producer metadata, first-call costs.
    asyncio.run(closed_loop(url, jobs[:200], 16, 10))
    if args.client == "wrk":
        run = wrk_closed_loop(url, jobs[200:], args.concurrency, args.seconds, folder)
    else:
        run = python_closed_loop(url, jobs[200:], args.concurrency, args.seconds)
    sent, elapsed, statuses = run["requests"], run["seconds"], run["statuses"]
    accepted = statuses.get(202, 0)
    return {
        "load_generator": args.client,
        "requests": sent, "statuses": statuses, "seconds": round(elapsed, 2),
        "accepted_batches_per_s": round(accepted / elapsed, 1),
        "accepted_readings_per_s": round(accepted * readings_per_batch / elapsed, 1),
        "latency_p50_ms": run["latency_p50_ms"], "latency_p99_ms": run["latency_p99_ms"],
    }  # fmt: skip


def stop_gateway(gateway: Any) -> None:
    gateway.terminate()
    gateway.wait(timeout=30)


def sasl_comparison(
    jobs: list[tuple[str, bytes]],
    args: argparse.Namespace,
    tmp: Path,
    readings_per_batch: int,
    registry: Path,
) -> dict[str, Any]:
    """Throughput with SASL/SCRAM against the same without it: ``--sasl-repeats`` pairs, each
    run the first throughput run's procedure on a fresh broker and gateway, the two kinds
    alternating (with, without, with, ...) so a slow minute of the machine hits both."""
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for _ in range(args.sasl_repeats):
        for authentication in (True, False):
            with running_broker(None, authentication=authentication) as kafka:
                gateway, url = start_gateway(kafka, registry, args.workers)
                try:
                    run = measure_throughput(url, jobs, args, tmp, readings_per_batch)
                finally:
                    stop_gateway(gateway)
            runs[authentication].append(run)
            kind = "with" if authentication else "without"
            print(f"throughput {kind} SASL: {json.dumps(run)}", flush=True)
    rates = {kind: [r["accepted_batches_per_s"] for r in runs[kind]] for kind in runs}
    pairs = [w / max(p, 1e-9) for w, p in zip(rates[True], rates[False], strict=True)]
    return {
        "repeats": args.sasl_repeats,
        "with_sasl_accepted_batches_per_s": rates[True],
        "without_sasl_accepted_batches_per_s": rates[False],
        "sasl_ratio": round(statistics.median(rates[True]) / statistics.median(rates[False]), 3),
        "sasl_ratio_each_pair": [round(r, 3) for r in pairs],
        "with_sasl_p99_ms": [r["latency_p99_ms"] for r in runs[True]],
        "without_sasl_p99_ms": [r["latency_p99_ms"] for r in runs[False]],
    }


def replication_comparison(
    jobs: list[tuple[str, bytes]],
    args: argparse.Namespace,
    tmp: Path,
    readings_per_batch: int,
    registry: Path,
) -> dict[str, Any]:
    """Three brokers with replication 3 against one broker: ``--replication-repeats`` pairs, the
    two alternating, each arm the throughput run and then the paced runs at half the goal's rate
    and at half its own throughput, on fresh brokers and a fresh gateway (both authenticated)."""
    arms = {3: "three_brokers", 1: "one_broker"}
    runs: dict[int, list[dict[str, Any]]] = {nodes: [] for nodes in arms}
    goal_rate = GOAL_READINGS_PER_S / 2 / readings_per_batch
    for _ in range(args.replication_repeats):
        for nodes in arms:
            with running_brokers(nodes) as (_, kafka):
                # the gateway would create them too; before its start, with the arm's copies
                ensure_topics(kafka, default_topics(kafka))
                gateway, url = start_gateway(kafka, registry, args.workers)
                try:
                    run = measure_throughput(url, jobs, args, tmp, readings_per_batch)
                    unsent = jobs[200 + run["requests"] :] + jobs[: 200 + run["requests"]]
                    port = int(url.rsplit(":", 1)[1])
                    pacing = {"seconds": args.seconds, "readings_per_batch": readings_per_batch}
                    carried = run["accepted_batches_per_s"]
                    # above what the arm carries a paced run measures only its growing queue
                    run["half_goal_rate"] = (
                        paced_run(port, unsent, rate=goal_rate, **pacing)
                        if goal_rate <= carried
                        else {"skipped": f"{goal_rate:.1f} batches/s is more than the "
                              f"{carried:g}/s this arm carried", "latency_p99_ms": None,
                              "statuses": {}}
                    )  # fmt: skip
                    half = max(1.0, carried / 2)
                    run["half_rate"] = paced_run(port, unsent, rate=half, **pacing)
                finally:
                    stop_gateway(gateway)
            run["replication_factor"] = kafka.replication_factor
            runs[nodes].append(run)
            print(f"throughput with {nodes} broker(s): {json.dumps(run)}", flush=True)
    rates = {nodes: [r["accepted_batches_per_s"] for r in runs[nodes]] for nodes in arms}
    pairs = [three / max(one, 1e-9) for three, one in zip(rates[3], rates[1], strict=True)]
    figures: dict[str, Any] = {
        "repeats": args.replication_repeats,
        "replication_ratio": round(statistics.median(rates[3]) / statistics.median(rates[1]), 3),
        "replication_ratio_each_pair": [round(r, 3) for r in pairs],
        "half_goal_readings_per_s": GOAL_READINGS_PER_S / 2,
    }
    for nodes, name in arms.items():
        figures |= {
            f"{name}_accepted_batches_per_s": rates[nodes],
            f"{name}_accepted_readings_per_s": [r["accepted_readings_per_s"] for r in runs[nodes]],
        }
        for load in ("half_rate", "half_goal_rate"):
            p99s = [r[load]["latency_p99_ms"] for r in runs[nodes]]
            median = None if None in p99s else round(statistics.median(p99s), 2)
            figures |= {
                f"{name}_{load}_p99_ms": p99s,
                f"{name}_{load}_p99_ms_median": median,
                f"{name}_{load}_statuses": [r[load]["statuses"] for r in runs[nodes]],
            }
        figures[f"{name}_half_rate_readings_per_s"] = [
            r["half_rate"]["target_readings_per_s"] for r in runs[nodes]
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client", choices=["wrk", "aiohttp"], default="wrk",
                        help="load generator of the throughput run")  # fmt: skip
    parser.add_argument("--no-sasl-comparison", dest="sasl_comparison", action="store_false",
                        help="skip the runs against a broker without authentication")  # fmt: skip
    parser.add_argument("--sasl-repeats", type=int, default=3,
                        help="pairs of runs with and without SASL")  # fmt: skip
    parser.add_argument("--no-replication-comparison", dest="replication_comparison",
                        action="store_false",
                        help="skip the runs with three brokers against one")  # fmt: skip
    parser.add_argument("--replication-repeats", type=int, default=3,
                        help="pairs of runs with three brokers and with one")  # fmt: skip
    args = parser.parse_args()

    ids, bodies, readings_per_batch = make_batches(args.devices, per_device=40)
    with tempfile.TemporaryDirectory(prefix="mbd-bench-") as tmp:
        registry = Path(tmp) / "devices.json"
        tokens = provision_tokens(ids, Path(tmp) / "tokens.json", registry)
        jobs = [(tokens[ids[d]], bodies[d][k]) for k in range(40) for d in range(len(ids))]
        with running_broker(None) as kafka:
            gateway, url = start_gateway(kafka, registry, args.workers)
            port = int(url.rsplit(":", 1)[1])
            try:
                throughput = measure_throughput(url, jobs, args, Path(tmp), readings_per_batch)
                print(f"throughput: {json.dumps(throughput)}", flush=True)
                accepted, elapsed = throughput["statuses"].get(202, 0), throughput["seconds"]
                sent = throughput["requests"]
                unsent = jobs[200 + sent :] + jobs[: 200 + sent]
                pacing = {"seconds": args.seconds, "readings_per_batch": readings_per_batch}
                goal_rate = GOAL_READINGS_PER_S / 2 / readings_per_batch
                half_goal = paced_run(port, unsent, rate=goal_rate, **pacing)
                print(f"half the goal's rate: {json.dumps(half_goal)}", flush=True)
                half = paced_run(port, unsent, rate=max(1.0, accepted / elapsed / 2), **pacing)
                print(f"half the measured rate: {json.dumps(half)}", flush=True)
                memory = peak_rss_mb(gateway.pid)
            finally:
                stop_gateway(gateway)
            raw = measure_producer(kafka, records=30_000, linger_ms=20, batch_size=262144,
                                   compression_type="lz4")  # fmt: skip
            raw_batch_bytes = measure_producer(
                kafka, records=30_000, record_bytes=len(bodies[0][0]), linger_ms=20,
                batch_size=262144, compression_type="lz4",
            )  # fmt: skip
            print(f"raw producer: {json.dumps({'1KB': raw, 'batch_sized': raw_batch_bytes})}")
        sasl = (
            sasl_comparison(jobs, args, Path(tmp), readings_per_batch, registry)
            if args.sasl_comparison
            else None
        )
        replication = (
            replication_comparison(jobs, args, Path(tmp), readings_per_batch, registry)
            if args.replication_comparison
            else None
        )

    summary = {
        "benchmark": "ingest",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "devices": args.devices, "gateway_workers": args.workers,
        "readings_per_batch": readings_per_batch, "batch_bytes": len(bodies[0][0]),
        "kafka_security": kafka.security_protocol,
        "throughput": throughput, "half_goal_rate": half_goal, "half_rate": half,
        "gateway_peak_rss_mb": memory,
        "raw_producer_records_per_s": raw["records_per_s"],
        "raw_producer_batch_sized_records_per_s": raw_batch_bytes["records_per_s"],
        "ratio_to_raw_producer": round(
            throughput["accepted_batches_per_s"] / raw_batch_bytes["records_per_s"], 3
        ),
        "sasl_comparison": sasl,
        "replication_comparison": replication,
        "goal_readings_per_s": GOAL_READINGS_PER_S,
        "goal_p99_ms_at_half_goal_rate": 100,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
