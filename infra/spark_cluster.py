"""A Spark standalone cluster on this machine, started by pyspark's own ``spark-class``.

The pip-installed pyspark has no ``start-master.sh``; its ``bin/spark-class`` runs the master
and worker classes directly. Tests and benchmarks use this to run mbd's jobs on a real cluster.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark

from infra.broker import free_port

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
SPARK_SUBMIT = SPARK_CLASS.with_name("spark-submit")


@dataclass(frozen=True)
class Cluster:
    master_url: str
    ui_url: str
    workers: tuple[subprocess.Popen, ...] = ()

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as reply:
            return json.load(reply)

    def application(self, name: str) -> str | None:
        """The id of the running application called ``name``, or None."""
        return next((a["id"] for a in self.state()["activeapps"] if a["name"] == name), None)

    def alive_workers(self) -> int:
        return sum(worker["state"] == "ALIVE" for worker in self.state()["workers"])

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and the executors it started, as when its host goes down."""
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()


def executor_pids(app_id: str) -> dict[str, int]:
    """The executor JVMs of application ``app_id`` on this machine: executor id → pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" not in args:
            continue
        options = dict(itertools.pairwise(args))
        if options.get(b"--app-id") == app_id.encode():
            found[options[b"--executor-id"].decode()] = int(entry.name)
    return found


def _start(
    args: list[str], log: Path, env: dict[str, str], cpus: set[int] | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [*pinned_command(cpus), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def pinned_command(cpus: set[int] | None) -> list[str]:
    """The prefix that runs a command (and all it starts) on these CPUs only: ``taskset``.

    No CPUs, no prefix: the command runs wherever the machine puts it.
    """
    if not cpus:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("pinning processes to CPUs needs taskset (util-linux), not found")
    return [taskset, "--cpu-list", ",".join(str(cpu) for cpu in sorted(cpus))]


def worker_cpus(workers: int, cores: int) -> list[set[int]]:
    """CPUs of each worker: ``cores`` of its own, round-robin over the CPUs this process may use
    (shared only when the workers ask for more cores than there are)."""
    usable = sorted(os.sched_getaffinity(0))
    return [
        {usable[(worker * cores + k) % len(usable)] for k in range(cores)}
        for worker in range(workers)
    ]


def daemon_environment() -> dict[str, str]:
    """The environment of a master or worker: this pyspark, this venv's Python, loopback."""
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_CLASS.parents[1]),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def master_command(port: int, ui_port: int) -> list[str]:
    return [
        str(SPARK_CLASS),
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(ui_port),
    ]


def worker_command(
    master_url: str, *, cores: int, work_dir: Path, ui_port: int, memory: str = "2g"
) -> list[str]:
    return [
        str(SPARK_CLASS),
        "org.apache.spark.deploy.worker.Worker",
        "--cores",
        str(cores),
        "--memory",
        memory,
        "--work-dir",
        str(work_dir),
        "--webui-port",
        str(ui_port),
        master_url,
    ]


@contextmanager
def standalone_cluster(
    folder: Path, *, workers: int = 2, cores: int = 1, pin_cpus: bool = False
) -> Iterator[Cluster]:
    """A master and ``workers`` workers of ``cores`` cores each, stopped on exit.

    A worker's ``--cores`` only limits how many tasks it runs at once; the task's threads (a
    TensorFlow input pipeline, the JVM's) may still use every CPU of the machine. ``pin_cpus``
    binds each worker, its executors and their Python workers to CPUs of its own, as separate
    machines of that many cores would be: benchmarks that compare worker counts need it.
    """
    env = daemon_environment()
    folder.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    master_url, ui_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    processes = [_start(master_command(port, ui_port), folder / "master.log", env)]
    cpus = worker_cpus(workers, cores) if pin_cpus else [None] * workers
    for index in range(workers):
        work = folder / f"worker-{index}"
        work.mkdir(parents=True, exist_ok=True)
        command = worker_command(master_url, cores=cores, work_dir=work, ui_port=free_port())
        processes.append(_start(command, folder / f"worker-{index}.log", env, cpus[index]))
    cluster = Cluster(master_url, ui_url, tuple(processes[1:]))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if cluster.alive_workers() == workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = (folder / "master.log").read_text()[-2000:]
                raise RuntimeError(f"standalone cluster not up within 90 s; master log:\n{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        running = [process for process in processes if process.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
