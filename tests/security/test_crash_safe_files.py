"""Files that decide what is served survive crashes and disk errors; secrets are never exposed.

A crash is simulated by leaving what it leaves (a torn line, a stray temp file); a disk error
by making ``os.fsync`` fail for one file or folder. Durability is checked by recording which
paths are fsynced, and in which order relative to the rename that publishes them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.devices import DeviceRegistry
from models.registry import Registry, RegistryError
from tests.factories import batch_body

# ---------------------------------------------------------------------------------------------
# helpers


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _stage(registry: Registry, *, macro_f1: float = 0.8) -> Path:
    """A complete staging folder; the model bytes are never loaded by publish."""
    staging = registry.staging()
    (staging / "model.keras").write_bytes(b"not loaded by publish")
    (staging / "config.json").write_text(json.dumps({"encoder_units": [4]}))
    (staging / "metrics.json").write_text(json.dumps({"macro_f1": macro_f1}))
    (staging / "extras").mkdir()
    (staging / "extras" / "notes.txt").write_text("a trainer extra")
    return staging


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry whose versions "load" without Keras (promotion checks the model loads)."""
    registry = Registry(tmp_path / "registry")
    monkeypatch.setattr(Registry, "load_model", lambda self, version=None: object())
    return registry


def _published(registry: Registry, count: int) -> None:
    for _ in range(count):
        registry.publish(_stage(registry))


def _history_versions(registry: Registry) -> list[tuple[str, int]]:
    return [(entry["action"], entry["version"]) for entry in registry.history()]


def _fail_fsync_of(monkeypatch: pytest.MonkeyPatch, is_target: Callable[[str], bool]) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if is_target(_fd_path(fd)):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


# ---------------------------------------------------------------------------------------------
# 1. a torn last line of history.jsonl


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(registry: Registry) -> None:
    _published(registry, 4)
    for version in (1, 2, 3):
        registry.promote(version, reason=f"round {version}")
    before = _history_versions(registry)
    with registry.history_file.open("ab") as history:  # the crash: half an entry, no newline
        history.write(b'{"version": 4, "action": "promote", "at": "2025-05-0')

    assert _history_versions(registry) == before  # the torn entry counts for nothing

    registry.promote(4, reason="round 4")
    assert _history_versions(registry) == [*before, ("promote", 4)]
    lines = registry.history_file.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert registry.rollback(reason="v4 misbehaves").version == 3
    assert registry.rollback(reason="v3 misbehaves").version == 2


def test_a_line_torn_inside_a_character_does_not_break_reading_or_rollback(
    registry: Registry,
) -> None:
    _published(registry, 3)
    registry.promote(1, reason="first")
    registry.promote(2, reason="second")
    entry = json.dumps(
        {"version": 3, "action": "promote", "reason": "F1 ≥ 0.8"}, ensure_ascii=False
    )
    torn = entry.encode()[: entry.encode().index("≥".encode()) + 1]  # 1 of the 3 bytes of ≥
    with registry.history_file.open("ab") as history:
        history.write(torn)

    assert _history_versions(registry) == [("promote", 1), ("promote", 2)]
    assert registry.rollback(reason="v2 misbehaves").version == 1
    assert _history_versions(registry)[-1] == ("rollback", 1)


def test_an_entry_glued_to_a_torn_one_is_still_read(registry: Registry) -> None:
    registry.root.mkdir(parents=True)
    first = json.dumps({"version": 1, "action": "promote", "reason": "a"})
    glued = json.dumps({"version": 3, "action": "promote", "reason": "c {not a start}"})
    registry.history_file.write_text(f'{first}\n{{"version": 2, "act{glued}\n')

    assert _history_versions(registry) == [("promote", 1), ("promote", 3)]


# ---------------------------------------------------------------------------------------------
# 2. an OSError after CURRENT switched


