"""The wire contract: one request is one batch of readings from one phone.

Pydantic models that reject what can never be right (wrong types, impossible ranges, too many
samples, timestamps far in the future) with errors naming the field and the bad value. What is
merely dirty — a null axis, a spike, a duplicate, a late batch — passes: the streaming job
cleans it. The limits come from :class:`~common.settings.WireSettings`, passed as validation
context (``{"wire": settings}``) or read from the environment once.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.settings import WireSettings, default_wire_settings

SCHEMA_VERSION = 1
# Epoch milliseconds before 2001-09-09 are almost certainly seconds or nanoseconds sent by mistake.
MIN_EPOCH_MS = 1_000_000_000_000
# The latest event time any part accepts, whatever the clock says (2100-01-01): with the
# wire's future limit below it, every accepted time fits a signed 64-bit int and a datetime.
MAX_EPOCH_MS = 4_102_444_800_000
# Every integer on the wire fits Spark's LongType and numpy's int64.
MAX_INT64 = 2**63 - 1
# Classes a model may have (the wire's class list is far shorter).
MAX_CLASSES = 64
# What a bad value is echoed as at most, in a message or a problem's ``value``.
ECHO_CHARS = 80
HEADER_INGEST_MS = "ingest_ms"
HEADER_SCHEMA_VERSION = "schema_version"

DeviceId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
]


def _limits(info: ValidationInfo) -> WireSettings:
    context = info.context or {}
    wire = context.get("wire")
    return wire if isinstance(wire, WireSettings) else default_wire_settings()


def _now_ms(info: ValidationInfo) -> int:
    context = info.context or {}
    now = context.get("now_ms")
    return int(now) if now is not None else int(time.time() * 1000)


def check_event_time(t: int, info: ValidationInfo) -> int:
    if t < MIN_EPOCH_MS:
        raise ValueError(f"timestamp {t} is not epoch milliseconds (earlier than {MIN_EPOCH_MS})")
    if t > MAX_EPOCH_MS:
        raise ValueError(f"timestamp {t} is after {MAX_EPOCH_MS} (2100-01-01)")
    limits = _limits(info)
    ahead_ms = t - _now_ms(info)
    if ahead_ms > limits.max_future_ms:
        raise ValueError(
            f"timestamp {t} is {ahead_ms / 1000:.0f} s in the future "
            f"(limit {limits.max_future_ms / 1000:.0f} s)"
        )
    return t


# Beyond this no phone sensor reads (±16 g): a value past it is a bug, not a spike.
MAX_ABS_ACCEL = 160.0
Axis = Annotated[float | None, Field(ge=-MAX_ABS_ACCEL, le=MAX_ABS_ACCEL)]
EventTime = Annotated[int, Field(ge=MIN_EPOCH_MS, le=MAX_EPOCH_MS)]


class AccelSample(BaseModel):
    """One accelerometer reading in m/s². A null axis is dirty, not wrong: it is accepted.

    Its constraints are checked in pydantic's core (no Python per sample): a batch carries
    hundreds of samples and the gateway validates thousands of batches a second.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    t: EventTime
    x: Axis
    y: Axis
    z: Axis


class GpsFix(BaseModel):
    """One GPS fix: degrees and the receiver's accuracy radius in metres."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    t: EventTime
    lat: Annotated[float, Field(ge=-90.0, le=90.0)]
    lon: Annotated[float, Field(ge=-180.0, le=180.0)]
    acc_m: Annotated[float | None, Field(ge=0.0)] = None


class ReadingBatch(BaseModel):
    """One request from one phone; ``(device_id, batch_seq)`` is its idempotency key."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    device_id: DeviceId
    batch_seq: Annotated[int, Field(ge=0, le=MAX_INT64)]
    sent_at: datetime
    label: str | None = None
    accel: list[AccelSample] = Field(default_factory=list)
    gps: list[GpsFix] = Field(default_factory=list)

    @field_validator("sent_at")
    @classmethod
    def _sent_at(cls, sent_at: datetime, info: ValidationInfo) -> datetime:
        if sent_at.tzinfo is None:
            raise ValueError(f"sent_at={sent_at.isoformat()} has no time zone; use UTC (…Z)")
        ms = int(sent_at.timestamp() * 1000)
        try:
            check_event_time(ms, info)
        except ValueError as err:
            raise ValueError(f"sent_at={sent_at.isoformat()}: {err}") from None
        return sent_at

    @field_validator("label")
    @classmethod
    def _known_label(cls, label: str | None, info: ValidationInfo) -> str | None:
        classes = _limits(info).classes
        if label is not None and label not in classes:
            raise ValueError(f"label {echo(label)} is not one of {list(classes)}")
        return label

    @field_validator("accel")
    @classmethod
    def _accel_count(cls, accel: list[AccelSample], info: ValidationInfo) -> list[AccelSample]:
        limit = _limits(info).max_accel_samples
        if len(accel) > limit:
            raise ValueError(f"batch has {len(accel)} accel samples, limit is {limit}")
        return accel

    @field_validator("gps")
    @classmethod
    def _gps_count(cls, gps: list[GpsFix], info: ValidationInfo) -> list[GpsFix]:
        limit = _limits(info).max_gps_fixes
        if len(gps) > limit:
            raise ValueError(f"batch has {len(gps)} gps fixes, limit is {limit}")
        return gps

    @model_validator(mode="after")
    def _not_empty(self) -> ReadingBatch:
        if not self.accel and not self.gps:
            raise ValueError("batch has no accel samples and no gps fixes")
        return self


