"""The `mbd` command line: one entry point that starts any part of the platform.

Each subcommand builds its settings from the environment (``MBD_*``), lets the flags override
them, and hands them to the part it starts. Errors a user can fix are printed in one line with
exit status 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.logs import configure_logging
from common.settings import (
    BrokerSettings,
    GatewaySettings,
    JvmSettings,
    RegistrySettings,
    SimulatorSettings,
    WireSettings,
)

Handler = Callable[[argparse.Namespace], int]
LAKE_HELP = "the lake's folder or URI (MBD_LAKE_URI, data/lake)"


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags the user actually gave, so unset flags leave env/defaults alone."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _lake(args: argparse.Namespace) -> dict[str, Any]:
    """``lake=`` for a service's settings when ``--lake`` was given."""
    from common.settings import LakeSettings

    return {"lake": LakeSettings(uri=args.lake)} if getattr(args, "lake", None) else {}


def cmd_setup(args: argparse.Namespace) -> int:
    from infra.jars import ensure_jars, jar_count

    jvm = JvmSettings()
    fetched = ensure_jars(jvm, force=args.force)
    verb = "fetched" if fetched else "already current:"
    print(
        f"jars {verb} {jar_count(jvm.broker_jars)} broker jars in {jvm.broker_jars}, "
        f"{jar_count(jvm.spark_jars)} Spark connector jars in {jvm.spark_jars}"
    )
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from infra import kafka_cluster
    from infra.jars import ensure_jars

    settings = BrokerSettings(**_overrides(args, "port", "data_dir", "host", "nodes"))
    if args.action == "start":
        jvm = JvmSettings()
        ensure_jars(jvm)
        nodes = kafka_cluster.start(settings, jvm)
        login = kafka_cluster.client_settings(settings.data_dir)
        pids = ", ".join(str(node.pid) for node in nodes)
        print(
            f"{len(nodes)} broker(s) up at {login.bootstrap_servers} (pid {pids}), replication "
            f"{login.replication_factor}, data in {settings.data_dir.resolve()}, "
            f"{kafka_cluster.login_summary(login)}"
        )
        return 0
    if args.action == "status":
        nodes = kafka_cluster.status(settings.data_dir)
        if not any(node.running for node in nodes):
            print(f"no broker running for {settings.data_dir.resolve()}")
            return 3
        for node in nodes:
            health = "answering" if node.reachable else "NOT answering"
            state = f"running (pid {node.pid}), {health}" if node.running else "NOT running"
            print(f"broker on port {node.port}: {state}")
        return 0 if all(node.reachable for node in nodes) else 1
    if args.action == "rotate-password":
        from infra.broker_auth import rotate_client_password

        login = kafka_cluster.client_settings(settings.data_dir)
        if not login.authenticates or login.sasl_password_file is None:
            print(f"mbd: the broker of {settings.data_dir} does not authenticate", file=sys.stderr)
            return 2
        rotate_client_password(login, login.sasl_password_file)
        print(
            f"new password of {login.sasl_username!r} in {login.sasl_password_file}; restart the "
            "services that use it (connections already open stay up)"
        )
        return 0
    stopper = kafka_cluster.stop if args.action == "stop" else kafka_cluster.kill
    done = "stopped" if args.action == "stop" else "killed"
    if stopper(settings.data_dir):
        print(f"broker(s) of {settings.data_dir.resolve()} {done}")
    else:
        print(f"no broker was running for {settings.data_dir.resolve()}")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from infra.certs import DEFAULT_HOSTS, make_certs

    hosts = tuple(h.strip() for h in args.hosts.split(",") if h.strip()) if args.hosts else None
    files = make_certs(
        **_overrides(args, "env_file", "kafka_env_file", "days"),
        **({"folder": args.dir} if args.dir else {}),
        hosts=hosts or DEFAULT_HOSTS,
        renew=args.renew,
    )
    print(
        f"CA {files.ca_cert}, broker keystore {files.broker_keystore} (0600); "
        f"secrets in {files.env_file} and {files.kafka_env_file} (0600)"
    )
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    settings = GatewaySettings(**_overrides(args, "host", "port", "workers"))
    # Workers build their own app from the environment, so pass the flags on through it.
    for name in ("host", "port", "workers"):
        os.environ[f"MBD_GATEWAY_{name.upper()}"] = str(getattr(settings, name))
    uvicorn.run(
        "ingest.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=settings.access_log,
    )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from infra.up import UpSettings, up

    return up(UpSettings(**_overrides(args, "data_dir", "devices", "brokers", "spark_workers")))