def test_a_history_that_cannot_be_written_undoes_the_promotion(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _published(registry, 2)
    registry.promote(1, reason="first")
    _fail_fsync_of(monkeypatch, lambda path: path.endswith("history.jsonl"))

    with pytest.raises(RegistryError, match=r"history\.jsonl.*Input/output error.*back on v1"):
        registry.promote(2, reason="second")
    monkeypatch.undo()

    assert registry.current_file.read_text() == "v1\n"
    assert _history_versions(registry) == [("promote", 1)]
    assert registry.history_file.read_bytes().endswith(b"\n")


def test_a_folder_fsync_failing_after_the_rename_undoes_the_promotion(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _published(registry, 2)
    registry.promote(1, reason="first")
    root = str(registry.root.resolve())
    _fail_fsync_of(monkeypatch, lambda path: path == root)

    with pytest.raises(RegistryError, match=r"CURRENT at v2.*Input/output error"):
        registry.promote(2, reason="second")
    monkeypatch.undo()

    assert registry.current_version() == 1
    assert _history_versions(registry) == [("promote", 1)]
    assert list(registry.root.glob(".CURRENT*")) == []


def test_a_history_that_cannot_be_written_undoes_the_rollback(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _published(registry, 2)
    registry.promote(1, reason="first")
    registry.promote(2, reason="second")
    _fail_fsync_of(monkeypatch, lambda path: path.endswith("history.jsonl"))

    with pytest.raises(RegistryError, match=r"history\.jsonl.*back on v2"):
        registry.rollback(reason="panic")
    monkeypatch.undo()

    assert registry.current_version() == 2
    assert _history_versions(registry) == [("promote", 1), ("promote", 2)]


# ---------------------------------------------------------------------------------------------
# 3. staged versions and the devices file are flushed to disk


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """("fsync", path) and ("rename", target) in the order they happen."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", _fd_path(fd)))
        real_fsync(fd)

    def rename(source: Any, target: Any) -> None:
        events.append(("rename", str(Path(target).resolve())))
        real_rename(source, target)

    def replace(source: Any, target: Any) -> None:
        events.append(("rename", str(Path(target).resolve())))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_publish_flushes_every_staged_file_and_folder_before_the_rename(
    registry: Registry, disk_events: list[tuple[str, str]]
) -> None:
    staging = _stage(registry).resolve()
    staged = [str(path) for path in staging.rglob("*")] + [str(staging)]

    version = registry.publish(staging)

    target = str(version.path.resolve())
    assert ("rename", target) in disk_events
    renamed_at = disk_events.index(("rename", target))
    flushed_before = {path for kind, path in disk_events[:renamed_at] if kind == "fsync"}
    assert set(staged) <= flushed_before
    assert ("fsync", str(registry.root.resolve())) in disk_events[renamed_at:]


def test_the_devices_file_is_flushed_before_and_after_its_rename(
    tmp_path: Path, disk_events: list[tuple[str, str]]
) -> None:
    path = tmp_path / "devices.json"
    DeviceRegistry(path).add(["phone-1"])

    target = str(path.resolve())
    renamed_at = disk_events.index(("rename", target))
    before = [p for kind, p in disk_events[:renamed_at] if kind == "fsync"]
    assert any(Path(p).parent == tmp_path.resolve() and Path(p) != path for p in before)
    assert ("fsync", str(tmp_path.resolve())) in disk_events[renamed_at:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------
# 4. a corrupt devices file


def test_a_corrupt_devices_file_keeps_the_last_good_tokens_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "devices.json"
    tokens = DeviceRegistry(path).add(["phone-1", "phone-2"])
    gateway_view = DeviceRegistry(path)
    gateway_view.refresh()
    good = path.read_bytes()

    path.write_text('{"not": json, "secret-looking": "abc"')
    with caplog.at_level(logging.WARNING, logger="ingest.devices"):
        for _ in range(3):
            gateway_view.refresh()

    assert gateway_view.device_for(tokens["phone-1"]) == "phone-1"
    assert gateway_view.problem is not None
    assert "devices.json is unreadable" in gateway_view.problem
    assert "last good set of 2 token(s)" in gateway_view.problem
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(path) in errors[0].getMessage()
    assert "secret-looking" not in caplog.text and "abc" not in caplog.text

    path.write_bytes(good)
    DeviceRegistry(path).revoke("phone-2")
    gateway_view.refresh()
    assert gateway_view.problem is None
    assert gateway_view.device_for(tokens["phone-2"]) is None
    assert gateway_view.device_for(tokens["phone-1"]) == "phone-1"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"a": {"device_id": "p", "token_id": "a", "sha256": 5, "created_at": 1}}',
        b'{"a": {"device_id": "p", "token_id": "a", "sha256": "\xc3\xa9", "created_at": 1}}',
    ],
    ids=["not-json", "not-utf8", "a-list", "wrong-type", "non-ascii-hash"],
)
def test_a_devices_file_corrupt_from_the_start_refuses_every_token(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "devices.json"
    path.write_bytes(content)
    registry = DeviceRegistry(path)

    registry.refresh()

    assert registry.device_for("mbd_a_secret") is None
    assert registry.problem is not None and "every token is refused" in registry.problem


class _AckingPublisher:
    """A stand-in for the Kafka publisher: every batch is acked, the broker is reachable."""

    settings = SimpleNamespace(bootstrap_servers="fake:9092")
    pending = 0

    def __init__(self) -> None:
        self.offset = 0

    async def publish(self, batch: Any, *, raw: bytes) -> Any:
        self.offset += 1
        return SimpleNamespace(partition=0, offset=self.offset)

    async def reachable(self) -> bool:
        return True


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from common.settings import GatewaySettings
    from ingest.app import create_app

    app = create_app(GatewaySettings(devices_file=tmp_path / "devices.json"))
    app.state.publisher = _AckingPublisher()
    yield TestClient(app, raise_server_exceptions=False)


def _post(gateway: Any, token: str, seq: int) -> int:
    reply = gateway.post(
        "/v1/readings",
        json=batch_body("phone-1", seq),
        headers={"Authorization": f"Bearer {token}"},
    )
    return reply.status_code


def _devices_state(gateway: Any, unlike: str, deadline_s: float = 10.0) -> str:
    """/readyz's ``devices`` once it differs from ``unlike`` (the gateway re-reads each 1 s)."""
    deadline = time.monotonic() + deadline_s
    while True:
        state = gateway.get("/readyz").json().get("devices")
        if state != unlike or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_the_gateway_answers_from_the_last_good_tokens_and_readyz_says_so(
    tmp_path: Path, gateway: Any
) -> None:
    path = tmp_path / "devices.json"
    token = DeviceRegistry(path).add(["phone-1"])["phone-1"]
    assert _post(gateway, token, 1) == 202
    assert gateway.get("/readyz").json()["devices"] == "readable"

    path.write_text("{torn")
    state = _devices_state(gateway, unlike="readable")

    assert "unreadable" in state and "last good set of 1 token(s)" in state
    assert str(tmp_path) not in state  # the file's name, not where it lives
    ready = gateway.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert _post(gateway, token, 2) == 202


def test_a_gateway_started_on_a_corrupt_devices_file_refuses_tokens_and_says_so(
    tmp_path: Path, gateway: Any
) -> None:
    (tmp_path / "devices.json").write_text("{torn")

    assert _post(gateway, "mbd_0123456789abcdef_secret", 1) == 401
    assert "every token is refused" in gateway.get("/readyz").json()["devices"]


# ---------------------------------------------------------------------------------------------
# 5. on start, registry files are repaired or refused


def test_recover_removes_a_half_written_pointer_and_mends_a_torn_history(
    registry: Registry,
) -> None:
    _published(registry, 1)
    registry.promote(1, reason="first")
    stray = registry.root / ".CURRENT.k3j2h1g0.tmp"
    stray.write_text("v")
    with registry.history_file.open("ab") as history:
        history.write(b'{"version": 1, "act')

    notes = registry.recover()

    assert not stray.exists()
    assert any(".CURRENT.k3j2h1g0.tmp" in note for note in notes)
    assert any("history.jsonl" in note and "torn" in note for note in notes)
    assert registry.history_file.read_bytes().endswith(b"\n")
    assert _history_versions(registry) == [("promote", 1)]
    assert registry.current_version() == 1


def test_recover_refuses_a_current_that_names_a_missing_version(registry: Registry) -> None:
    _published(registry, 1)
    registry.current_file.write_text("v7\n")

    with pytest.raises(RegistryError, match=r"CURRENT names v7, but .* has no v7 folder"):
        registry.recover()


def test_recover_refuses_a_garbled_current(registry: Registry) -> None:
    registry.root.mkdir(parents=True)
    registry.current_file.write_text("v")

    with pytest.raises(RegistryError, match=r"CURRENT holds 'v', not a version"):
        registry.recover()


# ---------------------------------------------------------------------------------------------
# 6. the simulator's token file


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Nothing masks a mode: what a file is created with is what others may read."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_simulator_token_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_umask: None
) -> None:
    from simulators.fleet import provision_tokens

    seen: list[tuple[str, int]] = []

    def snapshot(*_: Any) -> None:
        for path in tmp_path.rglob("*"):
            if path.is_file() and ("tokens.json" in path.name or "devices.json" in path.name):
                seen.append((path.name, stat.S_IMODE(path.stat().st_mode)))

    def watched(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            snapshot()
            result = real(*args, **kwargs)
            snapshot()
            return result

        return call

    for name in ("fsync", "replace", "rename", "chmod"):
        monkeypatch.setattr(os, name, watched(getattr(os, name)))
    monkeypatch.setattr(Path, "chmod", watched(Path.chmod))
    tokens_file = tmp_path / "sim" / "tokens.json"

    tokens = provision_tokens(["phone-1"], tokens_file, tmp_path / "devices.json")
    snapshot()

    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "devices.json").stat().st_mode) == 0o600
    assert any(name == "tokens.json" for name, _ in seen)
    exposed = [(name, f"{mode:o}") for name, mode in seen if mode & 0o077]
    assert exposed == []
    assert json.loads(tokens_file.read_text()) == tokens


def test_an_old_token_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    from simulators.fleet import provision_tokens

    tokens_file = tmp_path / "tokens.json"
    first = provision_tokens(["phone-1"], tokens_file, tmp_path / "devices.json")
    tokens_file.chmod(0o644)

    assert provision_tokens(["phone-1"], tokens_file, tmp_path / "devices.json") == first
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
