"""``mbd up``: the whole pipeline on one machine under one supervisor, and ``mbd status``.

Order: the Kafka broker, the gateway, the streaming job, the scheduled trainer, the API, and a
simulated fleet. Every service gets the same ``MBD_*`` environment (one data folder, the
broker's address and the Kafka client user it logs in as), its own log file under
``<data>/logs/``, and is restarted if it dies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.files import ensure_secret
from common.settings import ApiSettings, BrokerSettings, JvmSettings
from infra import broker, kafka_cluster
from infra.supervisor import Service, ServiceFailed, Supervisor

log = logging.getLogger(__name__)
MBD = [sys.executable, "-m", "infra.cli"]


class UpSettings(BaseSettings):
    """What ``mbd up`` starts, and where everything it runs keeps its data."""

    model_config = SettingsConfigDict(env_prefix="MBD_UP_", frozen=True)

    data_dir: Path = Path("data")
    broker_port: int = Field(default=9092, ge=1, le=65535)
    brokers: int = Field(default=1, description="Kafka brokers on this machine: 1, or 3")
    spark_workers: int = Field(
        default=0,
        ge=0,
        le=8,
        description="workers of a Spark standalone cluster the stream and trainer run on; "
        "0: each runs Spark in its own process (local[*])",
    )
    spark_port: int = Field(default=7077, ge=1, le=65535, description="the Spark master's port")
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    api_port: int = Field(default=8001, ge=1, le=65535)
    devices: int = Field(default=100, ge=0, description="simulated phones; 0 for none")
    labelled_fraction: float = Field(default=0.2, ge=0, le=1)
    train_every_s: float = Field(default=120.0, gt=0)
    sim_report: Path | None = Field(
        default=None,
        description="where the fleet writes its tallies and acknowledged batches "
        "when it stops (SIGTERM to the simulator ends the traffic; it is not restarted then)",
    )

    @property
    def state_file(self) -> Path:
        return self.data_dir / "run" / "up.json"


@dataclass
class BrokerProcess:
    """The broker daemonises itself (``infra.broker``); this lets the supervisor watch it."""

    data_dir: Path
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not broker.running(self.data_dir):
            self.returncode = 1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"broker pid {self.pid}", timeout or 0)
            time.sleep(0.2)
        return self.returncode or 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def broker_settings(settings: UpSettings) -> BrokerSettings:
    return BrokerSettings(
        port=settings.broker_port,
        data_dir=settings.data_dir.resolve() / "kafka",
        nodes=settings.brokers,
    )


def kafka_environment(settings: UpSettings) -> dict[str, str]:
    """The brokers' addresses, their replication and the client user (SASL/SCRAM): the password
    reaches the services as the path of its 0600 file, written on the brokers' first start."""
    return kafka_cluster.client_environment(broker_settings(settings))


def environment(settings: UpSettings) -> dict[str, str]:
    """What every service's environment adds: one data folder and one broker for all."""
    data = settings.data_dir.resolve()
    return {
        **kafka_environment(settings),
        "MBD_GATEWAY_PORT": str(settings.gateway_port),
        "MBD_GATEWAY_DEVICES_FILE": str(data / "devices.json"),
        "MBD_API_PORT": str(settings.api_port),
        "MBD_API_SECRETS_DIR": str(data / "secrets"),
        "MBD_API_DEVICES_FILE": str(data / "devices.json"),
        "MBD_API_GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "MBD_API_STREAM_STATUS_FILE": str(data / "status" / "stream.json"),
        "MBD_LAKE_URI": str(data / "lake"),
        "MBD_STREAM_CHECKPOINT_DIR": str(data / "checkpoints" / "stream"),
        "MBD_STREAM_STATUS_FILE": str(data / "status" / "stream.json"),
        "MBD_REGISTRY_DIR": str(data / "registry"),
        "MBD_SIM_GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "MBD_SIM_TOKENS_FILE": str(data / "sim-tokens.json"),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **spark_environment(settings),
    }


# Each worker offers this many cores and each application takes at most this many, so the
# stream and the trainer run side by side on the cluster (one would take every core otherwise).
SPARK_WORKER_CORES = 2


