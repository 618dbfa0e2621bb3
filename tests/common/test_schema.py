"""The wire contract: valid batches pass, each impossible one is rejected naming its field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from common.schema import BatchRejected, ReadingBatch, batch_record_headers, parse_batch
from common.settings import WireSettings

NOW_MS = 1_795_341_610_000  # 2026-11-22T10:00:10Z, a fixed "now" for the future-time rule

EXAMPLE: dict[str, Any] = {
    "device_id": "phone-000123",
    "batch_seq": 42,
    "sent_at": "2026-11-22T10:00:02.000Z",
    "label": "walking",
    "accel": [{"t": 1795341600000, "x": 0.12, "y": 9.71, "z": 0.33}],
    "gps": [{"t": 1795341600000, "lat": 53.3498, "lon": -6.2603, "acc_m": 6.0}],
}


def parse(body: dict[str, Any], wire: WireSettings | None = None) -> ReadingBatch:
    return parse_batch(json.dumps(body), wire=wire, now_ms=NOW_MS)


def changed(path: str, value: Any) -> dict[str, Any]:
    """EXAMPLE with the item at a dotted path replaced (or removed when value is ...)."""
    body = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return body


VALID = {
    "design example": EXAMPLE,
    "no label (most phones do not annotate)": changed("label", ...),
    "explicit null label": changed("label", None),
    "null axis is dirty, not wrong": changed("accel.0.x", None),
    "saturated spike within range": changed("accel.0.z", 156.9),
    "accel only": changed("gps", ...),
    "gps only": changed("accel", ...),
    "gps without accuracy": changed("gps.0.acc_m", ...),
    "integer axis": changed("accel.0.y", 9),
    "late batch from an hour ago": changed("accel.0.t", NOW_MS - 3_600_000),
    "sent_at with offset": changed("sent_at", "2026-11-22T11:00:02+01:00"),
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid_batches_are_accepted(body: dict[str, Any]) -> None:
    batch = parse(body)
    assert batch.device_id == body["device_id"]
    assert len(batch.accel) == len(body.get("accel", []))


def test_a_valid_batch_round_trips_to_the_same_content() -> None:
    batch = parse(EXAMPLE)
    again = parse_batch(batch.model_dump_json(), now_ms=NOW_MS)
    assert again == batch
    assert batch.accel[0].y == 9.71 and batch.gps[0].lat == 53.3498


INVALID = {
    # name: (body, field named in the error, text the message must contain)
    "missing device_id": (changed("device_id", ...), "device_id", "required"),
    "device_id not a string": (changed("device_id", 123), "device_id", "string"),
    "device_id with spaces": (changed("device_id", "phone 1"), "device_id", "pattern"),
    "batch_seq as string": (changed("batch_seq", "42"), "batch_seq", "integer"),
    "negative batch_seq": (changed("batch_seq", -1), "batch_seq", "greater than or equal"),
    "sent_at not a time": (changed("sent_at", "yesterday"), "sent_at", "datetime"),
    "sent_at without zone": (changed("sent_at", "2026-11-22T10:00:02"), "sent_at", "time zone"),
    "unknown label": (changed("label", "flying"), "label", "'flying' is not one of"),
    "axis as string": (changed("accel.0.x", "0.12"), "accel.0.x", "number"),
    "axis beyond 160": (changed("accel.0.y", 170.5), "accel.0.y", "less than or equal to 160"),
    "negative axis beyond 160": (changed("accel.0.x", -200), "accel.0.x", "greater than or equal"),
    "t as float": (changed("accel.0.t", 1795341600000.5), "accel.0.t", "integer"),
    "t in seconds": (changed("accel.0.t", 1795341600), "accel.0.t", "not epoch milliseconds"),
    "t far in the future": (changed("accel.0.t", NOW_MS + 86_400_000), "accel.0.t", "future"),
    "lat beyond 90": (changed("gps.0.lat", 91.0), "gps.0.lat", "less than or equal to 90"),
    "lon beyond 180": (changed("gps.0.lon", -181), "gps.0.lon", "greater than or equal to -180"),
    "negative gps accuracy": (changed("gps.0.acc_m", -3), "gps.0.acc_m", "greater than or equal"),
    "unknown field": (changed("speed", 3), "speed", "Extra inputs"),
    "sample missing an axis": (changed("accel.0.z", ...), "accel.0.z", "required"),
    "accel not a list": (changed("accel", {"t": 1}), "accel", "valid array"),
    "empty batch": (changed("accel", []) | {"gps": []}, "body", "no accel samples"),
}


@pytest.mark.parametrize(("body", "field", "text"), INVALID.values(), ids=INVALID.keys())
def test_invalid_batches_are_rejected_naming_the_field(
    body: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(BatchRejected) as rejected:
        parse(body)
    fields = {problem.field for problem in rejected.value.problems}
    assert field in fields, rejected.value.problems
    messages = " ".join(p.message for p in rejected.value.problems if p.field == field)
    assert text in messages, messages
    # The one-line summary a phone developer sees names the field and the bad value.
    assert field in str(rejected.value)


def test_too_many_samples_is_rejected_with_the_count_and_the_limit() -> None:
    wire = WireSettings(max_accel_samples=3)
    body = changed("accel", [EXAMPLE["accel"][0]] * 4)
    with pytest.raises(BatchRejected, match="batch has 4 accel samples, limit is 3"):
        parse(body, wire)


def test_the_summary_quotes_the_bad_value() -> None:
    with pytest.raises(BatchRejected, match=r"accel\.0\.y: .*160 \(got 170\.5\)"):
        parse(changed("accel.0.y", 170.5))


def test_the_class_list_is_configurable() -> None:
    wire = WireSettings(classes="cycling,driving")
    assert parse(changed("label", "cycling"), wire).label == "cycling"
    with pytest.raises(BatchRejected, match="'walking' is not one of"):
        parse(EXAMPLE, wire)


def test_malformed_json_is_rejected_not_crashed() -> None:
    with pytest.raises(BatchRejected) as rejected:
        parse_batch(b'{"device_id": "phone-1", ', now_ms=NOW_MS)
    assert "JSON" in str(rejected.value) or "EOF" in str(rejected.value)


def test_a_body_that_is_not_utf8_is_rejected_with_a_printable_value() -> None:
    with pytest.raises(BatchRejected) as rejected:
        parse_batch(b"\x80\xff{", now_ms=NOW_MS)
    problem = rejected.value.problems[0]
    assert "UTF-8" in problem.message or "JSON" in problem.message
    assert isinstance(problem.value, str)
    problem.model_dump_json()  # serialisable: it goes back to the phone as JSON


def test_non_finite_numbers_are_rejected() -> None:
    body = json.dumps(EXAMPLE).replace("0.12", "NaN")
    with pytest.raises(BatchRejected) as rejected:
        parse_batch(body, now_ms=NOW_MS)
    assert "accel.0.x" in {p.field for p in rejected.value.problems}


def test_record_headers_carry_ingest_time_and_schema_version() -> None:
    assert dict(batch_record_headers(1234)) == {"ingest_ms": b"1234", "schema_version": b"1"}
