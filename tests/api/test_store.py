"""The latest prediction per phone in bounded memory."""

from __future__ import annotations

import pytest

from api.store import LatestPredictions
from tests.api.factories import prediction


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_later_window_replaces_an_earlier_one_but_not_the_reverse() -> None:
    store = LatestPredictions(max_devices=10, ttl_s=60)

    assert store.update(prediction("p1", "walking", window_end_ms=1_800_000_010_000))
    assert store.update(prediction("p1", "sitting", window_end_ms=1_800_000_015_000))
    assert not store.update(prediction("p1", "jogging", window_end_ms=1_800_000_005_000))

    entry = store.get("p1")
    assert entry is not None and entry.prediction.activity == "sitting"
    assert len(store) == 1


def test_the_least_recently_updated_phone_goes_first_over_the_limit() -> None:
    evicted: list[int] = []
    store = LatestPredictions(max_devices=3, ttl_s=60, on_evict=evicted.append)
    for device in ("p1", "p2", "p3"):
        store.update(prediction(device))
    store.update(prediction("p1", window_end_ms=1_900_000_000_000))  # p1 is fresh again

    store.update(prediction("p4"))

    assert store.get("p2") is None
    assert {e.prediction.device_id for e in store.page().items} == {"p1", "p3", "p4"}
    assert store.evicted == 1 and evicted == [1]


def test_phones_silent_past_the_ttl_are_forgotten() -> None:
    clock = Clock()
    store = LatestPredictions(max_devices=10, ttl_s=60, clock=clock)
    store.update(prediction("old"))
    clock.now += 45
    store.update(prediction("new"))

    clock.now += 20
    assert store.get("old") is None and store.get("new") is not None
    assert [e.prediction.device_id for e in store.page().items] == ["new"]
    assert store.expire() == 1 and len(store) == 1


def test_pages_are_ordered_by_device_and_carry_the_mix_of_the_whole_selection() -> None:
    clock = Clock()
    store = LatestPredictions(max_devices=100, ttl_s=600, clock=clock)
    for i in range(10):
        store.update(prediction(f"p{i:02d}", "walking" if i % 2 else "sitting"))
        clock.now += 10

    page = store.page(offset=4, limit=3)
    recent = store.page(within_s=25)

    assert [e.prediction.device_id for e in page.items] == ["p04", "p05", "p06"]
    assert page.total == 10 and page.activities == {"sitting": 5, "walking": 5}
    assert [e.prediction.device_id for e in recent.items] == ["p08", "p09"]


@pytest.mark.parametrize(("limit", "ttl"), [(0, 1.0), (1, 0.0)])
def test_bad_bounds_are_refused(limit: int, ttl: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        LatestPredictions(max_devices=limit, ttl_s=ttl)