def spark_environment(settings: UpSettings) -> dict[str, str]:
    """The Spark master the stream and the trainer submit to, when ``mbd up`` runs one."""
    if not settings.spark_workers:
        return {}
    return {
        "MBD_SPARK_MASTER": f"spark://127.0.0.1:{settings.spark_port}",
        "MBD_SPARK_EXTRA_CONF": json.dumps({"spark.cores.max": str(SPARK_WORKER_CORES)}),
    }


def spark_services(settings: UpSettings) -> list[Service]:
    """A Spark master and ``spark_workers`` workers, each a supervised ``spark-class`` process
    on loopback; a worker that dies is started again and registers with the master anew."""
    if not settings.spark_workers:
        return []
    from infra.spark_cluster import daemon_environment, master_command, worker_command

    data = settings.data_dir.resolve() / "spark"
    master_url = f"spark://127.0.0.1:{settings.spark_port}"
    ui_port = broker.free_port()
    env = daemon_environment()
    fleet = [
        Service(
            name="spark-master",
            command=master_command(settings.spark_port, ui_port),
            env=env,
            ready=lambda: _http_ok(f"http://127.0.0.1:{ui_port}/json/"),
        ),
    ]
    for index in range(settings.spark_workers):
        work = data / f"worker-{index}"
        work.mkdir(parents=True, exist_ok=True)
        command = worker_command(
            master_url, cores=SPARK_WORKER_CORES, work_dir=work, ui_port=broker.free_port()
        )
        fleet.append(Service(name=f"spark-worker-{index}", command=command, env=env, settle_s=3))
    return fleet


def services(settings: UpSettings) -> list[Service]:
    data = settings.data_dir.resolve()
    status_file = data / "status" / "stream.json"
    env = environment(settings)

    gateway, api = (f"http://127.0.0.1:{p}" for p in (settings.gateway_port, settings.api_port))
    fleet = [
        *broker_services(broker_settings(settings)),
        *spark_services(settings),
        Service(
            name="gateway",
            command=[*MBD, "gateway"],
            env=env,
            ready=lambda: _http_ok(f"{gateway}/readyz"),
        ),
        Service(
            name="stream",
            command=[*MBD, "stream"],
            env=env,
            ready_timeout_s=180,
            ready=status_file.exists,
        ),
        Service(
            name="trainer",
            command=[*MBD, "train", "--quiet", "--every", f"{settings.train_every_s:g}s"],
            env=env,
            settle_s=5,
        ),
        Service(
            name="api", command=[*MBD, "api"], env=env, ready=lambda: _http_ok(f"{api}/healthz")
        ),
    ]
    if settings.devices:
        report = ["--report", str(settings.sim_report.resolve())] if settings.sim_report else []
        fleet.append(
            Service(
                name="simulator",
                env=env,
                settle_s=5,
                restart="on-failure",
                command=[
                    *MBD,
                    "simulate",
                    "--quiet",
                    "--devices",
                    str(settings.devices),
                    "--labelled-fraction",
                    str(settings.labelled_fraction),
                    "--duration",
                    "100000h",
                    "--truth",
                    str(data / "sim-truth.jsonl"),
                    *report,
                ],
            )
        )
    return fleet


def broker_services(settings: BrokerSettings) -> list[Service]:
    """The broker, or one service per node of a cluster: a node that dies is started again
    alone, and the gateway's readiness waits for the cluster to answer."""

    def watched(log_file: Path, node_dir: Path, pid: int | None) -> BrokerProcess:
        if pid is None:
            pid = broker.status(node_dir).pid
        assert pid is not None
        log_file.unlink(missing_ok=True)
        log_file.symlink_to(node_dir / broker.CONSOLE_LOG)
        return BrokerProcess(node_dir, pid)

    if settings.nodes == 1:

        def launch_broker(log_file: Path) -> BrokerProcess:
            state = broker.start(settings, JvmSettings())
            return watched(log_file, settings.data_dir.resolve(), state.pid)

        return [Service(name="broker", launch=launch_broker, settle_s=0)]

    def launcher(node_id: int) -> Callable[[Path], BrokerProcess]:
        def launch_node(log_file: Path) -> BrokerProcess:
            node, process = kafka_cluster.launch_node(settings, JvmSettings(), node_id)
            return watched(log_file, node.data_dir, process.pid if process else None)

        return launch_node

    return [
        Service(name=f"broker-{n}", launch=launcher(n), settle_s=0)
        for n in range(1, settings.nodes + 1)
    ]


