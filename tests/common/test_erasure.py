"""Erasing a phone from the lake's Delta tables, its token and the models' records, and
compacting: on real Delta tables (delta-rs), with kill -9 in the middle of both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from common import lake as tables
from common.erasure import UnknownDevice, erasure_log, forget, rows_deleted_by
from common.settings import LakeSettings
from ingest.devices import DeviceRegistry
from simulators.windows import simulate_windows, write_lake
from tests.lake import read_lake

PHONES = ("phone-a", "phone-b", "phone-c")


def quarantine_rows(*devices: str) -> pa.Table:
    return pa.table(
        {
            "device_id": list(devices),
            "reason": ["null axis"] * len(devices),
            "t": pa.array([1_795_341_600_000] * len(devices), pa.int64()),
            "date": ["2026-11-22"] * len(devices),
        }
    )


@pytest.fixture
def lake(tmp_path: Path) -> LakeSettings:
    """Windows of three phones written in three appends, and quarantine rows of two."""
    for index, phone in enumerate(PHONES):
        windows = simulate_windows(
            devices=1, seconds_per_device=60, seed=index, device_prefix=phone
        )
        windows["device_id"] = phone
        write_lake(windows, tmp_path / "lake")
    write_deltalake(
        str(tmp_path / "lake" / "quarantine"),
        quarantine_rows("phone-a", "phone-b"),
        partition_by=["date"],
    )
    return LakeSettings(uri=tmp_path / "lake")


@pytest.fixture
def devices(tmp_path: Path) -> DeviceRegistry:
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.add(list(PHONES))
    return registry


def forget_command(phone: str, lake: LakeSettings, folder: Path) -> list[str]:
    """``mbd devices forget PHONE`` on the devices file and registry of ``folder``."""
    return [
        sys.executable,
        "-m",
        "infra.cli",
        "devices",
        "forget",
        phone,
        "--devices-file",
        str(folder / "devices.json"),
        "--lake",
        lake.uri,
        "--registry-dir",
        str(folder / "registry"),
    ]


def parquet_files(lake: LakeSettings) -> set[Path]:
    return set(Path(lake.uri).rglob("*.parquet")) - set(Path(lake.uri).rglob("_delta_log/*"))


def test_forgetting_a_phone_erases_its_rows_files_and_token_and_logs_it(
    lake: LakeSettings, devices: DeviceRegistry, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    for version, phones in ((1, ["phone-a", "phone-b"]), (2, ["phone-b", "phone-c"])):
        (registry / f"v{version}").mkdir(parents=True)
        (registry / f"v{version}" / "devices.json").write_text(json.dumps(phones))
    windows_before, _ = read_lake(lake)
    of_b = int((windows_before["device_id"] == "phone-b").sum())
    version_before = DeltaTable(tables.table_uri(lake, "windows")).version()

    erasure = forget(
        "phone-b", lake=lake, devices=devices, registry_dir=registry, requested_by="test"
    )

    windows, quarantine = read_lake(lake)
    assert "phone-b" not in set(windows["device_id"]) | set(quarantine["device_id"])
    assert len(windows) == len(windows_before) - of_b  # no other phone lost a row
    assert list(quarantine["device_id"]) == ["phone-a"]
    assert erasure.windows_deleted == of_b and erasure.quarantine_deleted == 1
    assert erasure.tokens_revoked == 1 and "phone-b" not in devices.devices()
    assert erasure.model_versions == [1, 2]
    # Its files are gone from disk: the version before the erasure can no longer be read.
    before = DeltaTable(tables.table_uri(lake, "windows"), version=version_before)
    assert not all(Path(uri.removeprefix("file://")).exists() for uri in before.file_uris())
    assert erasure.files_removed >= 2
    remaining = [f for f in parquet_files(lake) if "erasures" not in f.parts]
    for file in remaining:
        assert "phone-b" not in pa.parquet.read_table(file).column("device_id").to_pylist(), file
    log = erasure_log(lake)
    assert [(e["device_id"], e["state"], e["requested_by"]) for e in log] == [
        ("phone-b", "requested", "test"),
        ("phone-b", "done", "test"),
    ]
    assert log[-1]["windows_deleted"] == of_b and log[-1]["model_versions"] == [1, 2]
    # The log only grows: Delta refuses to delete from it.
    with pytest.raises(Exception, match=r"(?i)append.?only"):
        DeltaTable(tables.table_uri(lake, "erasures")).delete("device_id = 'phone-b'")


def test_forgetting_an_unknown_phone_changes_nothing(
    lake: LakeSettings, devices: DeviceRegistry, tmp_path: Path
) -> None:
    version = DeltaTable(tables.table_uri(lake, "windows")).version()
    with pytest.raises(UnknownDevice, match="phone-zz"):
        forget(
            "phone-zz",
            lake=lake,
            devices=devices,
            registry_dir=tmp_path / "registry",
            requested_by="test",
        )
    assert DeltaTable(tables.table_uri(lake, "windows")).version() == version
    assert erasure_log(lake) == [] and len(devices.devices()) == 3


def test_the_cli_exits_2_for_an_unknown_phone_and_erases_a_known_one(
    lake: LakeSettings, devices: DeviceRegistry, tmp_path: Path
) -> None:
    def mbd_forget(phone: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            forget_command(phone, lake, tmp_path), capture_output=True, text=True, timeout=120
        )

    unknown = mbd_forget("phone-zz")
    assert unknown.returncode == 2 and "no phone 'phone-zz'" in unknown.stderr
    known = mbd_forget("phone-c")
    assert known.returncode == 0, known.stderr
    assert json.loads(known.stdout)["device_id"] == "phone-c"
    assert "phone-c" not in set(read_lake(lake)[0]["device_id"])


def test_a_rerun_finishes_an_erasure_that_was_cut_short(
    lake: LakeSettings, devices: DeviceRegistry, tmp_path: Path
) -> None:
    """Killed after logging the request and deleting from the windows only: the rerun deletes
    the rest and its entry counts the rows of both tries."""
    from common.erasure import Erasure, _append

    _append(lake, Erasure("cut-short", "phone-a", "requested", "test"))
    windows = DeltaTable(tables.table_uri(lake, "windows"))
    from deltalake import CommitProperties

    windows.delete(
        "device_id = 'phone-a'",
        commit_properties=CommitProperties(custom_metadata={"mbd.erasure": "cut-short"}),
    )
    deleted = rows_deleted_by(lake, "cut-short")["windows"]
    assert deleted > 0
    devices.revoke("phone-a")  # no token and no windows left: the request still names it

    erasure = forget(
        "phone-a",
        lake=lake,
        devices=devices,
        registry_dir=tmp_path / "registry",
        requested_by="test",
    )

    assert erasure.erasure_id == "cut-short"
    assert erasure.windows_deleted == deleted and erasure.quarantine_deleted == 1
    assert "phone-a" not in set(read_lake(lake)[1]["device_id"])
    assert [e["state"] for e in erasure_log(lake)] == ["requested", "done"]


def many_small_appends(lake: LakeSettings, count: int) -> None:
    uri = tables.table_uri(lake, "windows")
    for index in range(count):
        rows = pa.table(
            {
                "device_id": [f"phone-{index % 7}"],
                "date": ["2026-11-22"],
                "window_start_ms": pa.array([index], pa.int64()),
            }
        )
        write_deltalake(uri, rows, mode="append", partition_by=["date"])


def kill_when(command: list[str], begun: Callable[[], bool]) -> None:
    """Run ``command`` and SIGKILL it as soon as ``begun()`` says its work is under way."""
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not begun():
        assert run.poll() is None, "it finished before it could be killed"
        assert time.monotonic() < deadline, "its work never began"
        time.sleep(0.005)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)


def test_kill_9_during_compact_leaves_a_whole_version_and_a_rerun_compacts(
    tmp_path: Path,
) -> None:
    lake = LakeSettings(uri=tmp_path / "lake")
    many_small_appends(lake, 400)
    uri = tables.table_uri(lake, "windows")
    rows = sorted(DeltaTable(uri).to_pyarrow_table().column("window_start_ms").to_pylist())
    compact = [sys.executable, "-m", "infra.cli", "lake", "compact", "--lake", lake.uri]
    written = len(parquet_files(lake))
    kill_when(compact, lambda: len(parquet_files(lake)) > written)  # its new file is being written
    table = DeltaTable(uri)
    assert table.version() in (399, 400)  # before compaction, or after it: nothing between
    assert sorted(table.to_pyarrow_table().column("window_start_ms").to_pylist()) == rows
    assert subprocess.run(compact, capture_output=True, timeout=120).returncode == 0
    table = DeltaTable(uri)
    assert len(table.file_uris()) == 1
    assert sorted(table.to_pyarrow_table().column("window_start_ms").to_pylist()) == rows


def test_kill_9_during_forget_leaves_whole_versions_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    lake = LakeSettings(uri=tmp_path / "lake")
    many_small_appends(lake, 400)
    DeviceRegistry(tmp_path / "devices.json").add(["phone-3"])
    uri = tables.table_uri(lake, "windows")
    before = DeltaTable(uri).to_pyarrow_table().to_pylist()
    others = sorted(r["window_start_ms"] for r in before if r["device_id"] != "phone-3")
    command = forget_command("phone-3", lake, tmp_path)
    erasures = tables.table_uri(lake, "erasures")
    kill_when(command, lambda: DeltaTable.is_deltatable(erasures))  # requested: deleting next
    table = DeltaTable(uri)
    rows = table.to_pyarrow_table().to_pylist()
    of_phone = [r for r in rows if r["device_id"] == "phone-3"]
    assert len(of_phone) in (0, len(before) - len(others))  # all of the phone's rows, or none
    assert sorted(r["window_start_ms"] for r in rows if r["device_id"] != "phone-3") == others
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    rows = DeltaTable(uri).to_pyarrow_table().to_pylist()
    assert not [r for r in rows if r["device_id"] == "phone-3"]
    assert sorted(r["window_start_ms"] for r in rows) == others
    assert erasure_log(lake)[-1]["state"] == "done"
