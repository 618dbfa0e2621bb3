"""Erasing a phone: its token, its rows in the lake and their files, its place in the API.

The erasure log is the lake's ``erasures`` Delta table, append-only (``delta.appendOnly``): a
``requested`` entry is appended before anything is deleted and a ``done`` entry after, with who
asked, when, how many rows went and which model versions had learned from the phone. Every
part that writes or reads phone data (the stream, the trainer, the API) skips the phones that
have an entry, so a replay of the raw topic cannot bring an erased phone back.

A ``forget`` killed half-way leaves each table at the version before or after its delete
(a Delta commit is one file), and the ``requested`` entry: running it again finishes the job.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from common.lake import DATA_TABLES, ERASURES, open_table, table_uri, vacuum
from common.settings import LakeSettings

if TYPE_CHECKING:
    from ingest.devices import DeviceRegistry

log = logging.getLogger(__name__)

ERASURE_SCHEMA = pa.schema(
    [
        ("erasure_id", pa.string()),
        ("device_id", pa.string()),
        ("state", pa.string()),  # requested | done
        ("requested_by", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("windows_deleted", pa.int64()),
        ("quarantine_deleted", pa.int64()),
        ("files_removed", pa.int64()),
        ("tokens_revoked", pa.int64()),
        ("model_versions", pa.list_(pa.int64())),
        ("purge_after", pa.timestamp("us", tz="UTC")),
    ]
)
ERASURE_TAG = "mbd.erasure"  # commit metadata naming the erasure a DELETE belongs to


class UnknownDevice(ValueError):
    """No token, no lake row and no erasure names this phone: there is nothing to forget."""


@dataclass(frozen=True)
class Erasure:
    erasure_id: str
    device_id: str
    state: Literal["requested", "done"]
    requested_by: str
    windows_deleted: int = 0
    quarantine_deleted: int = 0
    files_removed: int = 0
    tokens_revoked: int = 0
    model_versions: list[int] = field(default_factory=list)
    purge_after: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in self.__dataclass_fields__}
        out["purge_after"] = self.purge_after.isoformat() if self.purge_after else None
        return out


class ErasedDevices:
    """The phones of the erasure log, read again whenever the log has a new version."""

    def __init__(self, lake: LakeSettings) -> None:
        self.uri = table_uri(lake, ERASURES)
        self._table: Any | None = None
        self._version: int | None = None
        self._devices: frozenset[str] = frozenset()

    def current(self) -> frozenset[str]:
        if self._table is None:
            self._table = open_table(self.uri)
            if self._table is None:
                return self._devices
        else:
            self._table.update_incremental()
        if self._table.version() != self._version:
            self._version = self._table.version()
            devices = self._table.to_pyarrow_table(columns=["device_id"]).column("device_id")
            self._devices = frozenset(devices.to_pylist())
        return self._devices


def without_devices(rows: pa.Table, devices: Iterable[str]) -> pa.Table:
    """``rows`` less those of ``devices`` (rows without a device are kept)."""
    devices = list(devices)
    if not devices or not len(rows):
        return rows
    erased = pc.is_in(rows.column("device_id"), value_set=pa.array(devices, pa.string()))
    return rows.filter(pc.invert(pc.fill_null(erased, False)))


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def delete_rows(lake: LakeSettings, devices: Iterable[str], *, erasure_id: str) -> dict[str, int]:
    """Delete the rows of ``devices`` from every data table (one commit each, tagged with the
    erasure); returns the rows deleted per table."""
    from deltalake import CommitProperties

    devices = sorted(devices)
    predicate = f"device_id IN ({', '.join(_sql_string(d) for d in devices)})"
    deleted: dict[str, int] = {}
    for name in DATA_TABLES:
        table = open_table(table_uri(lake, name))
        if table is None:
            deleted[name] = 0
            continue
        tag = CommitProperties(custom_metadata={ERASURE_TAG: erasure_id})
        figures = table.delete(predicate, commit_properties=tag)
        deleted[name] = int(figures.get("num_deleted_rows", 0))
    return deleted


def rows_deleted_by(lake: LakeSettings, erasure_id: str) -> dict[str, int]:
    """Rows deleted per table by the commits of ``erasure_id`` (a rerun counts earlier tries)."""
    deleted = {}
    for name in DATA_TABLES:
        table = open_table(table_uri(lake, name))
        commits = table.history() if table is not None else []
        deleted[name] = sum(
            int((commit.get("operationMetrics") or {}).get("num_deleted_rows", 0))
            for commit in commits
            if commit.get(ERASURE_TAG) == erasure_id
        )
    return deleted


def purge(lake: LakeSettings, *, older_than_h: int = 0) -> int:
    """Remove from disk the files the data tables' commits removed at least ``older_than_h``
    hours ago; returns how many went."""
    removed = 0
    for name in DATA_TABLES:
        table = open_table(table_uri(lake, name))
        if table is not None:
            removed += len(vacuum(table, retention_h=older_than_h))
    return removed


def _append(lake: LakeSettings, erasure: Erasure) -> None:
    from deltalake import write_deltalake

    row = erasure.as_dict() | {"at": datetime.now(UTC), "purge_after": erasure.purge_after}
    table = pa.Table.from_pylist([row], schema=ERASURE_SCHEMA)
    uri = table_uri(lake, ERASURES)
    exists = open_table(uri) is not None
    write_deltalake(
        uri,
        table,
        mode="append",
        configuration=None if exists else {"delta.appendOnly": "true"},
    )


def erasure_log(lake: LakeSettings) -> list[dict[str, Any]]:
    """Every entry of the erasure log, oldest first."""
    table = open_table(table_uri(lake, ERASURES))
    if table is None:
        return []
    return sorted(table.to_pyarrow_table().to_pylist(), key=lambda entry: entry["at"])


def _has_rows(lake: LakeSettings, device_id: str) -> bool:
    for name in DATA_TABLES:
        table = open_table(table_uri(lake, name))
        if table is None:
            continue
        found = table.to_pyarrow_table(
            columns=["device_id"], filters=[("device_id", "=", device_id)]
        )
        if len(found):
            return True
    return False


def learned_from(registry_dir: Path, device_id: str) -> list[int]:
    """Model versions whose training read windows of ``device_id`` (their ``devices.json``)."""
    versions = []
    for listing in sorted(registry_dir.glob("v*/devices.json")):
        if device_id in json.loads(listing.read_text()):
            versions.append(int(listing.parent.name.removeprefix("v")))
    return sorted(versions)


def forget(
    device_id: str,
    *,
    lake: LakeSettings,
    devices: DeviceRegistry,
    registry_dir: Path,
    requested_by: str,
) -> Erasure:
    """Erase ``device_id`` everywhere mbd keeps it; raises :class:`UnknownDevice` (changing
    nothing) for a phone mbd never knew. Rerunning an erasure finishes it."""
    entries = [e for e in erasure_log(lake) if e["device_id"] == device_id]
    done = [e for e in entries if e["state"] == "done"]
    pending = [e for e in entries if e["state"] == "requested"]
    has_token = device_id in devices.devices()
    if not pending and not has_token and not _has_rows(lake, device_id):
        if done:
            return _from_entry(done[-1])
        raise UnknownDevice(f"no phone {device_id!r}: it has no token and no data in the lake")
    erasure_id = pending[-1]["erasure_id"] if pending else uuid.uuid4().hex
    purge_after = datetime.fromtimestamp(time.time() + lake.erasure_grace_h * 3600, UTC)
    if not pending:
        _append(
            lake, Erasure(erasure_id, device_id, "requested", requested_by, purge_after=purge_after)
        )
    tokens = devices.revoke(device_id)
    delete_rows(lake, [device_id], erasure_id=erasure_id)
    files = purge(lake) if lake.erasure_grace_h == 0 else 0
    deleted = rows_deleted_by(lake, erasure_id)
    erasure = Erasure(
        erasure_id,
        device_id,
        "done",
        requested_by,
        windows_deleted=deleted["windows"],
        quarantine_deleted=deleted["quarantine"],
        files_removed=files,
        tokens_revoked=tokens,
        model_versions=learned_from(registry_dir, device_id),
        purge_after=purge_after,
    )
    _append(lake, erasure)
    log.info("erased %s: %s", device_id, erasure.as_dict())
    return erasure


def _from_entry(entry: dict[str, Any]) -> Erasure:
    names = Erasure.__dataclass_fields__
    return Erasure(**{key: value for key, value in entry.items() if key in names})


def purge_due(lake: LakeSettings) -> int:
    """Remove the files of erasures whose grace period has passed (``mbd lake compact`` and
    the schedule in ``mbd up`` call it); returns how many files went."""
    now = datetime.now(UTC)
    due = [
        e
        for e in erasure_log(lake)
        if e["state"] == "done" and e["purge_after"] is not None and e["purge_after"] <= now
    ]
    if not due:
        return 0
    # Every file removed before the newest due erasure was done can go.
    newest = max(e["at"] for e in due)
    return purge(lake, older_than_h=math.floor((now - newest).total_seconds() / 3600))