class FieldProblem(BaseModel):
    """One reason a batch was rejected, in terms a phone developer can act on."""

    field: str
    message: str
    value: Any = None


class BatchRejected(ValueError):
    """A batch that can never be right; ``problems`` names each bad field and value."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__(describe_problems(problems))


def describe_problems(problems: list[FieldProblem]) -> str:
    """One sentence naming each problem's field, message and (short) bad value."""
    parts = []
    for problem in problems:
        got = "" if problem.value is None else f" (got {problem.value!r})"
        parts.append(f"{problem.field}: {problem.message}{got}")
    return "; ".join(parts)


def echo(value: Any) -> str:
    """``repr(value)``, cut to at most :data:`ECHO_CHARS` characters: safe to put in a message."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def _shorten(value: Any) -> Any:
    text = echo(value)
    return value if text == repr(value) else text


def describe_validation_error(error: ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into field/message/value triples, the value kept short."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == "greater_than_equal" and item["loc"][-1:] == ("t",):
            message = f"timestamp {value} is not epoch milliseconds (before {MIN_EPOCH_MS})"
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8", errors="replace")  # the body was not valid UTF-8
        if isinstance(value, dict | list):
            value = None  # the field name says enough; echoing a whole object does not help
        problems.append(FieldProblem(field=field, message=message, value=_shorten(value)))
    return problems


def parse_batch(
    raw: bytes | str, *, wire: WireSettings | None = None, now_ms: int | None = None
) -> ReadingBatch:
    """Validate one JSON request body, raising :class:`BatchRejected` when it can never be right."""
    wire = wire or default_wire_settings()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    context: dict[str, Any] = {"wire": wire, "now_ms": now_ms}
    try:
        batch = ReadingBatch.model_validate_json(raw, context=context)
    except ValidationError as error:
        raise BatchRejected(describe_validation_error(error)) from None
    future = future_samples(batch, latest_ms=now_ms + wire.max_future_ms)
    if future:
        raise BatchRejected(
            [
                FieldProblem(
                    field=field,
                    message=f"timestamp {t} is {(t - now_ms) / 1000:.0f} s in the future "
                    f"(limit {wire.max_future_ms / 1000:.0f} s)",
                    value=t,
                )
                for field, t in future
            ]
        )
    return batch


def future_samples(batch: ReadingBatch, *, latest_ms: int) -> list[tuple[str, int]]:
    """(field, t) of every sample stamped after ``latest_ms``."""
    problems: list[tuple[str, int]] = []
    for name, samples in (("accel", batch.accel), ("gps", batch.gps)):
        if samples and max(sample.t for sample in samples) > latest_ms:
            problems += [(f"{name}.{i}.t", s.t) for i, s in enumerate(samples) if s.t > latest_ms]
    return problems


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON: ``application/json``, any parameters."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def batch_record_headers(ingest_ms: int) -> list[tuple[str, bytes]]:
    """Kafka headers carried by every readings record."""
    return [
        (HEADER_INGEST_MS, str(ingest_ms).encode()),
        (HEADER_SCHEMA_VERSION, str(SCHEMA_VERSION).encode()),
    ]


class Prediction(BaseModel):
    """One scored window on ``mbd.predictions`` (key = device_id), as the streaming job sends it.

    ``probabilities`` maps every class of the model to its softmax output; ``activity`` is the
    most probable one. Unknown extra fields are ignored so producers can add some. Readers
    validate with ``context={"now_ms": …}`` so a window stamped past the wire's future limit
    is refused like any other record that cannot be trusted.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    device_id: DeviceId
    window_start_ms: EventTime
    window_end_ms: EventTime
    activity: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    probabilities: Annotated[
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=64)],
            Annotated[float, Field(ge=0.0, le=1.0)],
        ],
        Field(max_length=MAX_CLASSES),
    ]
    model_version: Annotated[int, Field(ge=1, le=MAX_INT64)]
    scored_at_ms: EventTime

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Prediction:
        if self.window_end_ms <= self.window_start_ms:
            raise ValueError(
                f"window_end_ms {self.window_end_ms} is not after "
                f"window_start_ms {self.window_start_ms}"
            )
        if self.activity not in self.probabilities:
            raise ValueError(
                f"activity {echo(self.activity)} has no probability among "
                f"{echo(sorted(self.probabilities))}"
            )
        if info.context and "now_ms" in info.context:
            for name in ("window_end_ms", "scored_at_ms"):
                check_event_time(getattr(self, name), info)
        return self

    def to_record(self) -> tuple[bytes, bytes]:
        """(key, value) of the Kafka record."""
        return self.device_id.encode(), self.model_dump_json().encode()
