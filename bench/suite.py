"""Runs the benchmarks one after another and writes their figures and a summary table.

Each benchmark is its own process; its output streams to the terminal and to
``bench/results/<name>.log``, its last line of stdout (one JSON object) goes to
``<name>.json`` with a ``suite`` record added (exit status, when, how long, on which host).
A benchmark that fails leaves a ``<name>.json`` saying so and the rest still run. Then
``README.md`` there is rewritten from every ``<name>.json`` present (bench/report.py), so a
run of one benchmark keeps the others' last figures. Exits non-zero if any benchmark failed.

    python -m bench.suite [--only NAME ...] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.report import Machine, machine_from_proc, render
from common.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
# In the order `make bench` runs them; the soak is last, it runs the whole pipeline for minutes.
BENCHMARKS: dict[str, list[str]] = {
    "kafka_producer": ["bench/kafka_producer.py"],
    "ingest": ["-m", "bench.ingest"],
    "failover": ["-m", "bench.failover"],
    "streaming": ["-m", "bench.streaming"],
    "streaming_cluster": ["-m", "bench.streaming_cluster"],
    "predict": ["-m", "bench.predict"],
    "training": ["-m", "bench.training"],
    "retraining": ["-m", "bench.retraining"],
    "soak": ["-m", "bench.soak"],
}


def command_line(argv: list[str]) -> str:
    """How a person reruns a benchmark from the project folder."""
    return shlex.join(["python", *argv])


def this_machine() -> Machine:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    return machine_from_proc(
        hostname=platform.node(),
        cores=os.cpu_count() or 0,
        cpuinfo=read("/proc/cpuinfo"),
        meminfo=read("/proc/meminfo"),
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pump(source: IO[str], *sinks: IO[str], lock: threading.Lock, last: list[str]) -> None:
    """Copy a child's stream line by line to every sink; remember its last non-empty line."""
    for line in source:
        with lock:
            for sink in sinks:
                sink.write(line)
                sink.flush()
        if line.strip():
            last[:] = [line.strip()]


def run_benchmark(name: str, argv: list[str], results: Path) -> dict[str, Any]:
    """Run one benchmark, tee its output to ``<name>.log``; its figures with a ``suite`` record."""
    log_path = results / f"{name}.log"
    began, started_at = time.perf_counter(), now()
    last: list[str] = []
    lock = threading.Lock()
    with log_path.open("w") as log:
        log.write(f"$ {command_line(argv)}  # {started_at}\n")
        child = subprocess.Popen(
            [sys.executable, *argv],
            cwd=PROJECT_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None and child.stderr is not None
        pumps = [
            threading.Thread(
                target=_pump,
                args=(child.stdout, sys.stdout, log),
                kwargs={"lock": lock, "last": last},
            ),
            threading.Thread(
                target=_pump,
                args=(child.stderr, sys.stderr, log),
                kwargs={"lock": lock, "last": []},
            ),
        ]
        for pump in pumps:
            pump.start()
        exit_code = child.wait()
        for pump in pumps:
            pump.join()
    record: dict[str, Any] = {
        "command": command_line(argv),
        "exit_code": exit_code,
        "started_at": started_at,
        "finished_at": now(),
        "seconds": round(time.perf_counter() - began, 1),
        "host": platform.node(),
    }
    figures: dict[str, Any] = {"benchmark": name}
    if exit_code == 0:
        try:
            parsed = json.loads(last[0]) if last else None
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            figures = parsed
        else:
            shown = last[0][:120] if last else "(no output)"
            record["error"] = f"its last line of output is not a JSON object: {shown!r}"
    return {**figures, "suite": record}


def read_results(results: Path, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Every benchmark's last saved figures; None for one without a readable ``<name>.json``."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in names:
        try:
            found[name] = json.loads((results / f"{name}.json").read_text())
        except (OSError, json.JSONDecodeError):
            found[name] = None
    return found


def run_suite(names: list[str], results: Path, benchmarks: dict[str, list[str]]) -> list[str]:
    """Run ``names`` in turn, write their JSON and the README; returns the names that failed."""
    results.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        print(f"\n=== {name}: {command_line(benchmarks[name])}", flush=True)
        figures = run_benchmark(name, benchmarks[name], results)
        (results / f"{name}.json").write_text(json.dumps(figures, indent=1) + "\n")
        run = figures["suite"]
        if run["exit_code"] != 0 or run.get("error"):
            failed.append(name)
            why = run.get("error") or f"exit status {run['exit_code']}"
            print(f"=== {name} failed: {why}", file=sys.stderr, flush=True)
    readme = render(
        read_results(results, list(benchmarks)),
        commands={name: command_line(argv) for name, argv in benchmarks.items()},
        machine=this_machine(),
        generated_at=now(),
        log_hints={name: str(_shown(results / f"{name}.log")) for name in benchmarks},
    )
    (results / "README.md").write_text(readme)
    return failed


def _shown(path: Path) -> Path:
    """A path relative to the project when it lies inside it (as the README is read there)."""
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only these, of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where figures go")
    args = parser.parse_args()
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    failed = run_suite(names, args.results.resolve(), BENCHMARKS)
    print(
        f"\nresults in {args.results}/README.md; "
        + (f"failed: {', '.join(failed)}" if failed else f"all {len(names)} ran")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
