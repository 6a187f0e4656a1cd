"""When a board config trains, how urgent it is, and which node gets the run."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.models import NodeHealth, NodeSummary, ResourceMetrics
from ringrift_fleet.training import (
    TrainingDecision,
    TrainingThresholds,
    calculate_config_training_priority,
    calculate_node_training_priority,
    calculate_training_priority,
    rank_nodes_for_training,
    should_trigger_training,
)

T = TrainingThresholds()
CFG = P2PConfig(NODE_ID="test")


def test_thresholds_read_like_the_seed() -> None:
    assert TrainingThresholds().MIN_GAMES == TrainingThresholds.MIN_GAMES == 5000
    assert T.STALENESS_HOURS == 24.0
    assert T.MIN_HOURS_BETWEEN_RUNS == 2.0
    assert TrainingThresholds(MIN_GAMES=100, MIN_GAMES_WHEN_STALE=10).MIN_GAMES == 100
    with pytest.raises(ValidationError, match=r"TrainingThresholds\.STALENESS_HOURS"):
        TrainingThresholds(STALENESS_HOURS=-1)
    with pytest.raises(ValidationError, match="must not exceed MIN_GAMES"):
        TrainingThresholds(MIN_GAMES=100)  # MIN_GAMES_WHEN_STALE 1000 > 100
    with pytest.raises(AttributeError):
        T.MIN_GAMES = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("games", "hours", "train", "reason_has"),
    [
        (5000, 12.0, True, "5000 new games >= MIN_GAMES 5000"),
        (4999, 12.0, False, "only 4999 new games"),
        (1000, 24.0, True, "stale: model 24.0 h old"),
        (999, 48.0, False, "stale but only 999 new games"),
        (1500, None, True, "stale: never trained"),
        (100000, 1.5, False, "rate limited: last run 1.5 h ago"),
        (0, 0.0, False, "rate limited"),
    ],
)
def test_decision_table(games: int, hours: float | None, train: bool, reason_has: str) -> None:
    decision = should_trigger_training(games_available=games, hours_since_last_training=hours)
    should, reason = decision
    assert should is train and bool(decision) is train
    assert reason_has in reason


def test_both_keyword_spellings_agree() -> None:
    a = should_trigger_training(games_available=6000, hours_since_train=24.0, thresholds=T)
    b = should_trigger_training(games_available=6000, hours_since_last_training=24.0)
    assert a == b and isinstance(a, TrainingDecision) and a
    same = should_trigger_training(
        games_available=6000, hours_since_last_training=24.0, hours_since_train=24.0
    )
    assert same == a
    with pytest.raises(ValidationError, match="give one"):
        should_trigger_training(
            games_available=6000, hours_since_last_training=24.0, hours_since_train=3.0
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"games_available": -1, "hours_since_last_training": 3}, "games_available"),
        ({"games_available": "many", "hours_since_last_training": 3}, "games_available"),
        ({"games_available": 10, "hours_since_last_training": -3}, "hours_since_last_training"),
        ({"games_available": math.nan, "hours_since_last_training": 3}, "games_available"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        should_trigger_training(**kwargs)  # type: ignore[arg-type]


# --- properties of the decision -----------------------------------------------------------

games_st = st.integers(min_value=0, max_value=50_000)
hours_st = st.one_of(st.none(), st.floats(min_value=0, max_value=1000, allow_nan=False))
thresholds_st = st.builds(
    lambda g, s, stale, gap: TrainingThresholds(
        MIN_GAMES=g,
        STALENESS_HOURS=s,
        MIN_GAMES_WHEN_STALE=min(stale, g),
        MIN_HOURS_BETWEEN_RUNS=gap,
    ),
    st.integers(0, 20_000),
    st.floats(0, 100),
    st.integers(0, 20_000),
    st.floats(0, 10),
)


@given(games_st, games_st, hours_st, thresholds_st)
def test_more_games_never_turns_yes_into_no(
    a: int, b: int, hours: float | None, t: TrainingThresholds
) -> None:
    lo, hi = sorted((a, b))
    if should_trigger_training(games_available=lo, hours_since_train=hours, thresholds=t):
        assert should_trigger_training(games_available=hi, hours_since_train=hours, thresholds=t)


@given(games_st, hours_st, hours_st, thresholds_st)
def test_older_model_never_turns_yes_into_no(
    games: int, a: float | None, b: float | None, t: TrainingThresholds
) -> None:
    def key(h: float | None) -> float:
        return math.inf if h is None else h

    lo, hi = sorted((a, b), key=key)
    if should_trigger_training(games_available=games, hours_since_train=lo, thresholds=t):
        assert should_trigger_training(games_available=games, hours_since_train=hi, thresholds=t)


@given(games_st, st.floats(0, 10), thresholds_st)
def test_rate_limit_always_holds(games: int, hours: float, t: TrainingThresholds) -> None:
    decision = should_trigger_training(games_available=games, hours_since_train=hours, thresholds=t)
    if hours < t.MIN_HOURS_BETWEEN_RUNS:
        assert not decision and decision.reason.startswith("rate limited")
    assert bool(decision) == decision[0] and decision.reason


# --- priorities -----------------------------------------------------------------------------


def test_config_priority_orders_configs_sensibly() -> None:
    seed = calculate_training_priority(
        games_since_last_train=5000, hours_since_last_train=12.0, current_elo=1200
    )
    assert seed == calculate_config_training_priority(5000, 12.0, 1200)
    assert seed == pytest.approx(1.0 + 0.25 + 0.3)
    more_games = calculate_config_training_priority(8000, 12.0, 1200)
    older = calculate_config_training_priority(5000, 30.0, 1200)
    stronger = calculate_config_training_priority(5000, 12.0, 1800)
    assert more_games > seed and older > seed and stronger < seed
    with pytest.raises(ValidationError, match="current_elo"):
        calculate_config_training_priority(5000, 12.0, float("nan"))


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 1e4), st.floats(0, 3000))
def test_config_priority_monotone_in_games(a: int, b: int, hours: float, elo: float) -> None:
    lo, hi = sorted((a, b))
    assert calculate_config_training_priority(lo, hours, elo) <= calculate_config_training_priority(
        hi, hours, elo
    )


def test_node_priority_seed_form() -> None:
    p = calculate_training_priority(
        gpu_type="H100", memory_gb=80, current_load=30, has_training_data=True
    )
    assert p == calculate_node_training_priority("H100", 80, 30, True)
    assert p == pytest.approx((1.0 + 0.125) * 0.7 * 1.25)
    # better GPU, lower load, local data each raise it; a GPU that cannot train scores 0
    assert calculate_node_training_priority("GH200", 96, 30, True) > p
    assert calculate_node_training_priority("H100", 80, 10, True) > p
    assert calculate_node_training_priority("H100", 80, 30, False) < p
    assert calculate_node_training_priority("A10", 24, 0, True, CFG) == 0.0
    assert calculate_node_training_priority("CPU", 0, 0, True, CFG) == 0.0
    with pytest.raises(ValidationError, match="current_load: expected a percentage"):
        calculate_node_training_priority("H100", 80, 130, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"gpu_type": "H100", "memory_gb": 80, "current_elo": 1200},
            "mixes board-config arguments (current_elo) with node arguments (gpu_type, memory_gb)",
        ),
        (
            {"gpu_type": "H100", "memory_gb": 80},
            "the node form needs current_load, has_training_data",
        ),
        (
            {"games_since_last_train": 10},
            "the board-config form needs hours_since_last_train, current_elo",
        ),
        ({"gpu": "H100"}, "unknown argument 'gpu'"),
        ({}, "the board-config form needs"),
    ],
)
def test_priority_front_rejects_mixed_or_partial_forms(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        calculate_training_priority(**kwargs)  # type: ignore[call-overload]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


# --- ranking nodes -------------------------------------------------------------------------


def node(
    name: str, gpu: str = "H100", vram: float = 80, cpu: float = 10.0, **kw: object
) -> NodeSummary:
    metrics = kw.pop(
        "metrics",
        ResourceMetrics(cpu_percent=cpu, memory_percent=20, gpu_memory_percent=10, disk_percent=30),
    )
    return NodeSummary(
        node_id=name,
        gpu_type=gpu,
        gpu_count=kw.pop("gpu_count", 1),
        gpu_vram_gb=vram,
        metrics=metrics,
        **kw,
    )  # type: ignore[arg-type]


def test_ranking_filters_and_orders() -> None:
    nodes = [
        node("h100-b"),
        node("h100-a"),
        node("gh200", "GH200", 96),
        node("busy", "GH200", 96, cpu=95.0),  # CPU over its threshold
        node("ill", "GH200", 96, health=NodeHealth.DEGRADED),
        node("rtx", "RTX_4090", 24),
        node("weak", "A10", 24),  # cannot train
        node("cpu", "CPU", 0, gpu_count=0),
        node("full-disk", "H100", 80, metrics=ResourceMetrics(disk_percent=80.0)),
    ]
    ranked = [n.node_id for n in rank_nodes_for_training(nodes, CFG)]
    assert ranked == ["gh200", "h100-a", "h100-b", "rtx"]
    with_data = rank_nodes_for_training(nodes, CFG, nodes_with_data={"h100-b"})
    assert [n.node_id for n in with_data][:2] == ["h100-b", "gh200"]


def test_load_max_for_new_jobs_is_respected() -> None:
    loaded = node(
        "loaded",
        metrics=ResourceMetrics(
            cpu_percent=89, memory_percent=89, gpu_memory_percent=89, disk_percent=60
        ),
    )
    assert loaded.metrics.load_score > CFG.LOAD_MAX_FOR_NEW_JOBS
    assert rank_nodes_for_training([loaded], CFG) == []
    lenient = CFG.replace(LOAD_MAX_FOR_NEW_JOBS=1.0)
    assert rank_nodes_for_training([loaded], lenient) == [loaded]


@given(
    st.permutations(
        [
            node(f"n{i}", g, v)
            for i, (g, v) in enumerate(
                [("H100", 80), ("H100", 80), ("GH200", 96), ("RTX_4090", 24), ("A100", 80)]
            )
        ]
    )
)
def test_ranking_is_deterministic_whatever_the_input_order(nodes: list[NodeSummary]) -> None:
    ranked = [n.node_id for n in rank_nodes_for_training(nodes, CFG)]
    assert ranked == ["n2", "n0", "n1", "n4", "n3"]