def dashboard_url(settings: UpSettings) -> str:
    """The dashboard's URL carrying the API's read token (generated 0600 on first use)."""
    api = ApiSettings(secrets_dir=settings.data_dir.resolve() / "secrets")
    token = (
        api.read_token.get_secret_value() if api.read_token else ensure_secret(api.read_token_file)
    )
    ensure_secret(api.admin_token_file)
    return f"http://127.0.0.1:{settings.api_port}/?token={token}"


def up(settings: UpSettings) -> int:
    """Start everything, print where to look, supervise until Ctrl-C or SIGTERM."""
    data = settings.data_dir.resolve()
    url = dashboard_url(settings)
    status_file = data / "status" / "stream.json"
    status_file.unlink(missing_ok=True)  # readiness of the stream is a fresh status file
    supervisor = Supervisor(
        services(settings), log_dir=data / "logs", state_file=settings.state_file
    )
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
    try:
        supervisor.start_all(on_ready=lambda s: print(f"  {s.name:<10} ready", flush=True))  # noqa: T201
        print(  # noqa: T201
            f"mbd is up. Dashboard: {url}\n"
            f"  (the read token is in {data / 'secrets' / 'api-read-token'}, the admin token "
            f"beside it; logs in {data / 'logs'}; `mbd status`; Ctrl-C stops everything)",
            flush=True,
        )
        supervisor.watch()
        return 0
    except KeyboardInterrupt:
        return 0
    except ServiceFailed as error:
        log.error("%s", error)
        return 1
    finally:
        supervisor.stop_all()
        print("mbd stopped every service", flush=True)  # noqa: T201


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def status(settings: UpSettings) -> dict[str, Any]:
    """Every service, the streaming job's lag and totals, the lake's size, the promoted model."""
    from models.registry import Registry, RegistryError

    data = settings.data_dir.resolve()
    report: dict[str, Any] = {"services": {}}
    if settings.state_file.exists():
        for name, entry in json.loads(settings.state_file.read_text())["services"].items():
            alive = bool(entry["pid"]) and _pid_alive(int(entry["pid"]))
            report["services"][name] = {**entry, "running": alive}
    stream_status = data / "status" / "stream.json"
    if stream_status.exists():
        stream = json.loads(stream_status.read_text())
        report["stream"] = {
            "records_behind_topic_end": stream.get("records_behind_topic_end"),
            "offsets_behind_latest": stream.get("offsets_behind_latest"),
            "last_batch": stream.get("batch_id"),
            "seconds_since_update": round(time.time() - stream.get("updated_at", 0), 1),
            "totals": stream.get("totals"),
        }
    report["kafka"] = kafka_status(data / "kafka")
    report["lake_bytes"] = _folder_bytes(data / "lake")
    registry = Registry(data / "registry")
    try:
        current = registry.current()
        report["model"] = current and {
            "version": current.version,
            "macro_f1": current.macro_f1,
            "versions": len(registry.versions()),
        }
    except RegistryError as error:
        report["model"] = {"error": str(error)}
    report["disk_free_bytes"] = shutil.disk_usage(data if data.exists() else Path.cwd()).free
    return report


def kafka_status(kafka_dir: Path) -> dict[str, Any]:
    """Each broker (port, running), the leader of every partition of mbd's topics, and the
    partitions with fewer copies in sync than they have."""
    from kafka.errors import KafkaError

    nodes = kafka_cluster.status(kafka_dir)
    report: dict[str, Any] = {
        "brokers": [{"port": n.port, "pid": n.pid, "running": n.running} for n in nodes]
    }
    if not any(node.running for node in nodes):
        return report
    try:
        login = kafka_cluster.client_settings(kafka_dir)
        views = kafka_cluster.partitions(login, [login.readings_topic, login.predictions_topic])
    except (KafkaError, OSError, ValueError) as error:
        return report | {"error": f"partitions not described: {error}"}
    report["leaders"] = {f"{v.topic}/{v.partition}": v.leader for v in views}
    report["under_replicated"] = [
        {"partition": f"{v.topic}/{v.partition}", "replicas": v.replicas, "in_sync": v.isr}
        for v in views
        if v.under_replicated
    ]
    return report


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
