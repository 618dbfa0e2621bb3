"""A Spark standalone cluster on this machine, started by pyspark's own ``spark-class``.

The pip-installed pyspark has no ``start-master.sh``; its ``bin/spark-class`` runs the master
and worker classes directly. Tests and benchmarks use this to run mbd's jobs on a real cluster.
"""

from __future__ import annotations

import json
import os
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


@dataclass(frozen=True)
class Cluster:
    master_url: str
    ui_url: str

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as reply:
            return json.load(reply)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SPARK_CLASS), *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )  # fmt: skip


@contextmanager
def standalone_cluster(folder: Path, *, workers: int = 2, cores: int = 1) -> Iterator[Cluster]:
    """A master and ``workers`` workers of ``cores`` cores each, stopped on exit."""
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_CLASS.parents[1]),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    folder.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    master_url, ui_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    processes = [
        _start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                str(port), "--webui-port", str(ui_port)], folder / "master.log", env)
    ]  # fmt: skip
    for index in range(workers):
        work = folder / f"worker-{index}"
        work.mkdir(parents=True, exist_ok=True)
        processes.append(_start(
            ["org.apache.spark.deploy.worker.Worker", "--cores", str(cores), "--memory", "2g",
             "--work-dir", str(work), "--webui-port", str(free_port()), master_url],
            folder / f"worker-{index}.log", env,
        ))  # fmt: skip
    cluster = Cluster(master_url, ui_url)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                alive = [w for w in cluster.state()["workers"] if w["state"] == "ALIVE"]
                if len(alive) == workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = (folder / "master.log").read_text()[-2000:]
                raise RuntimeError(f"standalone cluster not up within 90 s; master log:\n{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
