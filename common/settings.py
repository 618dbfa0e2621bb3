"""Settings for every part of mbd, read from the environment (prefix ``MBD_``).

Each group is its own pydantic-settings class with its own prefix, so a service composes the
groups it needs and every variable has one meaning wherever it is read. Validators fail fast
and name the bad value.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.files import read_secret
from common.topics import PREDICTIONS_TOPIC, READINGS_TOPIC

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLASSES = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")

_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:(\d{1,5})$")
_LOCAL_MASTER = re.compile(r"local(?:\[(\*|\d+)(?:,\d+)?\])?")  # group 1: its cores
_SPARK_MASTER = re.compile(rf"^({_LOCAL_MASTER.pattern}|spark://.+|yarn|k8s://.+|mesos://.+)$")


def default_min_insync(replication: int) -> int:
    """Copies a write needs before it is acknowledged, unless set: all but one (at least one)."""
    return max(1, replication - 1)


KafkaSecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSettings(BaseSettings):
    """Where the broker is, what the topics are called, and how clients prove who they are.

    ``security_protocol`` SASL_PLAINTEXT (loopback) or SASL_SSL (between hosts) needs a user
    and a password, given inline (``MBD_KAFKA_SASL_PASSWORD``) or as a 0600 file
    (``MBD_KAFKA_SASL_PASSWORD_FILE``, what ``mbd up`` hands its services; it wins over an
    inline one). The file is read when the settings are built, so a missing or
    readable-by-others file fails at once.
    """

    # A validation error must not echo an inline password back (pydantic quotes the input).
    model_config = SettingsConfigDict(
        env_prefix="MBD_KAFKA_", frozen=True, hide_input_in_errors=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    readings_topic: str = READINGS_TOPIC
    predictions_topic: str = PREDICTIONS_TOPIC
    # Kafka ages records out rather than deleting one phone's: an erased phone's raw readings
    # stay in the topics (unreadable to the lake, which skips erased phones) until then.
    retention_h: float = Field(
        default=168.0, gt=0, description="how long the topics mbd creates keep their records"
    )
    partitions: int = Field(default=4, ge=1, le=1000)
    replication_factor: int = Field(
        default=1, ge=1, le=7, description="copies of each topic mbd creates (3 on a cluster)"
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="copies a write needs before it is acknowledged; unset: all but one",
    )
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(
        default=None, description="0600 file holding the SASL password (instead of inline)"
    )
    ssl_cafile: Path | None = Field(
        default=None, description="PEM CA that signed the brokers' certificates (SSL, SASL_SSL)"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            match = _HOST_PORT.match(server.strip())
            if not match or not 0 < int(match.group(1)) < 65536:
                raise ValueError(f"bootstrap server {server!r} is not host:port")
        return value

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _known_choice(cls, value: object, info: ValidationInfo) -> object:
        choices = get_args(KafkaSecurityProtocol if info.field_name == "security_protocol"
                           else KafkaSaslMechanism)  # fmt: skip
        if value not in choices:
            raise ValueError(f"{info.field_name} {value!r} is not one of {', '.join(choices)}")
        return value

    @field_validator("sasl_username")
    @classmethod
    def _plain_username(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", value):
            raise ValueError(f"sasl_username {value!r} is not 1-64 of A-Z a-z 0-9 . _ @ -")
        return value

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: object) -> object:
        """Read ``sasl_password_file`` into ``sasl_password``: a file, when named, is where the
        password comes from (so a file handed down wins over an inherited inline password)."""
        if not isinstance(data, dict) or not data.get("sasl_password_file"):
            return data
        path = Path(data["sasl_password_file"])
        try:
            password = read_secret(path)
        except FileNotFoundError:
            raise ValueError(f"sasl_password_file {path} does not exist") from None
        except (PermissionError, ValueError) as error:
            raise ValueError(f"sasl_password_file: {error}") from None
        return {**data, "sasl_password": SecretStr(password)}

    @model_validator(mode="after")
    def _complete_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            missing = "sasl_username" if not self.sasl_username else "sasl_password"
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and "
                f"sasl_password (or sasl_password_file); {missing} is not set"
            )
        if self.ssl_cafile is not None:
            if self.security_protocol not in ("SSL", "SASL_SSL"):
                raise ValueError(
                    f"ssl_cafile {self.ssl_cafile} is only used with SSL or SASL_SSL, "
                    f"security_protocol is {self.security_protocol}"
                )
            if not self.ssl_cafile.is_file():
                raise ValueError(f"ssl_cafile {self.ssl_cafile} is not a file")
        if self.min_insync > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas {self.min_insync} is more than replication_factor "
                f"{self.replication_factor}: no write could ever be acknowledged"
            )
        return self

    @property
    def min_insync(self) -> int:
        """``min_insync_replicas``, or all copies but one (at least one)."""
        return self.min_insync_replicas or default_min_insync(self.replication_factor)

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",")]

    @property
    def authenticates(self) -> bool:
        return self.security_protocol.startswith("SASL_")


class JvmSettings(BaseSettings):
    """Where the jars fetched by infra/pom.xml live, and which Java runs them."""

    model_config = SettingsConfigDict(env_prefix="MBD_", frozen=True)

    jars_dir: Path = PROJECT_ROOT / ".cache" / "jars"
    java: str = "java"

    @property
    def broker_jars(self) -> Path:
        return self.jars_dir / "broker"

    @property
    def spark_jars(self) -> Path:
        return self.jars_dir / "spark"


class BrokerSettings(BaseSettings):
    """The embedded Apache Kafka broker (KRaft: broker and controller in one JVM), or a cluster
    of ``nodes`` of them on this machine (client ports ``port`` upwards, ``data_dir/node-N``)."""

    model_config = SettingsConfigDict(env_prefix="MBD_BROKER_", frozen=True)

    nodes: int = Field(default=1, description="brokers on this machine: 1, or 3 (replication 3)")

    host: str = "127.0.0.1"
    advertised_host: str | None = None  # what clients are told to dial; defaults to host
    port: int = Field(default=9092, ge=1, le=65535)
    data_dir: Path = Path("data/kafka")
    heap: str = "512m"
    start_timeout_s: float = Field(default=60.0, gt=0)
    # Off only for bench/ingest.py's same-run comparison: with it off every listener is
    # PLAINTEXT and anyone who can reach the port may read and write every topic.
    authentication: bool = Field(
        default=True, description="SASL on every listener (SCRAM-SHA-512 for clients)"
    )
    secrets_dir: Path | None = Field(
        default=None, description="the SASL users' 0600 password files; unset: <data_dir>/secrets"
    )

    @field_validator("nodes")
    @classmethod
    def _quorum_size(cls, value: int) -> int:
        if value not in (1, 3, 5):  # a KRaft quorum of an even size survives no more losses
            raise ValueError(f"nodes {value} is not 1, 3 or 5 (a controller quorum is odd)")
        return value

    @field_validator("heap")
    @classmethod
    def _heap_size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[kKmMgG]", value):
            raise ValueError(f"heap {value!r} is not a JVM size such as 512m or 2g")
        return value


class SparkSettings(BaseSettings):
    """How mbd's Spark jobs reach a cluster: local[*] by default, any master by configuration."""

    model_config = SettingsConfigDict(env_prefix="MBD_SPARK_", frozen=True)

    master: str = "local[*]"
    shuffle_partitions: int | None = Field(
        default=None,
        ge=1,
        description="spark.sql.shuffle.partitions; unset: one per core of a local master, "
        "4 on a cluster. A streaming checkpoint keeps the count it was started with.",
    )
    driver_memory: str = "2g"
    executor_memory: str = "1g"
    ui_enabled: bool = False
    extra_conf: Annotated[dict[str, str], Field(default_factory=dict)]

    @field_serializer("extra_conf")
    def _keys_only(self, extra_conf: dict[str, str]) -> dict[str, str]:
        """Dumps (a model version's config.json) name the extra settings, never their values:
        ``spark.authenticate.secret`` or a store's key may be among them."""
        return dict.fromkeys(extra_conf, "<redacted>")

    @property
    def partitions_for_shuffle(self) -> int:
        """The shuffle partition count: as set, else one per core of ``local[N]``/``local[*]``
        (a task per core: more, each with its Python runner and state store, only add fixed
        cost to every micro-batch), else 4."""
        if self.shuffle_partitions is not None:
            return self.shuffle_partitions
        local = _LOCAL_MASTER.fullmatch(self.master)
        if local is None:
            return 4
        cores = local.group(1) or "1"
        return (os.cpu_count() or 1) if cores == "*" else int(cores)

    @field_validator("master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        if not _SPARK_MASTER.match(value):
            raise ValueError(
                f"Spark master {value!r} is not local[...], spark://host:port, yarn or k8s://..."
            )
        return value


class WireSettings(BaseSettings):
    """Limits of the wire contract: what a batch from a phone may contain."""

    model_config = SettingsConfigDict(env_prefix="MBD_WIRE_", frozen=True)

    classes: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CLASSES
    max_accel_samples: int = Field(default=1000, ge=1)
    max_gps_fixes: int = Field(default=200, ge=1)
    max_future_ms: int = Field(default=300_000, ge=0)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    @field_validator("classes", mode="before")
    @classmethod
    def _split_classes(cls, value: object) -> object:
        if isinstance(value, str):
            value = [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2:
            raise ValueError(f"need at least two activity classes, got {list(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"activity classes repeat: {list(value)}")
        return value


MIN_TOKEN_CHARS = 16
MIN_TOKEN_BITS = 64.0


def check_token_strength(token: str, *, what: str) -> None:
    """Refuse a token shorter than 16 characters or guessable: its characters' Shannon
    entropy over the whole token must reach 64 bits (``secrets.token_urlsafe(32)`` has ~200)."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{what} is {len(token)} characters; use at least {MIN_TOKEN_CHARS}")
    counts = Counter(token)
    bits = sum(n * math.log2(len(token) / n) for n in counts.values())
    if bits < MIN_TOKEN_BITS:
        raise ValueError(
            f"{what} is too guessable ({bits:.0f} bits of entropy, need {MIN_TOKEN_BITS:.0f}); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


@cache
def default_wire_settings() -> WireSettings:
    """The wire limits from the environment, read once per process."""
    return WireSettings()


class GatewaySettings(BaseSettings):
    """The ingest gateway: HTTP front door that writes accepted batches to Kafka."""

    model_config = SettingsConfigDict(env_prefix="MBD_GATEWAY_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    access_log: bool = False
    devices_file: Path = Path("data/devices.json")
    ack_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=2, ge=1)
    # How long the producer gathers batches into one request to the broker. Each request costs
    # the broker and the producer's thread far more than a record in it: 10 ms rather than 2
    # gave the gateway ~18 % more accepted batches a second on 2 cores (bench/ingest.py).
    linger_ms: int = Field(default=10, ge=0, le=1000)
    rate_per_device: float = Field(
        default=5.0, gt=0, description="requests/s per phone, all workers of a gateway together"
    )
    burst_per_device: int = Field(default=30, ge=1)
    rate_state_file: Path | None = Field(
        default=None,
        description="the buckets the gateway's workers share; default: gateway-<port>.rates "
        "beside the devices file",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    wire: WireSettings = Field(default_factory=WireSettings)

    @property
    def rate_state_path(self) -> Path:
        return self.rate_state_file or self.devices_file.parent / f"gateway-{self.port}.rates"


class SimulatorSettings(BaseSettings):
    """The phone fleet simulator and the dataset replayer."""

    model_config = SettingsConfigDict(env_prefix="MBD_SIM_", frozen=True)

    gateway_url: str = "http://127.0.0.1:8000"
    devices: int = Field(default=100, ge=1)
    labelled_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    interval_s: float = Field(default=2.0, gt=0)
    rate_hz: float = Field(default=20.0, gt=0)
    gps_hz: float = Field(default=1.0, gt=0)
    device_prefix: str = "sim-phone-"
    tokens_file: Path = Path("data/sim-tokens.json")
    max_connections: int = Field(default=200, ge=1)
    give_up_after_s: float = Field(default=120.0, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)


class WindowSettings(BaseSettings):
    """How raw samples become model input: shared by the streaming job and the prediction API."""

    model_config = SettingsConfigDict(env_prefix="MBD_WINDOW_", frozen=True)

    length_s: float = Field(default=10.0, gt=0)
    slide_s: float = Field(default=5.0, gt=0)
    rate_hz: float = Field(default=20.0, gt=0)
    min_coverage: float = Field(default=0.8, gt=0, le=1)

    @property
    def length_ms(self) -> int:
        return round(self.length_s * 1000)

    @property
    def slide_ms(self) -> int:
        return round(self.slide_s * 1000)

    @property
    def samples(self) -> int:
        """Grid points per window: rate × length."""
        return round(self.rate_hz * self.length_s)


class LakeSettings(BaseSettings):
    """Where the lake's Delta tables live and how they are kept: compaction, vacuum, erasure.

    ``uri`` is a local folder (the default) or any URI Delta Lake reads and writes
    (``file:///srv/lake``, ``s3://bucket/lake`` with the store's credentials in the
    environment the way delta-rs and Hadoop read them). It holds three tables:
    ``windows``, ``quarantine`` and ``erasures`` (the append-only erasure log).
    """

    model_config = SettingsConfigDict(env_prefix="MBD_LAKE_", frozen=True)

    uri: str = "data/lake"
    erasure_grace_h: int = Field(
        default=0,
        ge=0,
        description="hours before an erased phone's files are removed from "
        "disk; 0: at once, so no time travel brings its rows back",
    )
    vacuum_retention_h: int = Field(
        default=168,
        ge=0,
        description="files replaced by compaction are kept this long "
        "(time travel to older versions needs them)",
    )
    compact_every_s: float = Field(
        default=3600.0, gt=0, description="how often `mbd up` compacts the lake's small files"
    )
    compact_target_mb: int = Field(default=128, ge=1, description="size of a compacted file")

    @field_validator("uri", mode="before")
    @classmethod
    def _path_or_uri(cls, value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("the lake's uri is empty")
        return value


class RegistrySettings(BaseSettings):
    """Where versioned models live and which one is promoted (the ``CURRENT`` pointer)."""

    model_config = SettingsConfigDict(env_prefix="MBD_REGISTRY_", frozen=True)

    dir: Path = Path("data/registry")


class StreamSettings(BaseSettings):
    """The Structured Streaming job: Kafka → dedupe → clean → windows → lake (+ live scoring)."""

    model_config = SettingsConfigDict(env_prefix="MBD_STREAM_", frozen=True)

    lake: LakeSettings = Field(default_factory=LakeSettings)
    checkpoint_dir: Path = Path("data/checkpoints/stream")
    status_file: Path = Path("data/status/stream.json")
    trigger_s: float = Field(default=2.0, gt=0)
    lateness_s: float = Field(default=10.0, ge=0, description="per-device watermark delay")
    idle_flush_s: float = Field(default=30.0, gt=0, description="flush a silent phone's windows")
    dedupe_horizon_s: float = Field(default=900.0, gt=0)
    timer_s: float = Field(
        default=30.0,
        gt=0,
        description="longest a phone's state timer is set for: bounds how "
        "long --available-now on a normal run's checkpoint waits for the phones it left open",
    )
    saturation_m_s2: float = Field(default=78.0, gt=0)
    spike_m_s2: float = Field(default=30.0, gt=0, description="jump from the batch median")
    max_batch_skew_s: float = Field(default=300.0, gt=0)
    max_offsets_per_trigger: int | None = Field(default=None, ge=1)
    starting_offsets: str = "earliest"
    live_scoring: bool = Field(default=True, description="score windows with the promoted model")
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    # The gateway's limits: a record on the topic that breaks them is quarantined, not windowed.
    wire: WireSettings = Field(default_factory=WireSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)


class ModelSettings(BaseSettings):
    """The shape of the activity model: stacked denoising autoencoder layers under a softmax."""

    model_config = SettingsConfigDict(env_prefix="MBD_MODEL_", frozen=True)

    encoder_units: Annotated[tuple[int, ...], NoDecode] = (256, 128)
    activation: Literal["relu", "elu", "tanh", "sigmoid"] = "relu"
    # Strong corruption, as much as Keras' GaussianNoise takes (its stddev is at most 1): with
    # 0.3 the pretrained features told the activities apart worse than random ones did (a
    # linear probe on held-out phones) and pretraining's gain was inconsistent; with 1.0 it
    # raised macro-F1 in every draw when few phones carry labels (bench/training.py, labels10).
    noise_stddev: float = Field(
        default=1.0, ge=0, le=1, description="denoising corruption, in normalised units"
    )
    dropout: float = Field(default=0.1, ge=0, lt=1)
    # The acceleration's magnitude as a fourth channel of the samples (models/features.py). Off
    # by default: on the training bench it raised held-out macro-F1 when few phones annotate
    # and lowered it when every phone does.
    magnitude_channel: bool = False
    # What the encoders read: the window's spectrum (per axis: its mean, which tells the
    # posture, and the log magnitude of every frequency of the rest, which hardly depends on
    # where in the window a step falls), or its standardised samples (models/features.py). The
    # spectrum is the default since 2026-11-24: on the training bench it raised held-out
    # macro-F1 from 0.89 to 0.99 when 10 % of the phones annotate, and from 0.96-0.97 to
    # 0.99-1.00 when all do (bench/results/training-spectrum.json).
    input_features: Literal["samples", "spectrum"] = "spectrum"

    @model_validator(mode="after")
    def _one_input_representation(self) -> ModelSettings:
        if self.magnitude_channel and self.input_features != "samples":
            raise ValueError(
                "MBD_MODEL_MAGNITUDE_CHANNEL=true adds a channel to the samples and needs "
                f"MBD_MODEL_INPUT_FEATURES=samples; input_features is {self.input_features!r} "
                "(the default since 2026-11-24 is 'spectrum')"
            )
        return self

    @field_validator("encoder_units", mode="before")
    @classmethod
    def _split_units(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("encoder_units")
    @classmethod
    def _positive_units(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(units < 1 for units in value):
            raise ValueError(f"encoder_units must be one or more positive sizes, got {list(value)}")
        return value


class TrainSettings(BaseSettings):
    """The retraining job: lake → pretraining → fine-tuning → evaluation → registry."""

    model_config = SettingsConfigDict(env_prefix="MBD_TRAIN_", frozen=True)

    lake: LakeSettings = Field(default_factory=LakeSettings)
    runner: Literal["spark", "local"] = Field(
        default="spark", description="spark: partial models on partitions; local: one, in-process"
    )
    partitions: int = Field(default=2, ge=1, description="partial models per round")
    pretrain_rounds: int = Field(default=4, ge=0, description="most rounds per autoencoder layer")
    finetune_rounds: int = Field(default=30, ge=1, description="most fine-tuning rounds")
    local_epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    learning_rate_decay: float = Field(
        default=0.85, gt=0, le=1, description="learning rate multiplier per round of a phase"
    )
    class_weighting: Literal["balanced", "sqrt", "none"] = Field(
        default="sqrt", description="loss weight per class from its training frequency"
    )
    patience: int = Field(default=3, ge=1, description="rounds without improvement before stop")
    min_delta: float = Field(default=0.002, ge=0)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1, description="devices held out")
    validation_fraction: float = Field(default=0.1, gt=0, lt=1, description="devices")
    split_salt: str = "mbd"
    seed: int = 0
    promote_floor: float = Field(default=0.5, ge=0, le=1, description="first model's macro-F1")
    min_labelled_windows: int = Field(default=200, ge=1)
    min_new_windows: int = Field(default=500, ge=0, description="scheduled runs skip below")
    as_of: int | None = Field(
        default=None, ge=0, description="train on this version of the lake's windows table"
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    wire: WireSettings = Field(default_factory=WireSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)


class ApiSettings(BaseSettings):
    """The prediction API: latest activity per phone, ad-hoc predictions, registry and dashboard.

    Each API process keeps the latest prediction per phone in memory, at most ``max_devices``
    of them (the least recently updated go first), and reads every partition of the
    predictions topic itself, starting ``device_ttl_s`` back so a restart rebuilds its view.
    """

    model_config = SettingsConfigDict(env_prefix="MBD_API_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=1, le=65535)
    access_log: bool = False
    read_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the read endpoints and the dashboard; unset: generated "
        "into <secrets_dir>/api-read-token (0600)",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for promote, rollback and erasure; unset: generated into "
        "<secrets_dir>/api-admin-token (0600)",
    )
    secrets_dir: Path = Path("data/secrets")
    devices_file: Path = Field(
        default=Path("data/devices.json"), description="the gateway's device tokens"
    )
    rate_per_token: float = Field(default=200.0, gt=0, description="requests/s per credential")
    burst_per_token: int = Field(default=400, ge=1)
    device_ttl_s: float = Field(default=600.0, gt=0, description="forget phones silent this long")
    max_devices: int = Field(default=100_000, ge=1, description="phones kept in memory")
    consume_predictions: bool = Field(default=True, description="read the predictions topic")
    consumer_client_id: str = "mbd-api"
    model_check_interval_s: float = Field(default=1.0, gt=0, description="CURRENT polling")
    single_thread_inference: bool = Field(
        default=True, description="TensorFlow runs each op on one thread (small windows)"
    )
    stream_status_file: Path = Path("data/status/stream.json")
    gateway_url: str | None = Field(default="http://127.0.0.1:8000", description="for its rate")
    dashboard_refresh_s: float = Field(default=2.0, gt=0)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    wire: WireSettings = Field(default_factory=WireSettings)

    @property
    def read_token_file(self) -> Path:
        """Where the read token is generated when ``read_token`` is unset."""
        return self.secrets_dir / "api-read-token"

    @property
    def admin_token_file(self) -> Path:
        """Where the admin token is generated when ``admin_token`` is unset."""
        return self.secrets_dir / "api-admin-token"

    @field_validator("admin_token", "read_token")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            check_token_strength(value.get_secret_value(), what=info.field_name or "token")
        return value

    @field_validator("gateway_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"gateway_url {value!r} is not an http(s):// URL")
        return value.rstrip("/")
