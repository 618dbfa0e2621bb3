"""Several embedded Apache Kafka brokers on this machine run as one replicated cluster.

Node N of a cluster in ``data_dir`` is an ordinary broker of :mod:`infra.broker` in
``data_dir/node-N``, with client port ``port + N - 1``. Every node is both broker and controller,
the three (or five) controllers form the quorum, and every topic keeps one copy per node (at most
three) with all but one needed for a write (see :func:`infra.broker.replication_properties`).
``cluster.json`` in ``data_dir`` fixes what must not change between starts: the cluster id and
each node's ports. All nodes share the SASL users of ``data_dir/secrets``.

A one-node ``BrokerSettings`` is the plain broker in ``data_dir`` itself: the functions here
take either, so callers need not care which they run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.settings import BrokerSettings, JvmSettings, KafkaSettings, default_min_insync
from infra import broker
from infra.broker import BrokerError, BrokerStatus, NodeRole

log = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
MAX_REPLICATION = 3


@dataclass(frozen=True, kw_only=True)
class Node:
    node_id: int
    data_dir: Path
    port: int
    controller_port: int


def replication(nodes: int) -> int:
    return min(nodes, MAX_REPLICATION)


def _cluster_file(data_dir: Path) -> Path:
    return data_dir.resolve() / CLUSTER_FILE


def is_cluster(data_dir: Path) -> bool:
    return _cluster_file(data_dir).is_file()


def _read(data_dir: Path) -> tuple[str, list[Node]]:
    raw = json.loads(_cluster_file(data_dir).read_text())
    nodes = [
        Node(
            node_id=n["node_id"],
            data_dir=data_dir.resolve() / f"node-{n['node_id']}",
            port=n["port"],
            controller_port=n["controller_port"],
        )
        for n in raw["nodes"]
    ]
    return raw["cluster_id"], nodes


def nodes(data_dir: Path) -> list[Node]:
    """The nodes of the cluster in ``data_dir`` (none when it holds a plain broker)."""
    return _read(data_dir)[1] if is_cluster(data_dir) else []


def _plan(settings: BrokerSettings) -> tuple[str, list[Node]]:
    """The cluster of ``settings``: as its file says, or new ports and a new id (written)."""
    data_dir = settings.data_dir.resolve()
    if is_cluster(data_dir):
        cluster_id, known = _read(data_dir)
        if len(known) != settings.nodes or known[0].port != settings.port:
            raise BrokerError(
                f"the cluster in {data_dir} has {len(known)} nodes from port {known[0].port}, "
                f"not {settings.nodes} from port {settings.port}"
            )
        return cluster_id, known
    if (data_dir / broker.STATE_FILE).is_file():
        raise BrokerError(f"{data_dir} holds a one-node broker; give the cluster another folder")
    planned = [
        Node(
            node_id=n,
            data_dir=data_dir / f"node-{n}",
            port=settings.port + n - 1,
            controller_port=broker.free_port(),
        )
        for n in range(1, settings.nodes + 1)
    ]
    cluster_id = broker.new_cluster_id()
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "cluster_id": cluster_id,
        "nodes": [
            {"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port}
            for n in planned
        ],
    }
    _cluster_file(data_dir).write_text(json.dumps(body, indent=1))
    return cluster_id, planned


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (a cluster's client ports)."""
    while True:
        port = broker.free_port()
        if port + count <= 65536 and all(broker.port_free(port + n) for n in range(1, count)):
            return port


def node_settings(settings: BrokerSettings, node: Node) -> BrokerSettings:
    return settings.model_copy(
        update={
            "data_dir": node.data_dir,
            "port": node.port,
            "nodes": 1,
            "secrets_dir": broker.secrets_dir(settings),
        }
    )


def _role(settings: BrokerSettings, node: Node, cluster_id: str, planned: list[Node]) -> NodeRole:
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in planned)
    return NodeRole(
        cluster_id=cluster_id,
        node_id=node.node_id,
        controller_port=node.controller_port,
        voters=voters,
        replication=replication(settings.nodes),
    )


def launch_node(
    settings: BrokerSettings, jvm: JvmSettings, node_id: int
) -> tuple[Node, subprocess.Popen[bytes] | None]:
    """Launch node ``node_id`` of the cluster of ``settings`` without waiting for it (no
    process when it already runs): a node answers only once most of the quorum is up."""
    cluster_id, planned = _plan(settings)
    node = next(n for n in planned if n.node_id == node_id)
    role = _role(settings, node, cluster_id, planned)
    return node, broker.launch(node_settings(settings, node), jvm, role)


def start(settings: BrokerSettings, jvm: JvmSettings) -> list[BrokerStatus]:
    """Start every node of ``settings`` not running yet, then wait until each answers."""
    if settings.nodes == 1:
        return [broker.start(settings, jvm)]
    launched = [launch_node(settings, jvm, n) for n in range(1, settings.nodes + 1)]
    try:
        for node, process in launched:
            if process is not None:
                broker.wait_until_ready(process, node.data_dir, settings.start_timeout_s)
    except BrokerError:
        for _, process in launched:
            if process is not None:
                process.kill()
        raise
    return [broker.status(node.data_dir) for node, _ in launched]


def start_node(settings: BrokerSettings, jvm: JvmSettings, node_id: int) -> BrokerStatus:
    """Bring one node of a running cluster back (after :func:`kill_node`) and wait for it."""
    node, process = launch_node(settings, jvm, node_id)
    if process is not None:
        broker.wait_until_ready(process, node.data_dir, settings.start_timeout_s)
    return broker.status(node.data_dir)


