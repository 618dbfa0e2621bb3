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


def _check_event_time(t: int, info: ValidationInfo) -> int:
    if t < MIN_EPOCH_MS:
        raise ValueError(f"timestamp {t} is not epoch milliseconds (earlier than {MIN_EPOCH_MS})")
    limits = _limits(info)
    ahead_ms = t - _now_ms(info)
    if ahead_ms > limits.max_future_ms:
        raise ValueError(
            f"timestamp {t} is {ahead_ms / 1000:.0f} s in the future "
            f"(limit {limits.max_future_ms / 1000:.0f} s)"
        )
    return t


class AccelSample(BaseModel):
    """One accelerometer reading in m/s². A null axis is dirty, not wrong: it is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    t: int
    x: float | None
    y: float | None
    z: float | None

    @field_validator("t")
    @classmethod
    def _event_time(cls, t: int, info: ValidationInfo) -> int:
        return _check_event_time(t, info)

    @field_validator("x", "y", "z")
    @classmethod
    def _possible_acceleration(cls, value: float | None, info: ValidationInfo) -> float | None:
        limit = _limits(info).max_abs_accel
        if value is not None and abs(value) > limit:
            raise ValueError(f"{info.field_name}={value} m/s² is beyond ±{limit:g} m/s²")
        return value


class GpsFix(BaseModel):
    """One GPS fix: degrees and the receiver's accuracy radius in metres."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    t: int
    lat: float
    lon: float
    acc_m: float | None = None

    @field_validator("t")
    @classmethod
    def _event_time(cls, t: int, info: ValidationInfo) -> int:
        return _check_event_time(t, info)

    @field_validator("lat")
    @classmethod
    def _latitude(cls, lat: float) -> float:
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"lat={lat} is outside ±90°")
        return lat

    @field_validator("lon")
    @classmethod
    def _longitude(cls, lon: float) -> float:
        if not -180.0 <= lon <= 180.0:
            raise ValueError(f"lon={lon} is outside ±180°")
        return lon

    @field_validator("acc_m")
    @classmethod
    def _accuracy(cls, acc_m: float | None) -> float | None:
        if acc_m is not None and acc_m < 0:
            raise ValueError(f"acc_m={acc_m} is negative")
        return acc_m


class ReadingBatch(BaseModel):
    """One request from one phone; ``(device_id, batch_seq)`` is its idempotency key."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    device_id: DeviceId
    batch_seq: Annotated[int, Field(ge=0)]
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
            _check_event_time(ms, info)
        except ValueError as err:
            raise ValueError(f"sent_at={sent_at.isoformat()}: {err}") from None
        return sent_at

    @field_validator("label")
    @classmethod
    def _known_label(cls, label: str | None, info: ValidationInfo) -> str | None:
        classes = _limits(info).classes
        if label is not None and label not in classes:
            raise ValueError(f"label {label!r} is not one of {list(classes)}")
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
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def _shorten(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


def describe_validation_error(error: ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into field/message/value triples, the value kept short."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
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
    context: dict[str, Any] = {"wire": wire or default_wire_settings(), "now_ms": now_ms}
    try:
        return ReadingBatch.model_validate_json(raw, context=context)
    except ValidationError as error:
        raise BatchRejected(describe_validation_error(error)) from None


def batch_record_headers(ingest_ms: int) -> list[tuple[str, bytes]]:
    """Kafka headers carried by every readings record."""
    return [
        (HEADER_INGEST_MS, str(ingest_ms).encode()),
        (HEADER_SCHEMA_VERSION, str(SCHEMA_VERSION).encode()),
    ]
