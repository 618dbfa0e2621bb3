"""Soak: ``mbd up`` with a simulated fleet for minutes, watching memory, restarts and lag.

Starts ``mbd up`` (broker, gateway, stream, trainer, API, simulator) in a temporary data
folder on free ports, waits for "mbd is up", then for ``--minutes`` samples every
``--every`` seconds each service's resident memory (VmRSS summed over its whole process
tree: the stream and trainer hold a Spark JVM and Python workers) and the stream's lag.
It reports per service the peak during the first minute and during the last, the restarts
the supervisor counted, the stream's lag and totals, the promoted model, then stops ``mbd up``
with SIGTERM and checks that no process it started is left. What the gateway accepted is the
totals it logs when it stops, after the simulator (stopped first) has had its last answer, so
it compares with the simulator's own tally; a gateway that logged none (it was killed) is read
from ``/metrics`` before the stop, while phones still post.

Goals: no restarts; no service's peak RSS in the last minute more than 25 % above the first
minute's; SIGTERM stops everything. The last line printed is one JSON object.

    python -m bench.soak [--phones 500] [--minutes 10] [--every 5] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gateway_totals import gateway_figures, stopped_gateway_totals
from bench.processes import mentioning, process_table, still_running, tree, tree_rss_mb
from infra.broker import free_port

FIRST_AND_LAST_S = 60.0
GROWTH_ALLOWED = 1.25


@dataclass(frozen=True)
class Sample:
    at_s: float  # since every service was up
    rss_mb: dict[str, float]  # per service, summed over its process tree
    lag: int | None  # Kafka records the stream is behind the readings topic's end


def peaks(samples: list[Sample], duration_s: float, window_s: float = FIRST_AND_LAST_S):
    """Per service: (peak RSS in the first ``window_s``, peak RSS in the last ``window_s``)."""
    first = [s for s in samples if s.at_s <= window_s]
    last = [s for s in samples if s.at_s >= duration_s - window_s]
    services = dict.fromkeys(name for s in samples for name in s.rss_mb)  # in starting order
    return {
        name: (
            max((s.rss_mb.get(name, 0.0) for s in first), default=0.0),
            max((s.rss_mb.get(name, 0.0) for s in last), default=0.0),
        )
        for name in services
    }


def max_lag(samples: list[Sample]) -> int | None:
    lags = [s.lag for s in samples if s.lag is not None]
    return max(lags) if lags else None


def prometheus_total(text: str, metric: str) -> float:
    """Sum of a metric's samples (every label set) in Prometheus' text format."""
    pattern = re.compile(rf"^{re.escape(metric)}(?:\{{[^}}]*\}})?\s+(\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def last_json_line(path: Path) -> dict[str, Any] | None:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        value = json.loads(lines[-1]) if lines else None
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def service_pids(data: Path) -> dict[str, int]:
    state = read_json(data / "run" / "up.json") or {}
    return {name: int(s["pid"]) for name, s in state.get("services", {}).items() if s["pid"]}


def take_sample(at_s: float, data: Path, seen: dict[int, int]) -> Sample:
    """Memory of every service now; remembers each process seen (pid → start) for the stop."""
    table = process_table()
    rss = {}
    for name, pid in service_pids(data).items():
        members = tree(pid, table)
        seen.update({p: table[p].start_ticks for p in members})
        rss[name] = tree_rss_mb(pid, table)
    stream = read_json(data / "status" / "stream.json") or {}
    return Sample(at_s, rss, offsets_behind(stream))


def offsets_behind(stream_status: dict[str, Any]) -> int | None:
    """The stream's lag: records behind the topic's end, or from statuses written before that
    figure, Spark's offsets behind latest (a source metric, written as text: "12")."""
    key = "records_behind_topic_end"
    # A status with the key but no figure (the broker did not answer) is an unknown lag, not
    # Spark's, which reads 0 while a batch takes everything there is.
    value = stream_status.get(key if key in stream_status else "offsets_behind_latest")
    return None if value is None else int(float(value))


def gateway_counts(port: int) -> dict[str, float | None]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {"accepted_batches": None, "accepted_readings": None, "rejected_batches": None}
    return {
        name: prometheus_total(text, f"mbd_gateway_{name}_total")
        for name in ("accepted_batches", "accepted_readings", "rejected_batches")
    }


@contextmanager
def data_folder(given: Path | None) -> Iterator[Path]:
    if given:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="mbd-soak-") as tmp:
        yield Path(tmp)