def cmd_status(args: argparse.Namespace) -> int:
    from infra.up import UpSettings, status

    report = status(UpSettings(**_overrides(args, "data_dir")))
    print(json.dumps(report, indent=1, default=str))
    services = report["services"].values()
    healthy = all(entry["running"] or entry.get("finished") for entry in services)
    return 0 if services and healthy else 1


def cmd_api(args: argparse.Namespace) -> int:
    from api.main import serve
    from common.settings import ApiSettings

    serve(ApiSettings(**_overrides(args, "host", "port")))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from ingest.devices import DeviceRegistry

    settings = GatewaySettings(**_overrides(args, "devices_file"))
    registry = DeviceRegistry(settings.devices_file)
    if args.action == "add":
        if not args.device_ids:
            print("mbd: devices add needs at least one device id", file=sys.stderr)
            return 2
        issued = registry.add(args.device_ids)
        print(
            json.dumps(issued, indent=1)
            if args.json
            else "\n".join(f"{device}\t{token}" for device, token in issued.items())
        )
        return 0
    if args.action == "revoke":
        removed = sum(registry.revoke(device) for device in args.device_ids)
        print(f"revoked {removed} token(s)")
        return 0
    if args.action == "forget":
        return _forget(args, registry)
    for device, tokens in sorted(registry.devices().items()):
        print(f"{device}\t{tokens} token(s)")
    return 0


def _forget(args: argparse.Namespace, registry: Any) -> int:
    import getpass

    from common.erasure import forget
    from common.settings import LakeSettings

    if not args.device_ids:
        print("mbd: devices forget needs a device id", file=sys.stderr)
        return 2
    lake = LakeSettings(**({"uri": args.lake} if args.lake else {}))
    models = RegistrySettings(**({"dir": args.registry_dir} if args.registry_dir else {}))
    for device in args.device_ids:
        erasure = forget(
            device,
            lake=lake,
            devices=registry,
            registry_dir=models.dir,
            requested_by=f"cli:{getpass.getuser()}",
        )
        print(json.dumps(erasure.as_dict()))
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from common import lake as tables
    from common.erasure import purge_due
    from common.settings import LakeSettings, StreamSettings

    lake = LakeSettings(**({"uri": args.lake} if args.lake else {}))
    if args.action == "migrate":
        checkpoint = args.checkpoint or StreamSettings().checkpoint_dir
        converted = tables.migrate(lake, checkpoint_dir=checkpoint)
        print(json.dumps({"converted_rows": converted}))
        return 0
    if args.action == "compact":
        done = tables.compact(lake)
        print(json.dumps({"compacted": done, "erased_files_purged": purge_due(lake)}))
        return 0
    tables.refuse_parquet_lake(lake)
    for status in tables.lake_status(lake):
        line = status.as_dict()
        for end in ("oldest_window_ms", "newest_window_ms"):
            if line[end] is not None:
                line[end] = datetime.fromtimestamp(line[end] / 1000, UTC).isoformat()
        print(json.dumps(line))
    return 0


def duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 90s, 10m or 1h"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return seconds


