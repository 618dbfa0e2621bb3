"""A small process supervisor: start services in order, watch them, restart, stop everything.

Each :class:`Service` is a command line with a readiness probe. The supervisor starts them one
after another, waiting for each to be ready (or failing with the end of its log), writes every
service's output to its own log file, restarts a service that dies (with a growing pause,
giving up after ``max_restarts`` in a row that die young; a service marked ``on-failure`` that
exits with status 0 has finished its work and stays stopped), and on stop sends SIGTERM to each
process group in reverse order, then SIGKILL to what is left, so no process stays behind.
Its state (pids, restarts, logs) is kept in a JSON file for ``mbd status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from common.files import write_atomic

log = logging.getLogger(__name__)
Probe = Callable[[], bool]


class ProcessLike(Protocol):
    """What the supervisor needs of a process: ``subprocess.Popen`` or a stand-in for one that
    another launcher started (the broker daemonises itself)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ServiceFailed(RuntimeError):
    """A service did not become ready, or keeps dying."""


@dataclass(kw_only=True)
class Service:
    name: str
    command: list[str] = field(default_factory=list)
    launch: Callable[[Path], ProcessLike] | None = None  # instead of running ``command``
    ready: Probe | None = None  # None: ready once it has run for ``settle_s`` without dying
    ready_timeout_s: float = 120.0
    settle_s: float = 2.0
    env: dict[str, str] = field(default_factory=dict)
    restart: Literal["always", "on-failure"] = "always"
    process: ProcessLike | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    finished: bool = False  # exited 0 under ``on-failure``: done, not to be restarted


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Supervisor:
    def __init__(self, services: list[Service], *, log_dir: Path, state_file: Path,
                 max_restarts: int = 5) -> None:  # fmt: skip
        self.services = services
        self.log_dir, self.state_file = log_dir, state_file
        self.max_restarts = max_restarts
        self.stopping = threading.Event()

    def log_path(self, service: Service) -> Path:
        return self.log_dir / f"{service.name}.log"

    def _spawn(self, service: Service) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if service.launch is not None:
            service.process = service.launch(self.log_path(service))
        else:
            with self.log_path(service).open("ab") as out:
                service.process = subprocess.Popen(
                    service.command, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env={**os.environ, **service.env},
                    start_new_session=True,
                )  # fmt: skip
        service.started_at = time.time()
        log.info("%s started (pid %d), log %s", service.name, service.process.pid,
                 self.log_path(service))  # fmt: skip
        self.write_state()

    def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + service.ready_timeout_s
        settled = time.monotonic() + service.settle_s
        while not self.stopping.is_set():
            assert service.process is not None
            if service.process.poll() is not None:
                raise ServiceFailed(
                    f"{service.name} exited with status {service.process.returncode} while "
                    f"starting; end of {self.log_path(service)}:\n{tail(self.log_path(service))}"
                )
            if time.monotonic() >= settled and (service.ready is None or service.ready()):
                log.info("%s ready", service.name)
                return
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{service.name} not ready within {service.ready_timeout_s:.0f} s; end of "
                    f"{self.log_path(service)}:\n{tail(self.log_path(service))}"
                )
            time.sleep(0.5)

    def start_all(self, on_ready: Callable[[Service], None] | None = None) -> None:
        """Start every service in order, each once the one before it is ready."""
        for service in self.services:
            if self.stopping.is_set():
                return
            self._spawn(service)
            self._wait_ready(service)
            if on_ready:
                on_ready(service)

    def check(self) -> None:
        """Restart services that died; raise ServiceFailed for one that keeps dying."""
        for service in self.services:
            process = service.process
            if process is None or process.poll() is None or self.stopping.is_set():
                continue
            if service.finished:
                continue
            if service.restart == "on-failure" and process.returncode == 0:
                service.finished = True
                log.info("%s finished (status 0); not restarted", service.name)
                self.write_state()
                continue
            lived = time.time() - service.started_at
            service.quick_deaths = service.quick_deaths + 1 if lived < 60 else 1
            if service.quick_deaths > self.max_restarts:
                raise ServiceFailed(
                    f"{service.name} died {service.quick_deaths} times in a row within a minute "
                    f"of starting; end of its log:\n{tail(self.log_path(service))}"
                )
            pause = min(30.0, 2.0**service.quick_deaths)
            log.warning("%s exited with status %s after %.0f s; restarting in %.0f s",
                        service.name, process.returncode, lived, pause)  # fmt: skip
            if self.stopping.wait(pause):
                return
            service.restarts += 1
            self._spawn(service)

    def watch(self, poll_s: float = 1.0) -> None:
        while not self.stopping.wait(poll_s):
            self.check()

    def stop_all(self, grace_s: float = 20.0) -> None:
        self.stopping.set()
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            log.info("stopping %s (pid %d)", service.name, process.pid)
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s: killing it", service.name, grace_s)
            _signal_group(process, signal.SIGKILL)  # whatever its children left behind
            process.wait()
        self.write_state()

    def state(self) -> dict[str, Any]:
        return {
            service.name: {
                "pid": service.process.pid if service.process else None,
                "running": bool(service.process and service.process.poll() is None),
                "started_at": service.started_at,
                "restarts": service.restarts,
                "finished": service.finished,
                "log": str(self.log_path(service)),
            }
            for service in self.services
        }

    def write_state(self) -> None:
        write_atomic(
            self.state_file,
            json.dumps({"updated_at": time.time(), "services": self.state()}, indent=1),
        )


def _signal_group(process: ProcessLike, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
