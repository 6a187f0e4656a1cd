"""Fair share: configs get self-play in proportion to their weights, in compute not jobs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.scheduler.fairshare import (
    UsageWindow,
    pick_configs,
    share_ratios,
    window_totals,
)
from ringrift_fleet.scheduler.snapshot import BoardConfig

C3 = (BoardConfig("hex8", 2, 1.0), BoardConfig("square19", 4, 2.0), BoardConfig("square8", 3, 1.0))


def test_picks_follow_the_weights_in_compute_not_in_jobs() -> None:
    # square19_4p jobs are 4x as long: it gets half the compute (weight 2 of 4)
    # which is a quarter as many jobs per unit of compute
    lengths = {"hex8_2p": 100.0, "square19_4p": 400.0, "square8_3p": 100.0}
    picks = Counter(pick_configs(C3, {}, lengths, 600))
    compute = {k: n * lengths[k] for k, n in picks.items()}
    total = sum(compute.values())
    assert compute["square19_4p"] / total == pytest.approx(0.5, abs=0.02)
    assert compute["hex8_2p"] / total == pytest.approx(0.25, abs=0.02)


def test_an_underserved_config_is_served_first() -> None:
    charge = {"hex8_2p": 10_000.0, "square19_4p": 50_000.0, "square8_3p": 0.0}
    assert pick_configs(C3, charge, {}, 3) == ["square8_3p"] * 3


def test_zero_weight_configs_get_nothing() -> None:
    configs = (BoardConfig("hex8", 2, 0.0), BoardConfig("square8", 2, 1.0))
    assert set(pick_configs(configs, {}, {}, 10)) == {"square8_2p"}
    assert pick_configs(configs, {}, {}, 0) == []


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.floats(0.1, 10), min_size=2, max_size=12),
    lengths=st.lists(st.floats(10, 5000), min_size=12, max_size=12),
)
def test_long_runs_converge_to_the_weights(weights: list[float], lengths: list[float]) -> None:
    configs = tuple(
        BoardConfig(b, n, w)
        for (b, n), w in zip(
            [(b, n) for b in ("square8", "square19", "hex8", "hexagonal") for n in (2, 3, 4)],
            weights,
            strict=False,
        )
    )
    est = {c.key: lengths[i] for i, c in enumerate(configs)}
    charge: dict[str, float] = {}
    for key in pick_configs(configs, {}, est, 4000):
        charge[key] = charge.get(key, 0.0) + est[key]
    ratios = share_ratios(charge, configs)
    assert min(ratios.values()) >= 0.5


def test_usage_window_forgets_what_is_older_than_the_window() -> None:
    w = UsageWindow(window_s=3600, bucket_s=60)
    w.add("a", 0, 600)  # 10 minutes at H100 power
    w.add("b", 3000, 3600, power=0.5)
    assert w.totals(3600) == pytest.approx({"a": 600.0, "b": 300.0})
    assert w.totals(3600 + 600 + 60) == pytest.approx({"b": 300.0})
    assert w.totals(9000) == {}


def test_window_totals_clip_intervals_to_the_window() -> None:
    intervals = [("a", 0.0, 100.0, 1.0), ("a", 50.0, 150.0, 0.5), ("b", 200.0, 300.0, 1.0)]
    assert window_totals(intervals, 100.0, 250.0) == pytest.approx({"a": 25.0, "b": 50.0})


def test_share_ratios_compare_shares_with_weights() -> None:
    ratios = share_ratios({"hex8_2p": 25.0, "square19_4p": 50.0, "square8_3p": 25.0}, C3)
    assert ratios == pytest.approx({"hex8_2p": 1.0, "square19_4p": 1.0, "square8_3p": 1.0})
    starved = share_ratios({"hex8_2p": 80.0, "square19_4p": 10.0, "square8_3p": 10.0}, C3)
    assert starved["square19_4p"] == pytest.approx(0.2)
