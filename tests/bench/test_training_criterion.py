"""The training bench's figures: labels10's sign test and per-class counts, (c) over (b)."""

from __future__ import annotations

import pytest

from bench.training import (
    draws_needed_to_help,
    median_run,
    partial_slowdown,
    per_class_draws_gained_lost,
    pretraining_verdict,
    ratio,
    sign_test_p,
)


def test_sign_test_p_is_the_binomial_tail_under_no_effect() -> None:
    assert sign_test_p(5, 5) == pytest.approx(1 / 32)
    assert sign_test_p(9, 10) == pytest.approx(11 / 1024)  # 9 or 10 of 10
    assert sign_test_p(0, 7) == pytest.approx(1.0)


@pytest.mark.parametrize(("draws", "needed"), [(5, 5), (6, 6), (8, 7), (10, 9), (12, 10)])
def test_draws_needed_is_the_fewest_gains_the_test_accepts(draws: int, needed: int) -> None:
    assert draws_needed_to_help(draws) == needed
    assert sign_test_p(needed, draws) <= 0.05 < sign_test_p(needed - 1, draws)


def test_too_few_draws_can_never_show_help() -> None:
    assert draws_needed_to_help(4) is None  # even 4 of 4 happens by chance 1 time in 16


def test_per_class_counts_gains_and_losses_beyond_a_tie() -> None:
    draws = [
        {"f1_gain_per_class": {"walking": 0.02, "downstairs": -0.05, "sitting": 0.0}},
        {"f1_gain_per_class": {"walking": 0.0005, "downstairs": -0.001, "sitting": 0.0}},
        {"f1_gain_per_class": {"walking": -0.03, "downstairs": 0.001, "sitting": 0.0}},
    ]
    assert per_class_draws_gained_lost(draws) == {
        "walking": [1, 1], "downstairs": [1, 2], "sitting": [0, 0],
    }  # fmt: skip


def _draws(pairs: list[tuple[float, float]]) -> list[dict]:
    return [{"macro_f1_pretrained": pre, "macro_f1_no_pretraining": bare, "gain": pre - bare}
            for pre, bare in pairs]  # fmt: skip


def test_a_small_gain_helps_when_little_is_left_to_gain() -> None:
    # without pretraining 0.985: a tenth of the 0.015 it lacks is 0.0015; gains of 0.003
    verdict = pretraining_verdict(_draws([(0.988, 0.985)] * 9 + [(0.985, 0.985)]))
    assert verdict["draws_with_gain"] == 9 and verdict["draws_tied"] == 1
    assert verdict["sign_test_p"] == pytest.approx(1 / 512, abs=1e-4)
    assert verdict["share_of_shortfall_removed"] == pytest.approx(0.18)  # 0.0027 / 0.015
    assert verdict["helps"]


def test_the_same_gain_is_too_small_when_much_is_left() -> None:
    # without pretraining 0.88: the gain must reach 0.012
    verdict = pretraining_verdict(_draws([(0.883, 0.88)] * 10))
    assert verdict["share_of_shortfall_removed"] == pytest.approx(0.025)
    assert not verdict["helps"]


def test_a_large_mean_gain_from_few_draws_does_not_help() -> None:
    # a big gain in 5 of 10 draws: the mean is large, the sign test is not convinced
    verdict = pretraining_verdict(_draws([(0.95, 0.88)] * 5 + [(0.87, 0.88)] * 5))
    assert verdict["gain_mean"] == pytest.approx(0.03)
    assert verdict["sign_test_p"] > 0.05
    assert not verdict["helps"]


def _run(*rounds: tuple[str, int, float, float | None]) -> dict:
    return {"history": [{"phase": phase, "round": r, "partial_s": partial, "val_accuracy": acc}
                        for phase, r, partial, acc in rounds]}  # fmt: skip


def test_partial_slowdown_compares_the_rounds_both_ran_to_the_target() -> None:
    b = _run(("pretrain-0", 0, 4.0, None), ("finetune", 0, 2.0, 0.98), ("finetune", 1, 2.0, 0.99))
    # (c) needs one round more to reach the target: that round has no (b) round to match
    c = _run(("pretrain-0", 0, 6.0, None), ("finetune", 0, 3.0, 0.95), ("finetune", 1, 9.0, 0.98))
    assert partial_slowdown(b, c, target=0.97) == pytest.approx(9.0 / 6.0)


def test_partial_slowdown_is_none_when_a_run_never_reaches_the_target() -> None:
    b = _run(("finetune", 0, 2.0, 0.98))
    c = _run(("finetune", 0, 2.0, 0.90))
    assert partial_slowdown(b, c, target=0.97) is None


def test_the_median_run_is_the_middle_time_and_a_run_short_of_the_target_is_slowest() -> None:
    times = [{"seconds_to_target": s} for s in (30.0, 18.0, 25.0)]
    assert median_run(times) == 2
    times = [{"seconds_to_target": s} for s in (None, 18.0, 25.0)]
    assert median_run(times) == 2
    times = [{"seconds_to_target": s} for s in (None, None, 25.0)]
    assert median_run(times) in (0, 1)  # a median that never reached the target


def test_the_speedup_is_none_without_both_times() -> None:
    assert ratio(28.9, 17.0) == 1.7
    assert ratio(None, 17.0) is None and ratio(28.9, None) is None
