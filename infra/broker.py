"""The embedded Apache Kafka broker: one JVM in KRaft mode (broker and controller), log on disk.

``start`` formats the storage on first use, launches ``kafka.Kafka`` in the background and returns
once the broker answers clients, or raises with the broker's own error lines. The data directory
holds everything about one broker: its config, its log, its process id and its console output,
so ``status``/``stop``/``kill`` need nothing but the directory.

Clients authenticate (SASL/SCRAM-SHA-512 on the client listener, SASL PLAIN on the controller
listener; :mod:`infra.broker_auth` holds the users and their 0600 secret files), and both
listeners bind loopback unless ``MBD_BROKER_HOST`` says otherwise. :func:`client_settings`
gives the settings a client of a running broker logs in with.
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
from common.settings import BrokerSettings, JvmSettings, KafkaSettings, default_min_insync
from infra import broker_auth
from infra.broker_auth import BrokerCredentials

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
STATE_FILE = "broker.json"
CONSOLE_LOG = "broker.log"
CLIENT_LISTENER = "CLIENT"


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
    # Whether the client listener takes SASL now, and whether the SCRAM users were written into
    # the metadata when the storage was formatted (a state from before either reads False).
    authentication: bool = False
    credentials_in_metadata: bool = False
    secrets_dir: str | None = None
    # A node of a cluster of several (:mod:`infra.kafka_cluster`): its id, the controller quorum
    # (``id@host:port,...``; None: itself alone) and the replication of the internal topics.
    node_id: int = 1
    voters: str | None = None
    replication: int = 1


@dataclass(frozen=True, kw_only=True)
class NodeRole:
    """A broker's place in a cluster of several: cluster id, node id, quorum, replication."""

    cluster_id: str
    node_id: int
    controller_port: int
    voters: str
    replication: int


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


def port_free(port: int, host: str = "127.0.0.1") -> bool:
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


def _cmdline(pid: int, tries: int = 20) -> str:
    """The command line of ``pid``. Read right after the broker's launch it is briefly empty
    (the JVM is still setting up its memory), which must not pass for another process."""
    for _ in range(tries):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        if raw:
            break
        time.sleep(0.01)
    return raw.replace(b"\0", b" ").decode()