def _node_dirs(data_dir: Path) -> list[Path]:
    return [node.data_dir for node in nodes(data_dir)] or [data_dir.resolve()]


def stop(data_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stop every node (a plain broker too), all at once; False when none was running.

    One after another, the last node left would wait in its controlled shutdown for a quorum
    that has gone, until killed after ``timeout_s``.
    """
    dirs = _node_dirs(data_dir)
    with ThreadPoolExecutor(max_workers=len(dirs)) as pool:
        return any(list(pool.map(lambda node_dir: broker.stop(node_dir, timeout_s), dirs)))


def kill(data_dir: Path) -> bool:
    """SIGKILL every node (a plain broker too); False when none was running."""
    return any([broker.kill(node_dir) for node_dir in _node_dirs(data_dir)])


def kill_node(data_dir: Path, node_id: int) -> bool:
    """SIGKILL one node of the cluster (for fault tests and benchmarks)."""
    return broker.kill(data_dir.resolve() / f"node-{node_id}")


def status(data_dir: Path) -> list[BrokerStatus]:
    return [broker.status(node_dir) for node_dir in _node_dirs(data_dir)]


def running(data_dir: Path) -> bool:
    """Whether any node of ``data_dir`` runs (the cluster serves while most do)."""
    return any(broker.running(node_dir) for node_dir in _node_dirs(data_dir))


def client_settings(data_dir: Path, **overrides: object) -> KafkaSettings:
    """How a client on this machine reaches the broker or cluster of ``data_dir``: every node's
    address (a client then starts from whichever answers), its login and its replication."""
    planned = nodes(data_dir)
    if not planned:
        return broker.client_settings(data_dir, **overrides)
    servers = ",".join(f"127.0.0.1:{node.port}" for node in planned)
    fields: dict[str, Any] = {
        "bootstrap_servers": servers,
        "replication_factor": replication(len(planned)),
    }
    return broker.client_settings(planned[0].data_dir, **(fields | overrides))


def client_environment(settings: BrokerSettings) -> dict[str, str]:
    """``MBD_KAFKA_*`` variables for a service on this machine to use the brokers of
    ``settings`` (known before they start: the password travels as its file's path)."""
    env = broker.client_environment(settings)
    if settings.nodes > 1:
        servers = ",".join(f"127.0.0.1:{settings.port + n}" for n in range(settings.nodes))
        copies = replication(settings.nodes)
        env |= {
            "MBD_KAFKA_BOOTSTRAP_SERVERS": servers,
            "MBD_KAFKA_REPLICATION_FACTOR": str(copies),
            "MBD_KAFKA_MIN_INSYNC_REPLICAS": str(default_min_insync(copies)),
        }
    return env


def login_summary(login: KafkaSettings) -> str:
    if not login.authenticates:
        return "no authentication"
    return (
        f"clients log in as {login.sasl_username!r} ({login.sasl_mechanism}, password in "
        f"{login.sasl_password_file})"
    )


@dataclass(frozen=True, kw_only=True)
class PartitionView:
    """Where one partition lives now, as the cluster's metadata says."""

    topic: str
    partition: int
    leader: int  # -1 while it has none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


def partitions(kafka: KafkaSettings, topics: list[str]) -> list[PartitionView]:
    """Leader, replicas and in-sync replicas of every partition of ``topics``."""
    from common.kafka import make_admin

    admin = make_admin(kafka, request_timeout_ms=5000, bootstrap_timeout_ms=5000)
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    return sorted(
        (
            PartitionView(
                topic=topic["name"],
                partition=p["partition_index"],
                leader=p["leader_id"],
                replicas=tuple(p["replica_nodes"]),
                isr=tuple(p["isr_nodes"]),
            )
            for topic in described
            for p in topic["partitions"]
        ),
        key=lambda view: (view.topic, view.partition),
    )


def leader_counts(views: list[PartitionView]) -> dict[int, int]:
    """Partitions led by each node id (nodes leading none left out)."""
    counts: dict[int, int] = {}
    for view in views:
        if view.leader >= 0:
            counts[view.leader] = counts.get(view.leader, 0) + 1
    return counts


def under_replicated(kafka: KafkaSettings, topics: list[str]) -> list[str]:
    """``topic/partition`` of each partition without a leader or with a copy out of sync."""
    views = partitions(kafka, topics)
    if not views:
        return [f"{topic}/?" for topic in topics]
    return [f"{v.topic}/{v.partition}" for v in views if v.under_replicated or v.leader < 0]


def wait_fully_replicated(kafka: KafkaSettings, topics: list[str], timeout_s: float = 120) -> float:
    """Seconds until every partition of ``topics`` has a leader and all its copies in sync."""
    from kafka.errors import KafkaError

    started = time.monotonic()
    lagging: list[str] = []
    while time.monotonic() - started < timeout_s:
        try:
            lagging = under_replicated(kafka, topics)
        except (KafkaError, OSError) as error:  # a node still starting: no metadata yet
            lagging = [f"(metadata: {type(error).__name__})"]
        if not lagging:
            return time.monotonic() - started
        time.sleep(0.25)
    raise BrokerError(f"partitions still under-replicated after {timeout_s:.0f} s: {lagging}")
