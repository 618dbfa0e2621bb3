"""labels10's rule for "pretraining helps": a one-sided sign test over the draws."""

from __future__ import annotations

import pytest

from bench.training import draws_needed_to_help, sign_test_p


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
