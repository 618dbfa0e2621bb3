"""The `mbd` command line: help, settings errors and broker subcommands as a user meets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli import build_parser, main


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "broker" in out and "setup" in out


def test_status_of_a_directory_without_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "status", "--data-dir", str(tmp_path)]) == 3
    assert "no broker running" in capsys.readouterr().out


def test_a_bad_setting_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBD_BROKER_HEAP", "a-lot")
    assert main(["broker", "status", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "heap" in err and "a-lot" in err


def test_a_bad_combination_of_settings_names_the_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBD_MODEL_MAGNITUDE_CHANNEL", "true")  # the default input is the spectrum
    assert main(["train", "--lake", str(tmp_path / "lake")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mbd: bad setting combination: "), line
    assert "needs MBD_MODEL_INPUT_FEATURES=samples" in line, line