def _process_alive(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a live broker JVM serving ``data_dir`` (no zombie, no reused pid)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = _cmdline(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and "kafka.Kafka" in cmdline and str(data_dir.resolve()) in cmdline


def server_properties(state: BrokerState, data_dir: Path, advertised_host: str) -> str:
    """The broker's config; it names the passwords' variables and holds no secret itself."""
    log_dir = (data_dir / "log").resolve()
    client = CLIENT_LISTENER
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(state.node_id),
        "controller.quorum.voters": state.voters or f"1@127.0.0.1:{state.controller_port}",
        "listeners": (
            f"{client}://{state.host}:{state.port},CONTROLLER://127.0.0.1:{state.controller_port}"
        ),
        "advertised.listeners": f"{client}://{advertised_host}:{state.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        **broker_auth.listener_properties(
            client_listener=client, authentication=state.authentication
        ),
        "log.dirs": str(log_dir),
        "num.partitions": "4",
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "8",
        "group.initial.rebalance.delay.ms": "0",
        **replication_properties(state.replication),
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def replication_properties(replication: int) -> dict[str, str]:
    """How many copies every topic keeps and how many must have a write before it is acked.

    With ``replication`` nodes, a write needs all but one of them in sync (``min.insync``): one
    node may die and nothing acknowledged is lost; with two down a write fails (the gateway's
    503) rather than be acknowledged by one copy. A dead node is fenced by the controller after
    ``broker.session.timeout.ms``: that is how long its partitions wait for a new leader.
    """
    copies, min_insync = str(replication), str(default_min_insync(replication))
    properties = {
        "default.replication.factor": copies,
        "min.insync.replicas": min_insync,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": copies,
        "transaction.state.log.replication.factor": copies,
        "transaction.state.log.min.isr": min_insync,
        "share.coordinator.state.topic.replication.factor": copies,
        "share.coordinator.state.topic.min.isr": min_insync,
    }
    if replication > 1:
        properties |= {"broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "4000"}
    return properties


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
        # Of the config providers a config may name, only the one that reads the environment.
        f"-Dorg.apache.kafka.automatic.config.providers={broker_auth.ENV_PROVIDER}",
        "-cp",
        f"{jars}/*",
        *args,
    ]


def _error_lines(text: str, limit: int = 8) -> str:
    lines = text.strip().splitlines()
    errors = [line for line in lines if " ERROR " in line or "Exception" in line]
    return "\n".join((errors or lines)[-limit:])


def _argument_file(arguments: list[str]) -> str:
    """A Java launcher argument file holding ``arguments``, one quoted argument a line."""
    for number, argument in enumerate(arguments):
        if any(char in argument for char in '"\\\n'):  # not echoed: it may hold a password
            raise BrokerError(f"argument {number} holds a quote, a backslash or a line break")
    return "".join(f'"{argument}"\n' for argument in arguments)


def _format_storage(
    jvm: JvmSettings, state: BrokerState, config: Path, credentials: BrokerCredentials | None
) -> None:
    """Format the log folder; with ``credentials``, write the SCRAM users into its metadata.

    The tool's arguments reach the JVM through an argument file read from stdin
    (``java @/dev/stdin``), so the passwords appear in no process listing and on no disk.
    """
    arguments = ["kafka.tools.StorageTool", "format", "-t", state.cluster_id, "-c", str(config)]
    secrets: tuple[str, ...] = ()
    if credentials is not None:
        arguments += broker_auth.scram_arguments(credentials)
        secrets = credentials.passwords()
    result = subprocess.run(
        _java_command(jvm, "@/dev/stdin"), input=_argument_file(arguments),
        capture_output=True, text=True, check=False,
        env=_broker_environment(credentials),
    )  # fmt: skip
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for secret in secrets:
            output = output.replace(secret, "***")
        raise BrokerError(f"formatting KRaft storage failed:\n{_error_lines(output)}")


def _broker_environment(credentials: BrokerCredentials | None) -> dict[str, str]:
    env = {**os.environ}
    if credentials is not None:
        env |= broker_auth.jvm_environment(credentials)
    return env


def secrets_dir(settings: BrokerSettings) -> Path:
    """The folder of the SASL users' passwords of the broker of ``settings.data_dir``: as set,
    else the one its storage was formatted with, else ``<data_dir>/secrets``."""
    data_dir = settings.data_dir.resolve()
    if settings.secrets_dir is not None:
        return settings.secrets_dir.resolve()
    state = _read_state(data_dir)
    if state and state.credentials_in_metadata and state.secrets_dir:
        return Path(state.secrets_dir)
    return data_dir / "secrets"


def client_environment(settings: BrokerSettings) -> dict[str, str]:
    """``MBD_KAFKA_*`` variables for a service on this machine to log in to the broker of
    ``settings`` (known before it starts: the password travels as its file's path)."""
    return broker_auth.client_environment(
        port=settings.port, secrets_dir=secrets_dir(settings),
        authentication=settings.authentication,
    )  # fmt: skip


def client_settings(data_dir: Path, **overrides: object) -> KafkaSettings:
    """How a client on this machine reaches the broker of ``data_dir`` as the client user.

    The fields given here win over ``MBD_KAFKA_*`` variables, so they fit this broker whatever
    the environment says; ``overrides`` (topics, say) are added.
    """
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    if state is None:
        raise BrokerError(f"no broker state in {data_dir}; start the broker first")
    secrets_dir = Path(state.secrets_dir) if state.secrets_dir else data_dir / "secrets"
    fields: dict[str, object] = dict(broker_auth.client_fields(
        port=state.port, secrets_dir=secrets_dir, authentication=state.authentication
    ))  # fmt: skip
    if not state.authentication:
        fields |= {"sasl_username": None, "sasl_password": None, "sasl_password_file": None}
    return KafkaSettings(**(fields | overrides))  # type: ignore[arg-type]


def _unauthenticated_storage(data_dir: Path) -> BrokerError:
    return BrokerError(
        f"the broker's storage in {data_dir} was formatted without Kafka credentials (before "
        "mbd's brokers authenticated clients), and SCRAM users can only be written when the "
        f"storage is formatted. Move it aside to start a new one: `mbd broker stop --data-dir "
        f"{data_dir}; mv {data_dir} {data_dir}.unauthenticated` (its topics are not carried over)"
    )


def wait_until_ready(process: subprocess.Popen[bytes], data_dir: Path, timeout_s: float) -> None:
    """Return once the launched broker of ``data_dir`` answers clients; raise with its own
    error lines if it exits first, kill it if it does not answer within ``timeout_s``."""
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    assert state is not None  # launch wrote it
    deadline = time.monotonic() + timeout_s
    kafka = client_settings(data_dir)
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
            log.info("broker up on port %d (pid %d), log in %s", state.port, process.pid, data_dir)
            return
    process.kill()
    process.wait()
    raise BrokerError(f"broker did not answer on port {state.port} within {timeout_s:.0f} s")


def start(settings: BrokerSettings, jvm: JvmSettings) -> BrokerStatus:
    """Start the broker for ``settings.data_dir`` (formatting it first if new) and wait for it."""
    process = launch(settings, jvm)
    if process is not None:
        wait_until_ready(process, settings.data_dir, settings.start_timeout_s)
    return status(settings.data_dir)


def launch(
    settings: BrokerSettings, jvm: JvmSettings, role: NodeRole | None = None
) -> subprocess.Popen[bytes] | None:
    """Launch the broker of ``settings.data_dir`` (formatting it first if new) without waiting
    for it (None when it already runs): the nodes of a cluster must all be up to answer."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(data_dir)
    if state and state.pid and _process_alive(state.pid, data_dir):
        if state.port != settings.port:
            raise BrokerError(
                f"a broker for {data_dir} already runs on port {state.port} (pid {state.pid})"
            )
        log.info("broker already running on port %d (pid %d)", state.port, state.pid)
        return None
    if not port_free(settings.port, settings.host):
        raise BrokerError(f"port {settings.port} on {settings.host} is already in use")
    if state is None:
        state = BrokerState(
            cluster_id=role.cluster_id if role else new_cluster_id(),
            port=settings.port,
            controller_port=role.controller_port if role else free_port(),
            host=settings.host,
        )
    if role is not None:
        if (state.cluster_id, state.controller_port) != (role.cluster_id, role.controller_port):
            raise BrokerError(f"the broker in {data_dir} belongs to another cluster")
        state.node_id, state.voters, state.replication = role.node_id, role.voters, role.replication
    formatted = (data_dir / "log" / "meta.properties").is_file()
    if formatted and settings.authentication and not state.credentials_in_metadata:
        raise _unauthenticated_storage(data_dir)
    state.port, state.host, state.pid = settings.port, settings.host, None
    state.authentication = settings.authentication
    secrets = secrets_dir(settings)
    if state.credentials_in_metadata and state.secrets_dir != str(secrets):
        raise BrokerError(
            f"the broker's storage in {data_dir} holds the users whose passwords are in "
            f"{state.secrets_dir}, not those in {secrets}"
        )
    state.secrets_dir = str(secrets)
    credentials = broker_auth.ensure_credentials(secrets) if settings.authentication else None
    if not port_free(state.controller_port):
        if role is not None:  # the other nodes dial it there
            raise BrokerError(f"controller port {state.controller_port} is already in use")
        state.controller_port = free_port()
    config = data_dir / "server.properties"
    config.write_text(server_properties(state, data_dir, settings.advertised_host or settings.host))
    if not formatted:
        _format_storage(jvm, state, config, credentials)
        state.credentials_in_metadata = credentials is not None
    _write_state(data_dir, state)

    with (data_dir / CONSOLE_LOG).open("ab") as console:
        command = _java_command(jvm, "kafka.Kafka", str(config), heap=settings.heap)
        process = subprocess.Popen(
            command, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
            env=_broker_environment(credentials),
        )  # fmt: skip
    state.pid = process.pid
    _write_state(data_dir, state)
    return process


def running(data_dir: Path) -> bool:
    """Whether the broker's process is alive (no connection to it: cheap enough to poll)."""
    state = _read_state(data_dir.resolve())
    return bool(state and state.pid and _process_alive(state.pid, data_dir.resolve()))


def status(data_dir: Path) -> BrokerStatus:
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    running = bool(state and state.pid and _process_alive(state.pid, data_dir))
    reachable = bool(
        running and state and broker_reachable(client_settings(data_dir), timeout_s=2.0)
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
