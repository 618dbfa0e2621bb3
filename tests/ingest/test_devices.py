"""Device tokens: bound to one device, stored only as hashes, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.devices import DeviceRegistry, DeviceRegistryError


def test_a_token_identifies_its_device_and_nothing_else(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    tokens = registry.add(["phone-1", "phone-2"])
    assert registry.device_for(tokens["phone-1"]) == "phone-1"
    assert registry.device_for(tokens["phone-2"]) == "phone-2"
    forged = tokens["phone-1"][:-4] + "AAAA"
    assert registry.device_for(forged) is None
    assert registry.device_for("not-a-token") is None
    assert registry.device_for("mbd__") is None


def test_the_file_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    tokens = DeviceRegistry(path).add(["phone-1"])
    secret = tokens["phone-1"].rsplit("_", 1)[1]
    stored = path.read_text()
    assert secret not in stored and tokens["phone-1"] not in stored
    assert "phone-1" in stored


def test_another_process_sees_new_tokens_and_revocations(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    gateway_view = DeviceRegistry(path)
    gateway_view.refresh()
    token = DeviceRegistry(path).add(["phone-9"])["phone-9"]
    gateway_view.refresh()
    assert gateway_view.device_for(token) == "phone-9"
    assert DeviceRegistry(path).revoke("phone-9") == 1
    gateway_view.refresh()
    assert gateway_view.device_for(token) is None


def test_a_token_issued_since_the_last_check_is_let_in_at_once(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    gateway_view = DeviceRegistry(path)
    assert gateway_view.authenticate("mbd_nobody_secret", max_age_s=3600) is None
    token = DeviceRegistry(path).add(["phone-3"])["phone-3"]
    assert gateway_view.authenticate(token, max_age_s=3600) == "phone-3"


def test_bad_device_ids_and_broken_files_are_named(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    with pytest.raises(DeviceRegistryError, match="'bad id'"):
        registry.add(["bad id"])
    (tmp_path / "devices.json").write_text("{not json")
    registry.refresh()  # the gateway keeps answering: the problem is reported, not raised
    assert registry.problem is not None and "devices.json is unreadable" in registry.problem
    with pytest.raises(DeviceRegistryError, match=r"devices\.json is unreadable: not JSON"):
        registry.add(["phone-1"])
    with pytest.raises(DeviceRegistryError, match="unreadable"):
        registry.devices()
