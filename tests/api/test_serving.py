"""models.serving: the promoted model in memory, following CURRENT without a web framework."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models.registry import Registry, RegistryError
from models.serving import LoadedModel, PromotedModel, load_version
from tests.api.factories import CLASSES, INPUT_DIM, publish_classifier


def test_the_promoted_version_loads_and_scores_batches(registry: Registry) -> None:
    promoted = PromotedModel(registry)

    assert promoted.get() is None
    assert promoted.refresh()
    model = promoted.get()

    assert model is not None and model.version == 1 and model.classes == CLASSES
    probabilities = model.predict(np.zeros((5, INPUT_DIM), np.float32))
    assert probabilities.shape == (5, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert model.activities(probabilities)[0] in CLASSES
    with pytest.raises(ValueError, match=r"scores tensors of shape \(n, 600\), got \(2, 3\)"):
        model.predict(np.zeros((2, 3)))


def test_refresh_reads_current_at_most_every_interval(registry: Registry) -> None:
    promoted = PromotedModel(registry, check_interval_s=3600)
    promoted.refresh()
    registry.promote(2, reason="newer")

    assert not promoted.refresh()  # within the interval: CURRENT is not even read
    assert promoted.get().version == 1  # type: ignore[union-attr]
    assert promoted.refresh(force=True)
    assert promoted.get().version == 2  # type: ignore[union-attr]
    assert not promoted.refresh(force=True)  # unchanged: nothing to do


def test_a_background_load_swaps_when_ready_and_callers_keep_their_model(
    registry: Registry,
) -> None:
    promoted = PromotedModel(registry, check_interval_s=0.01)
    promoted.refresh()
    held = promoted.get()
    registry.promote(2, reason="newer")

    assert promoted.refresh(force=True, wait=False)
    assert promoted.wait_until_serving(2, timeout_s=60)
    assert held is not None and held.version == 1  # the old reference still scores
    assert held.predict(np.zeros((1, INPUT_DIM))).shape == (1, len(CLASSES))


def test_a_failed_load_keeps_the_old_model_and_is_not_retried_until_current_changes(
    registry: Registry,
) -> None:
    calls: list[int] = []

    def counting_loader(reg: Registry, version: int) -> LoadedModel:
        calls.append(version)
        return load_version(reg, version)

    promoted = PromotedModel(registry, check_interval_s=0.01, loader=counting_loader)
    promoted.refresh()
    broken = publish_classifier(registry, model_bytes=b"junk")
    (registry.root / "CURRENT").write_text(f"v{broken.version}\n")

    assert promoted.refresh(force=True)
    assert promoted.get().version == 1  # type: ignore[union-attr]
    assert promoted.last_error is not None
    assert promoted.last_error.startswith("v3 failed to load: model file ")
    time.sleep(0.05)  # past the check interval, so the next refresh reads CURRENT again
    assert not promoted.refresh()  # the same pointer is not loaded again
    assert calls == [1, 3]

    registry.promote(2, reason="fixed")
    assert promoted.refresh(force=True)
    assert promoted.get().version == 2 and promoted.last_error is None  # type: ignore[union-attr]


def test_a_garbled_pointer_is_reported_and_the_model_keeps_serving(registry: Registry) -> None:
    promoted = PromotedModel(registry)
    promoted.refresh()
    (registry.root / "CURRENT").write_text("latest\n")

    assert not promoted.refresh(force=True)
    assert promoted.get().version == 1  # type: ignore[union-attr]
    assert "holds 'latest', not a version like v3" in (promoted.last_error or "")


def test_a_version_without_a_class_list_does_not_load(registry: Registry) -> None:
    config = registry.root / "v2" / "config.json"
    config.write_text(json.dumps({"train": {}}))

    with pytest.raises(RegistryError, match=r"has no class list at spec\.classes"):
        load_version(registry, 2)


def test_a_class_list_that_does_not_match_the_outputs_does_not_load(registry: Registry) -> None:
    config_path = registry.root / "v2" / "config.json"
    config = json.loads(config_path.read_text())
    config["spec"]["classes"] = ["walking", "sitting"]
    config_path.write_text(json.dumps(config))

    with pytest.raises(RegistryError, match=r"outputs shape \(6,\) but config\.json names 2"):
        load_version(registry, 2)


def test_the_watcher_follows_current(registry: Registry, tmp_path: Path) -> None:
    promoted = PromotedModel(registry, check_interval_s=0.02)
    promoted.start()
    try:
        assert promoted.wait_until_serving(1, timeout_s=60)
        registry.promote(2, reason="watch me")
        assert promoted.wait_until_serving(2, timeout_s=60)
    finally:
        promoted.stop()
    assert promoted.status().serving == 2 and promoted.status().promoted == 2