def _fault_rates(args: argparse.Namespace) -> Any:
    from dataclasses import fields, replace

    from simulators.phone import FaultRates

    rates = FaultRates.preset(args.faults)
    names = {f.name for f in fields(FaultRates)}
    for item in args.fault or []:
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in names:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(names))}")
        try:
            rates = replace(rates, **{name: float(value)})
        except ValueError:
            raise ValueError(f"fault {name} needs a number, got {value!r}") from None
    return rates


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.main import replay_dataset, simulate_fleet

    sim = SimulatorSettings(
        **_overrides(args, "devices", "labelled_fraction", "interval_s", "tokens_file"),
        **({"gateway_url": args.gateway} if args.gateway else {}),
    )
    gateway = GatewaySettings(**_overrides(args, "devices_file"))
    if args.mode == "replay":
        stats = replay_dataset(
            sim, gateway, WireSettings(), path=args.file, speed=args.speed,
            label_map=args.label_map, report=args.report, quiet=args.quiet,
        )  # fmt: skip
    else:
        stats = simulate_fleet(
            sim, gateway, duration_s=args.duration, seed=args.seed, faults=_fault_rates(args),
            dwell_scale=args.dwell_scale, report=args.report, quiet=args.quiet,
            truth_file=args.truth,
        )  # fmt: skip
    print(json.dumps(stats.summary()))
    return 0 if stats.given_up == 0 else 1


