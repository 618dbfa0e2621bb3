"""The model registry as the trainer, the API and an operator meet it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from models.registry import Registry, RegistryError, should_promote
from tests.models.factories import publish_version, tiny_model_bytes


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def test_published_versions_are_numbered_in_order(registry: Registry) -> None:
    first = publish_version(registry, macro_f1=0.7)
    second = publish_version(registry, macro_f1=0.8)

    assert [v.version for v in registry.versions()] == [1, 2]
    assert second.path == registry.root / "v2"
    assert second.model_path.is_file()
    assert registry.get(1).metrics["macro_f1"] == 0.7
    assert first.created_at.isoformat() == "2025-05-01T12:00:00+00:00"
    assert registry.current_version() is None and registry.current() is None


def test_a_publisher_that_lost_the_race_takes_the_next_number(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_version(registry)
    real_rename = os.rename

    def rival_publishes_first(source: str, target: str) -> None:
        monkeypatch.setattr(os, "rename", real_rename)
        publish_version(registry)  # takes v2 between our listing and our rename
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rival_publishes_first)
    mine = publish_version(registry, macro_f1=0.42)

    assert mine.version == 3 and mine.metrics["macro_f1"] == 0.42
    assert [v.version for v in registry.versions()] == [1, 2, 3]


def test_an_incomplete_staging_folder_is_not_published(registry: Registry) -> None:
    staging = registry.staging()
    (staging / "model.keras").write_bytes(tiny_model_bytes())

    with pytest.raises(RegistryError, match=r"lacks config\.json, metrics\.json"):
        registry.publish(staging)
    assert registry.versions() == []


def test_staging_and_junk_never_show_as_versions(registry: Registry) -> None:
    publish_version(registry)
    crashed = registry.staging()
    (crashed / "model.keras").write_bytes(b"half a model")
    (registry.root / "v2-tmp").mkdir()
    (registry.root / "notes").mkdir()
    (registry.root / "v3").write_text("a file, not a folder")

    assert [v.version for v in registry.versions()] == [1]

    old = time.time() - 3600
    os.utime(crashed, (old, old))
    fresh = registry.staging()
    assert registry.clean_staging(older_than_s=60) == 1
    assert not crashed.exists() and fresh.exists()


def test_an_unreadable_version_is_skipped_by_listing_but_named_by_get(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    publish_version(registry)
    broken = publish_version(registry)
    (broken.path / "metrics.json").write_text("{not json")

    assert [v.version for v in registry.versions()] == [1]
    assert "v2" in caplog.text
    with pytest.raises(RegistryError, match=r"v2/metrics\.json is unreadable"):
        registry.get(2)


def test_get_of_a_missing_version_names_it_and_the_root(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=rf"no model version v7 in {registry.root}"):
        registry.get(7)


def test_promote_points_current_at_the_version_and_records_why(registry: Registry) -> None:
    publish_version(registry)
    publish_version(registry)

    registry.promote(1, reason="first")
    promoted = registry.promote(2, reason="macro-F1 0.9 ≥ 0.8")

    assert (registry.root / "CURRENT").read_text().strip() == "v2"
    assert registry.current() == promoted
    history = [json.loads(line) for line in registry.history_file.read_text().splitlines()]
    assert [(e["version"], e["action"], e["reason"]) for e in history] == [
        (1, "promote", "first"),
        (2, "promote", "macro-F1 0.9 ≥ 0.8"),
    ]
    assert all(e["at"] for e in history)
    model = registry.load_model()
    assert model.output_shape == (None, 2)


def test_a_failed_switch_leaves_current_whole_and_on_the_old_version(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_version(registry)
    publish_version(registry)
    registry.promote(1, reason="first")

    def disk_fails(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_fails)
    with pytest.raises(RegistryError, match=r"could not point .*CURRENT at v2.*No space left"):
        registry.promote(2, reason="second")
    monkeypatch.undo()

    assert (registry.root / "CURRENT").read_text() == "v1\n"
    assert registry.current_version() == 1
    assert [v.version for v in registry.versions()] == [1, 2]
    assert sorted(p.name for p in registry.root.iterdir() if not p.name.startswith(".")) == [
        "CURRENT", "history.jsonl", "v1", "v2",
    ]  # fmt: skip
    assert [e["version"] for e in registry.history()] == [1]
    assert list(registry.root.glob(".CURRENT*")) == []


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _zip_without_a_model() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda good: b"\x00garbage, not a keras zip" * 10, "not a readable .keras zip archive"),
        (lambda good: good[:200], "not a readable .keras zip archive"),
        (lambda good: _flip(good, len(good) // 2), "fails its CRC check"),
        (lambda good: _zip_without_a_model(), "cannot load model file"),
    ],
    ids=["garbage", "truncated", "bit-flip", "wrong-contents"],
)
def test_a_damaged_model_is_never_promoted(
    registry: Registry, damage: Callable[[bytes], bytes], problem: str
) -> None:
    publish_version(registry)
    publish_version(registry, model_bytes=damage(tiny_model_bytes()))
    registry.promote(1, reason="first")

    with pytest.raises(RegistryError, match=r"v2/model\.keras") as caught:
        registry.promote(2, reason="looks better")

    assert problem in str(caught.value)
    assert registry.current_version() == 1
    assert len(registry.history()) == 1


@pytest.mark.parametrize("features", ["spectrum", "samples+magnitude"])
def test_a_fresh_process_loads_a_classifier_with_its_feature_layer(
    registry: Registry, tmp_path: Path, features: str
) -> None:
    """The API and the streaming job load models through the registry alone: it must register
    the layer a classifier begins with (WindowSpectrum by default, or WindowFeatures)."""
    import numpy as np

    from common.settings import ModelSettings
    from models.build import ModelSpec, build_classifier
    from models.spectrum import spectrum_width

    width = spectrum_width(10)
    spec = ModelSpec.from_settings(
        ModelSettings(encoder_units=(8,), magnitude_channel=features != "spectrum",
                      input_features="spectrum" if features == "spectrum" else "samples"),
        input_dim=30, classes=("a", "b"), axis_mean=(0, 9.8, 0), axis_std=(3, 3, 3),
        magnitude=(9.8, 2.0), spectrum=((0.5,) * width, (2.0,) * width),
    )  # fmt: skip
    layer = "WindowSpectrum" if features == "spectrum" else "WindowFeatures"
    assert type(build_classifier(spec).layers[1]).__name__ == layer
    model = build_classifier(spec)
    model.save(tmp_path / "model.keras")
    registry.promote(
        publish_version(registry, model_bytes=(tmp_path / "model.keras").read_bytes()).version,
        reason="test",
    )
    x = np.random.default_rng(0).normal(9, 3, size=(4, 30)).astype("f4")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np; from models.registry import Registry; "
        "m = Registry(sys.argv[1]).load_model(); "
        "np.save(sys.argv[3], np.asarray(m(np.load(sys.argv[2]))))"
    )
    out = tmp_path / "p.npy"
    arguments = [str(registry.root), str(tmp_path / "x.npy"), str(out)]
    subprocess.run([sys.executable, "-c", script, *arguments], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    np.testing.assert_allclose(np.load(out), np.asarray(model(x)), rtol=1e-5)


def test_load_model_names_a_missing_file(registry: Registry) -> None:
    version = publish_version(registry)
    version.model_path.unlink()

    with pytest.raises(RegistryError, match=rf"model file {version.model_path} is missing"):
        registry.load_model(1)


def test_load_model_without_a_promoted_version_says_so(registry: Registry) -> None:
    publish_version(registry)

    with pytest.raises(RegistryError, match="no model is promoted"):
        registry.load_model()


def test_rollback_walks_back_down_the_promotions(registry: Registry) -> None:
    for _ in range(3):
        publish_version(registry)
    for version in (1, 2, 3):
        registry.promote(version, reason=f"promote {version}")

    assert registry.rollback(reason="v3 misbehaves").version == 2
    assert registry.current_version() == 2
    assert registry.rollback(reason="v2 too").version == 1
    with pytest.raises(RegistryError, match="nothing to roll back to from v1"):
        registry.rollback(reason="again")
    assert registry.current_version() == 1
    actions = [(e["action"], e["version"]) for e in registry.history()]
    assert actions[-2:] == [("rollback", 2), ("rollback", 1)]


def test_rollback_does_not_return_to_a_rolled_back_version(registry: Registry) -> None:
    for _ in range(4):
        publish_version(registry)
    registry.promote(1, reason="a")
    registry.promote(2, reason="b")
    registry.promote(3, reason="c")
    registry.rollback(reason="v3 is bad")
    registry.promote(4, reason="d")

    assert registry.rollback(reason="v4 is bad").version == 2


def test_rollback_skips_a_version_that_no_longer_loads(registry: Registry) -> None:
    for _ in range(3):
        publish_version(registry)
    for version in (1, 2, 3):
        registry.promote(version, reason="ok")
    registry.get(2).model_path.write_bytes(b"corrupted later")

    assert registry.rollback(reason="v3 misbehaves").version == 1


def test_rollback_with_nothing_promoted_says_so(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="no model is promoted"):
        registry.rollback(reason="panic")


def test_a_garbled_current_file_is_named(registry: Registry) -> None:
    registry.root.mkdir(parents=True)
    (registry.root / "CURRENT").write_text("latest")

    with pytest.raises(RegistryError, match=r"CURRENT holds 'latest', not a version"):
        registry.current_version()


def test_gate_promotes_the_first_model_only_above_the_floor() -> None:
    assert should_promote(candidate_f1=0.62, incumbent_f1=None, floor=0.5) == (
        True,
        "macro-F1 0.620 ≥ floor 0.500 for the first model",
    )
    accepted, why = should_promote(candidate_f1=0.41, incumbent_f1=None, floor=0.5)
    assert not accepted and "0.410 < floor 0.500" in why


def test_gate_refuses_a_worse_model_and_accepts_an_equal_one() -> None:
    accepted, why = should_promote(
        candidate_f1=0.88, incumbent_f1=0.905, floor=0.5, incumbent_version=2
    )
    assert not accepted
    assert why == "macro-F1 0.880 < promoted v2's 0.905 on the same held-out devices"

    accepted, why = should_promote(candidate_f1=0.905, incumbent_f1=0.905, floor=0.99)
    assert accepted and "≥ the promoted model's 0.905" in why


def test_gate_refuses_figures_that_are_not_f1_scores() -> None:
    with pytest.raises(ValueError, match=r"candidate_f1 .* got nan"):
        should_promote(candidate_f1=float("nan"), incumbent_f1=0.5, floor=0.5)
    with pytest.raises(ValueError, match=r"incumbent_f1 .* got 1.5"):
        should_promote(candidate_f1=0.5, incumbent_f1=1.5, floor=0.5)
