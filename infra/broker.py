"""The embedded Apache Kafka broker: one JVM in KRaft mode (broker and controller), log on disk.

``start`` formats the storage on first use, launches ``kafka.Kafka`` in the background and returns
once the broker answers clients, or raises with the broker's own error lines. The data directory
holds everything about one broker: its config, its log, its process id and its console output,
so ``status``/``stop``/``kill`` need nothing but the directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from common.kafka import broker_reachable
from common.settings import BrokerSettings, JvmSettings, KafkaSettings

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
STATE_FILE = "broker.json"
CONSOLE_LOG = "broker.log"


class BrokerError(RuntimeError):
    """The broker could not be started or stopped; the message carries the broker's own words."""


@dataclass(kw_only=True)
class BrokerState:
    """What a data directory remembers about its broker."""

    cluster_id: str
    port: int
    controller_port: int
    host: str
    pid: int | None = None


@dataclass(frozen=True, kw_only=True)
class BrokerStatus:
    running: bool
    reachable: bool
    pid: int | None
    port: int | None
    data_dir: Path

    @property
    def bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the broker could listen on ``port``.

    SO_REUSEADDR as the broker's own listener sets it: connections of clients still retrying
    a killed broker linger in TIME_WAIT and must not count as "in use".
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64, unpadded, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _read_state(data_dir: Path) -> BrokerState | None:
    path = data_dir / STATE_FILE
    if not path.is_file():
        return None
    return BrokerState(**json.loads(path.read_text()))


def _write_state(data_dir: Path, state: BrokerState) -> None:
    tmp = data_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(data_dir / STATE_FILE)


def _process_alive(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a live broker JVM serving ``data_dir`` (no zombie, no reused pid)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and "kafka.Kafka" in cmdline and str(data_dir.resolve()) in cmdline


def server_properties(state: BrokerState, data_dir: Path, advertised_host: str) -> str:
    log_dir = (data_dir / "log").resolve()
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{state.controller_port}",
        "listeners": (
            f"PLAINTEXT://{state.host}:{state.port},CONTROLLER://127.0.0.1:{state.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{advertised_host}:{state.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "4",
        "auto.create.topics.enable": "false",
        # One node: every internal topic has a single replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _java_command(jvm: JvmSettings, *args: str, heap: str = "256m") -> list[str]:
    jars = jvm.broker_jars
    if not any(jars.glob("kafka_*.jar")):
        raise BrokerError(f"no Kafka jars in {jars}; run `mbd setup` to fetch them")
    return [
        jvm.java,
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{jars}/*",
        *args,
    ]


def _error_lines(text: str, limit: int = 8) -> str:
    lines = text.strip().splitlines()
    errors = [line for line in lines if " ERROR " in line or "Exception" in line]
    return "\n".join((errors or lines)[-limit:])


def _format_storage(jvm: JvmSettings, state: BrokerState, config: Path) -> None:
    command = _java_command(
        jvm, "kafka.tools.StorageTool", "format", "-t", state.cluster_id, "-c", str(config)
    )
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(
            f"formatting KRaft storage failed:\n{_error_lines(result.stdout + result.stderr)}"
        )


def _wait_until_ready(
    process: subprocess.Popen[bytes], state: BrokerState, data_dir: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{state.port}")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (data_dir / CONSOLE_LOG).read_text(errors="replace")
            raise BrokerError(
                f"broker exited with {process.returncode} while starting:\n{_error_lines(output)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", state.port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        if broker_reachable(kafka, timeout_s=3.0):
            return
    process.kill()
    process.wait()
    raise BrokerError(f"broker did not answer on port {state.port} within {timeout_s:.0f} s")


def start(settings: BrokerSettings, jvm: JvmSettings) -> BrokerStatus:
    """Start the broker for ``settings.data_dir`` (formatting it first if new) and wait for it."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(data_dir)
    if state and state.pid and _process_alive(state.pid, data_dir):
        if state.port != settings.port:
            raise BrokerError(
                f"a broker for {data_dir} already runs on port {state.port} (pid {state.pid})"
            )
        log.info("broker already running on port %d (pid %d)", state.port, state.pid)
        return status(data_dir)
    if not _port_free(settings.port, settings.host):
        raise BrokerError(f"port {settings.port} on {settings.host} is already in use")
    if state is None:
        state = BrokerState(
            cluster_id=new_cluster_id(),
            port=settings.port,
            controller_port=free_port(),
            host=settings.host,
        )
    state.port, state.host, state.pid = settings.port, settings.host, None
    if not _port_free(state.controller_port):
        state.controller_port = free_port()
    config = data_dir / "server.properties"
    config.write_text(server_properties(state, data_dir, settings.advertised_host or settings.host))
    if not (data_dir / "log" / "meta.properties").is_file():
        _format_storage(jvm, state, config)
    _write_state(data_dir, state)

    with (data_dir / CONSOLE_LOG).open("ab") as console:
        command = _java_command(jvm, "kafka.Kafka", str(config), heap=settings.heap)
        process = subprocess.Popen(
            command, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        )
    state.pid = process.pid
    _write_state(data_dir, state)
    _wait_until_ready(process, state, data_dir, settings.start_timeout_s)
    log.info("broker up on port %d (pid %d), log in %s", state.port, process.pid, data_dir)
    return status(data_dir)


def running(data_dir: Path) -> bool:
    """Whether the broker's process is alive (no connection to it: cheap enough to poll)."""
    state = _read_state(data_dir.resolve())
    return bool(state and state.pid and _process_alive(state.pid, data_dir.resolve()))


def status(data_dir: Path) -> BrokerStatus:
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    running = bool(state and state.pid and _process_alive(state.pid, data_dir))
    reachable = bool(
        running
        and state
        and broker_reachable(
            KafkaSettings(bootstrap_servers=f"127.0.0.1:{state.port}"), timeout_s=2.0
        )
    )
    return BrokerStatus(
        running=running,
        reachable=reachable,
        pid=state.pid if running and state else None,
        port=state.port if state else None,
        data_dir=data_dir,
    )


def _signal_and_wait(data_dir: Path, sig: signal.Signals, timeout_s: float) -> bool:
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    if not state or not state.pid or not _process_alive(state.pid, data_dir):
        return False
    os.kill(state.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _process_alive(state.pid, data_dir):
            state.pid = None
            _write_state(data_dir, state)
            return True
        time.sleep(0.1)
    raise BrokerError(f"broker pid {state.pid} still running {timeout_s:.0f} s after {sig.name}")


def stop(data_dir: Path, timeout_s: float = 30.0) -> bool:
    """Shut the broker down cleanly (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns False when no broker was running for ``data_dir``.
    """
    try:
        return _signal_and_wait(data_dir, signal.SIGTERM, timeout_s)
    except BrokerError:
        log.warning("broker ignored SIGTERM for %.0f s; killing it", timeout_s)
        return _signal_and_wait(data_dir, signal.SIGKILL, 10.0)


def kill(data_dir: Path) -> bool:
    """Kill the broker without letting it shut down (for fault tests): SIGKILL."""
    return _signal_and_wait(data_dir, signal.SIGKILL, 10.0)
