"""`mbd models list|show|promote|rollback` as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli import main
from models.registry import Registry
from tests.models.factories import publish_version


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    publish_version(registry, macro_f1=0.8, metrics={"per_class": {"walking": {"f1": 0.8}}})
    publish_version(registry, macro_f1=0.85, metrics={"confusion_matrix": [[3, 1], [0, 4]]})
    return registry


def _models(registry: Registry, *args: str) -> int:
    return main(["models", *args, "--registry-dir", str(registry.root)])


def test_list_marks_the_promoted_version(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote(1, reason="first")

    assert _models(registry, "list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "MACRO-F1", "ACCURACY", "WINDOWS"]
    assert lines[1].split()[0:2] == ["*", "v1"] and "0.800" in lines[1] and "1234" in lines[1]
    assert lines[2].split()[0] == "v2" and "0.850" in lines[2]


def test_list_of_an_empty_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--registry-dir", str(tmp_path)]) == 0
    assert "no model versions yet" in capsys.readouterr().out


def test_registry_dir_comes_from_the_environment_or_before_the_action(
    registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBD_REGISTRY_DIR", str(registry.root))
    assert main(["models", "list"]) == 0
    assert "v2" in capsys.readouterr().out

    monkeypatch.setenv("MBD_REGISTRY_DIR", "/nonexistent/registry")
    assert main(["models", "--registry-dir", str(registry.root), "list"]) == 0
    assert "v2" in capsys.readouterr().out


def test_show_prints_the_promoted_versions_figures_as_json(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote(2, reason="better")

    assert _models(registry, "show") == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["current"] is True
    assert shown["macro_f1"] == 0.85 and shown["accuracy"] == 0.9
    assert shown["confusion_matrix"] == [[3, 1], [0, 4]]
    assert shown["data"] == {"train_windows": 1234, "holdout_windows": 321}
    assert shown["report"] is None  # this version has no report.png


def test_show_a_named_version(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    (registry.get(1).report_path).write_bytes(b"\x89PNG")

    assert _models(registry, "show", "v1") == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["current"] is False
    assert shown["per_class"] == {"walking": {"f1": 0.8}}
    assert shown["report"] == str(registry.root / "v1" / "report.png")


def test_show_without_a_promoted_version_is_one_clear_line(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _models(registry, "show") == 2
    err = capsys.readouterr().err
    assert "no model is promoted" in err and err.count("\n") == 1


def test_show_of_a_missing_version_names_it(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _models(registry, "show", "9") == 2
    assert f"no model version v9 in {registry.root}" in capsys.readouterr().err


def test_promote_switches_current_and_records_the_reason(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote(1, reason="first")

    assert _models(registry, "promote", "2", "--reason", "better on new phones") == 0

    assert "promoted v2" in capsys.readouterr().out
    assert registry.current_version() == 2
    assert registry.history()[-1]["reason"] == "better on new phones"


def test_promote_of_a_corrupt_model_fails_and_keeps_current(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote(1, reason="first")
    registry.get(2).model_path.write_bytes(b"truncated")

    assert _models(registry, "promote", "v2") == 2

    err = capsys.readouterr().err
    assert "v2/model.keras" in err and err.count("\n") == 1
    assert registry.current_version() == 1


def test_rollback_returns_to_the_previous_version_then_refuses(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote(1, reason="first")
    registry.promote(2, reason="second")

    assert _models(registry, "rollback", "--reason", "v2 misbehaves") == 0
    assert "rolled back from v2 to v1" in capsys.readouterr().out
    assert registry.current_version() == 1

    assert _models(registry, "rollback") == 2
    assert "nothing to roll back to from v1" in capsys.readouterr().err


def test_a_version_that_is_not_a_number_is_refused(registry: Registry) -> None:
    with pytest.raises(SystemExit) as stopped:
        _models(registry, "promote", "latest")
    assert stopped.value.code == 2