def cmd_stream(args: argparse.Namespace) -> int:
    from common.settings import SparkSettings, StreamSettings
    from common.spark import build_spark_session
    from streaming import job

    spark_overrides = {"master": args.master} if args.master else {}
    settings = StreamSettings(
        **_overrides(args, "trigger_s", "checkpoint_dir"),
        **_lake(args),
        spark=SparkSettings(**spark_overrides),
    )
    spark = build_spark_session(settings.spark, JvmSettings(), app_name="mbd-stream")
    query = job.start(spark, settings, available_now=args.available_now)
    try:
        if args.available_now:
            job.wait_until_drained(query)
        else:
            query.awaitTermination()
    except KeyboardInterrupt:
        pass
    finally:
        job.stop(query)
    if query.exception() is not None:
        print(f"mbd: streaming query failed: {query.exception()}", file=sys.stderr)
        return 1
    print(json.dumps(query.lastProgress and {"last_batch": query.lastProgress["batchId"]}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from common.settings import SparkSettings, TrainSettings
    from models.main import train

    settings = TrainSettings(
        **_overrides(
            args, "partitions", "pretrain_rounds", "finetune_rounds", "local_epochs", "as_of"
        ),
        **_lake(args),
        **({"registry": RegistrySettings(dir=args.registry_dir)} if args.registry_dir else {}),
        **({"spark": SparkSettings(master=args.master)} if args.master else {}),
    )
    return train(settings, every_s=args.every, quiet=args.quiet)


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import Registry
    from models.registry_cli import run_models_command

    settings = RegistrySettings(**_overrides(args, "dir"))
    registry = Registry(settings.dir)
    version, reason = getattr(args, "version", None), getattr(args, "reason", None)
    print(run_models_command(registry, action=args.action, version=version, reason=reason))
    return 0


def _sending_options(parser: argparse.ArgumentParser, *, after_mode: bool = False) -> None:
    """Options of `simulate` and `simulate replay`, accepted before or after the mode.

    After the mode their defaults are suppressed, so they do not overwrite what was given
    before it (argparse lets a subparser's defaults win).
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if after_mode else {}
    parser.add_argument("--gateway", help="gateway base URL (MBD_SIM_GATEWAY_URL)", **default)
    parser.add_argument(
        "--interval", dest="interval_s", type=float, help="seconds per batch", **default
    )
    parser.add_argument(
        "--tokens", dest="tokens_file", type=Path, help="saved device tokens", **default
    )
    parser.add_argument(
        "--devices-file", type=Path, help="the gateway's device registry", **default
    )
    parser.add_argument(
        "--report", type=Path, help="write tallies and accepted keys as JSON", **default
    )
    parser.add_argument("--quiet", action="store_true", help="no live display", **default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    setup = commands.add_parser("setup", help="fetch the Kafka and Spark jars from Maven Central")
    setup.add_argument("--force", action="store_true", help="fetch even if the cache is current")
    setup.set_defaults(handler=cmd_setup)

    broker = commands.add_parser("broker", help="the embedded Apache Kafka broker (KRaft)")
    broker.add_argument("action", choices=["start", "stop", "status", "kill", "rotate-password"])
    broker.add_argument("--port", type=int, help="client port (MBD_BROKER_PORT, 9092)")
    broker.add_argument(
        "--nodes", type=int, help="brokers on this machine, 1 or 3 (MBD_BROKER_NODES, 1)"
    )
    broker.add_argument("--host", help="address to listen on (MBD_BROKER_HOST, 127.0.0.1)")
    broker.add_argument(
        "--data-dir", type=Path, help="log and state folder (MBD_BROKER_DATA_DIR, data/kafka)"
    )
    broker.set_defaults(handler=cmd_broker)

    certs = commands.add_parser(
        "certs", help="a CA, the Kafka broker's TLS certificate and the secrets of docker compose"
    )
    certs.add_argument("--dir", type=Path, help="where the PEM files go (infra/certs)")
    certs.add_argument(
        "--hosts", help="names clients dial the broker by (kafka-1,kafka-2,kafka-3,localhost,...)"
    )
    certs.add_argument("--days", type=int, help="validity of the certificates (825)")
    certs.add_argument("--env-file", type=Path, help="secrets of the services (infra/compose.env)")
    certs.add_argument(
        "--kafka-env-file", type=Path, help="the broker's secrets (infra/compose-kafka.env)"
    )
    certs.add_argument("--renew", action="store_true", help="new certificates (secrets kept)")
    certs.set_defaults(handler=cmd_certs)

    gateway = commands.add_parser("gateway", help="the ingest gateway (HTTP → Kafka)")
    gateway.add_argument("--host", help="listen address (MBD_GATEWAY_HOST, 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="listen port (MBD_GATEWAY_PORT, 8000)")
    gateway.add_argument("--workers", type=int, help="uvicorn worker processes (1)")
    gateway.set_defaults(handler=cmd_gateway)

    up = commands.add_parser("up", help="the whole pipeline on this machine, supervised")
    up.add_argument("--data-dir", type=Path, help="where everything keeps its data (data)")
    up.add_argument("--devices", type=int, help="simulated phones (100; 0 for none)")
    up.add_argument("--brokers", type=int, help="Kafka brokers, 1 or 3 (replication 3)")
    up.add_argument(
        "--spark-workers", type=int, help="run Spark as a standalone cluster of N workers (0)"
    )
    up.set_defaults(handler=cmd_up)
    status = commands.add_parser("status", help="services, lag, lake size, promoted model")
    status.add_argument("--data-dir", type=Path, help="the data folder of `mbd up` (data)")
    status.set_defaults(handler=cmd_status)

    api = commands.add_parser("api", help="the prediction API and live dashboard")
    api.add_argument("--host", help="listen address (MBD_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (MBD_API_PORT, 8001)")
    api.set_defaults(handler=cmd_api)

    devices = commands.add_parser("devices", help="phones allowed to post, and their tokens")
    devices.add_argument(
        "action",
        choices=["add", "list", "revoke", "forget"],
        help="forget: erase the phone's data everywhere (see README)",
    )
    devices.add_argument("device_ids", nargs="*", metavar="DEVICE_ID")
    devices.add_argument(
        "--devices-file", type=Path, help="registry (MBD_GATEWAY_DEVICES_FILE, data/devices.json)"
    )
    devices.add_argument("--json", action="store_true", help="print issued tokens as JSON")
    devices.add_argument("--lake", help=f"forget: {LAKE_HELP}")
    devices.add_argument("--registry-dir", type=Path, help="forget: registry (MBD_REGISTRY_DIR)")
    devices.set_defaults(handler=cmd_devices)

    lake = commands.add_parser("lake", help="the lake's Delta tables: status, compact, migrate")
    lake.add_argument("action", choices=["status", "compact", "migrate"])
    lake.add_argument("--lake", help=LAKE_HELP)
    lake.add_argument(
        "--checkpoint", type=Path, help="migrate: the stream's checkpoint (data/checkpoints/stream)"
    )
    lake.set_defaults(handler=cmd_lake)

    stream = commands.add_parser("stream", help="the streaming job: Kafka → windows → lake")
    stream.add_argument("--trigger", dest="trigger_s", type=float, help="seconds per micro-batch")
    stream.add_argument("--checkpoint", dest="checkpoint_dir", type=Path, help="checkpoint folder")
    stream.add_argument("--lake", help=LAKE_HELP)
    stream.add_argument("--master", help="Spark master URL (MBD_SPARK_MASTER, local[*])")
    stream.add_argument(
        "--available-now", action="store_true", help="drain what Kafka holds now, then stop"
    )
    stream.set_defaults(handler=cmd_stream)

    simulate = commands.add_parser(
        "simulate", help="a fleet of simulated phones (or `simulate replay FILE`)"
    )
    simulate.add_argument("--devices", type=int, help="number of phones (MBD_SIM_DEVICES, 100)")
    simulate.add_argument("--duration", type=duration, default=60.0, help="e.g. 90s, 10m (60s)")
    simulate.add_argument("--labelled-fraction", type=float, help="phones that send labels (0.2)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--dwell-scale", type=float, default=1.0, help="shorter activities < 1")
    simulate.add_argument(
        "--faults", choices=["none", "light", "heavy"], default="none", help="fault preset"
    )
    simulate.add_argument(
        "--fault", action="append", metavar="NAME=RATE", help="set one fault rate, e.g. resend=0.1"
    )
    simulate.add_argument(
        "--truth", type=Path, help="append each phone's activity changes here (JSON lines)"
    )
    _sending_options(simulate)
    simulate.set_defaults(handler=cmd_simulate, mode="fleet")
    modes = simulate.add_subparsers(dest="mode", metavar="MODE")
    replay = modes.add_parser("replay", help="replay a WISDM raw file, one phone per user")
    replay.add_argument("file", type=Path)
    replay.add_argument("--speed", type=float, default=1.0, help="times faster than real time")
    replay.add_argument("--label-map", help="e.g. A=walking,B=jogging (WISDM 2019 codes)")
    _sending_options(replay, after_mode=True)

    train = commands.add_parser("train", help="retrain the activity model from the lake")
    train.add_argument("--every", type=duration, help="retrain on a schedule, e.g. 10m")
    train.add_argument("--lake", help=LAKE_HELP)
    train.add_argument(
        "--as-of",
        type=int,
        metavar="VERSION",
        help="train on this version of the lake's windows table (a model's lake_version)",
    )
    train.add_argument("--registry-dir", type=Path, help="registry (MBD_REGISTRY_DIR)")
    train.add_argument("--master", help="Spark master URL (MBD_SPARK_MASTER, local[*])")
    train.add_argument("--partitions", type=int, help="partial models per round (2)")
    train.add_argument("--pretrain-rounds", type=int, help="most rounds per autoencoder layer")
    train.add_argument("--finetune-rounds", type=int, help="most fine-tuning rounds")
    train.add_argument("--local-epochs", type=int, help="epochs per partial model per round")
    train.add_argument("--quiet", action="store_true", help="no live display")
    train.set_defaults(handler=cmd_train)

    _models_parser(commands)
    return parser


def _models_parser(commands: Any) -> None:
    from models.registry_cli import version_number

    models = commands.add_parser("models", help="versions of the activity model and CURRENT")
    where = "registry folder (MBD_REGISTRY_DIR, data/registry)"
    models.add_argument("--registry-dir", dest="dir", type=Path, help=where)
    models.set_defaults(handler=cmd_models)
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    # Given after the action too; suppressed there so it does not undo one given before.
    after = {"default": argparse.SUPPRESS, "dest": "dir", "type": Path, "help": where}
    actions.add_parser("list", help="every version; * marks the promoted one").add_argument(
        "--registry-dir", **after
    )
    show = actions.add_parser("show", help="figures of a version (default: the promoted one)")
    show.add_argument("version", nargs="?", type=version_number, metavar="VERSION")
    show.add_argument("--registry-dir", **after)
    promote = actions.add_parser("promote", help="point CURRENT at VERSION once it loads")
    promote.add_argument("version", type=version_number, metavar="VERSION")
    rollback = actions.add_parser("rollback", help="back to the version promoted before")
    for parser in (promote, rollback):
        parser.add_argument("--reason", help="recorded in history.jsonl")
        parser.add_argument("--registry-dir", **after)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            # a check across fields (a model validator) names no field: its message names them
            field = ".".join(str(part) for part in problem["loc"]) or "combination"
            print(f"mbd: bad setting {field}: {problem['msg']}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as error:  # BrokerError, DeviceRegistryError, …: fixable
        print(f"mbd: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