class MbdUp:
    """``mbd up`` as a child process; its output echoed to stderr, "mbd is up" noticed."""

    def __init__(self, data: Path, phones: int, ports: dict[str, int]) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **{f"MBD_UP_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.cli",
                "up",
                "--data-dir",
                str(data),
                "--devices",
                str(phones),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self.up = threading.Event()
        self.echo = threading.Thread(target=self._echo, daemon=True)
        self.echo.start()

    def _echo(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stderr.write(f"[mbd up] {line}")
            if "mbd is up" in line:
                self.up.set()

    def wait_up(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.up.wait(1.0):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mbd up exited with status {self.process.returncode} "
                    "before every service was ready"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"mbd up was not up within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 180.0) -> tuple[int, float]:
        """SIGTERM, as a person's Ctrl-C or a service manager would; (exit status, seconds)."""
        began = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.echo.join(timeout=10)
        return code, round(time.perf_counter() - began, 1)


def leftovers(data: Path, seen: dict[int, int], wait_s: float = 15.0) -> list[str]:
    """Processes of the run still alive after the stop (given ``wait_s`` to go): killed and
    named."""
    deadline = time.monotonic() + wait_s
    while True:
        table = process_table()
        left = {p.pid for p in still_running(seen, table)}
        left |= set(mentioning(str(data), (pid for pid in table if pid != os.getpid())))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    named = [f"{pid} {table[pid].state}" for pid in sorted(left) if pid in table]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # ours: started by this soak's mbd up
    return named


def soak(
    data: Path, *, phones: int, minutes: float, every_s: float, start_timeout_s: float
) -> dict[str, Any]:
    ports = {"broker": free_port(), "gateway": free_port(), "api": free_port()}
    began = time.perf_counter()
    gateway_log = data / "logs" / "gateway.log"  # appended to when --data-dir is reused
    log_start = gateway_log.stat().st_size if gateway_log.exists() else 0
    up = MbdUp(data, phones, ports)
    seen: dict[int, int] = {}
    samples: list[Sample] = []
    error, seconds_to_up = None, None
    state: dict[str, Any] = {}
    gateway: dict[str, float | None] = {}
    duration_s = minutes * 60
    try:
        up.wait_up(start_timeout_s)
        seconds_to_up = round(time.perf_counter() - began, 1)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < duration_s:
            if up.process.poll() is not None:
                raise RuntimeError(
                    f"mbd up exited with status {up.process.returncode} "
                    f"{elapsed:.0f} s into the soak"
                )
            samples.append(take_sample(elapsed, data, seen))
            time.sleep(max(0.0, every_s - (time.monotonic() - started - elapsed)))
        samples.append(take_sample(time.monotonic() - started, data, seen))
        state = read_json(data / "run" / "up.json") or {}
        gateway = gateway_counts(ports["gateway"])
    except (RuntimeError, KeyboardInterrupt) as failure:
        error = str(failure) or type(failure).__name__
    finally:
        exit_code, stop_s = up.stop()
        left = leftovers(data, seen)

    stream = read_json(data / "status" / "stream.json") or {}
    current = data / "registry" / "CURRENT"
    restarts = {name: s["restarts"] for name, s in state.get("services", {}).items()}
    stopped = stopped_gateway_totals(gateway_log, after_byte=log_start)
    accepted, accepted_read = gateway_figures(stopped, restarts.get("gateway"), gateway)
    services = {
        name: {
            "start_peak_rss_mb": start,
            "end_peak_rss_mb": end,
            "growth_mb": round(end - start, 1),
            "restarts": restarts.get(name),
        }
        for name, (start, end) in peaks(samples, duration_s).items()
    }
    first = [s for s in samples if s.at_s <= FIRST_AND_LAST_S]
    last = [s for s in samples if s.at_s >= duration_s - FIRST_AND_LAST_S]
    return {
        "benchmark": "soak",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "phones": phones,
        "minutes": minutes,
        "sample_every_s": every_s,
        "samples": len(samples),
        "seconds_to_up": seconds_to_up,
        "error": error,
        "services": services,
        "stream": {
            "start_max_lag": max_lag(first),
            "end_max_lag": max_lag(last),
            "last_batch": stream.get("batch_id"),
            "totals": stream.get("totals") or {},
        },
        "model_version": current.read_text().strip().lstrip("v") if current.exists() else None,
        "gateway": accepted,
        "gateway_read": accepted_read,
        "simulator": last_json_line(data / "logs" / "simulator.log"),
        "stop": {"exit_code": exit_code, "seconds": stop_s, "left_running": left},
        "goals": {
            "no_restarts": bool(restarts) and not any(restarts.values()),
            "memory_flat": bool(services)
            and all(
                s["end_peak_rss_mb"] <= GROWTH_ALLOWED * s["start_peak_rss_mb"]
                for s in services.values()
            ),
            "stopped_cleanly": exit_code == 0 and not left,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=500, help="simulated phones")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run once up")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to come up")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the run's data here (default: a temporary folder, removed afterwards)",
    )
    args = parser.parse_args()
    if args.phones < 1 or args.minutes <= 0 or args.every <= 0:
        parser.error(
            f"--phones {args.phones}, --minutes {args.minutes:g} and --every "
            f"{args.every:g} must all be positive"
        )
    with data_folder(args.data_dir) as data:
        result = soak(
            data,
            phones=args.phones,
            minutes=args.minutes,
            every_s=args.every,
            start_timeout_s=args.start_timeout,
        )
    for name, figures in result["services"].items():
        print(
            f"{name:<10} peak RSS first minute {figures['start_peak_rss_mb']:>8} MB, last "
            f"minute {figures['end_peak_rss_mb']:>8} MB, restarts {figures['restarts']}"
        )
    print(json.dumps(result))
    if result["error"]:  # no figures to speak of; goals not met are the table's to show
        sys.exit(1)


if __name__ == "__main__":
    main()
