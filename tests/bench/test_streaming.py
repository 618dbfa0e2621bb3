"""The streaming bench's split of a drain's time into a fixed cost and a marginal rate."""

from __future__ import annotations

import pytest

from bench.streaming import fixed_and_marginal


def test_two_drains_on_one_line_give_its_intercept_and_slope() -> None:
    # 4 s fixed, 100,000 readings/s: 400,000 readings take 8 s, 2,000,000 take 24 s.
    cost = fixed_and_marginal((400_000, 8.0), (2_000_000, 24.0))

    assert cost["fixed_seconds_per_drain"] == pytest.approx(4.0)
    assert cost["marginal_readings_per_s"] == pytest.approx(100_000.0)
    assert fixed_and_marginal((2_000_000, 24.0), (400_000, 8.0)) == cost


@pytest.mark.parametrize("drains", [((400_000, 8.0), (2_000_000, 7.5)),
                                    ((400_000, 8.0), (400_000, 9.0)),
                                    ((400_000, 1.0), (2_000_000, 20.0))])  # fmt: skip
def test_drains_off_a_line_with_a_positive_fixed_cost_give_no_split(drains: tuple) -> None:
    assert fixed_and_marginal(*drains) == {
        "fixed_seconds_per_drain": None,
        "marginal_readings_per_s": None,
    }
