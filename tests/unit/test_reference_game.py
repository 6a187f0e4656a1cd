"""The reference game: rules, determinism, speed-independent properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.workloads.reference_game import (
    BOARD_TYPES,
    EMPTY,
    FEATURES,
    GameRecord,
    GameState,
    board,
    check_board,
    linear_engine,
    play_game,
    random_engine,
    replay_batch,
    replay_samples,
)


@pytest.mark.parametrize(
    ("board_type", "cells", "max_degree"),
    [("square8", 64, 4), ("square19", 361, 4), ("hex8", 61, 6), ("hexagonal", 469, 6)],
)
def test_board_shapes(board_type: str, cells: int, max_degree: int) -> None:
    b = board(board_type)
    assert b.size == cells and b.max_degree == max_degree
    for i, adj in enumerate(b.adjacency):  # adjacency is symmetric and irreflexive
        assert i not in adj and all(i in b.adjacency[j] for j in adj)
    assert int(b.degree.max()) == max_degree


def test_flip_and_anchor_rules() -> None:
    s = GameState(board("square8"), 2)  # cell = row*8 + col
    s.play(9)  # P0 at (1,1)
    s.play(10)  # P1 at (1,2): flips (1,1), which has no friends
    assert s.owner[9] == 1 and s.owner[10] == 1
    s.play(11)  # P0 at (1,3): flips (1,2)? it has one friend (1,1): flips
    assert s.owner[10] == 0 and s.owner[11] == 0
    s.play(1)  # P1 at (0,1): neighbour (1,1) is P1's own
    s.play(17)  # P0 at (2,1): (1,1) has friend (0,1) only -> flips
    assert s.owner[9] == 0
    # (1,1) now has friends (1,2) and (2,1): anchored, cannot be flipped.
    s.play(8)  # P1 at (1,0)
    assert s.owner[9] == 0 and s.owner[8] == 1
    with pytest.raises(ValueError):
        s.play(8)


@pytest.mark.parametrize("board_type", BOARD_TYPES)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_games_fill_the_board_and_are_deterministic(board_type: str, players: int) -> None:
    g1 = play_game(board_type, [random_engine] * players, seed=7)
    g2 = play_game(board_type, [random_engine] * players, seed=7)
    assert g1 == g2
    assert sorted(g1.moves) == list(range(board(board_type).size))
    assert sum(g1.scores) == board(board_type).size and len(g1.scores) == players
    assert g1.winners and all(g1.scores[w] == max(g1.scores) for w in g1.winners)
    assert play_game(board_type, [random_engine] * players, seed=8).moves != g1.moves


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), board_type=st.sampled_from(["square8", "hex8"]))
def test_features_describe_the_move(seed: int, board_type: str) -> None:
    rng = np.random.default_rng(seed)
    s = GameState(board(board_type), 2)
    for _ in range(int(rng.integers(0, board(board_type).size - 1))):
        s.play(random_engine(s, rng))
    cells, feats = s.candidate_features()
    assert feats.shape == (len(cells), len(FEATURES))
    assert np.all(s.owner[cells] == EMPTY) and np.all((feats >= 0) & (feats <= 1))
    b = board(board_type)
    i = int(rng.integers(len(cells)))
    before = s.owner.copy()
    flipped = s.play(int(cells[i]))
    assert flipped == round(feats[i, FEATURES.index("flips")] * b.max_degree)
    assert int(np.sum(before[: b.size] != s.owner[: b.size])) == flipped + 1


def test_record_round_trip_and_validation() -> None:
    g = play_game("hex8", [random_engine] * 3, seed=1, engine_names=["a", "b", "c"])
    assert GameRecord.from_dict(g.to_dict()) == g
    bad = {**g.to_dict(), "board_type": "hex9"}
    with pytest.raises(ValidationError, match="board_type"):
        GameRecord.from_dict(bad, "f.jsonl:3")
    with pytest.raises(ValidationError, match=r"f\.jsonl:4"):
        GameRecord.from_dict({**g.to_dict(), "moves": [1, 2]}, "f.jsonl:4")


def test_check_board_names_the_field() -> None:
    with pytest.raises(ValidationError, match="num_players: 7"):
        check_board("hex8", 7, "")
    with pytest.raises(ValidationError, match="num_players: True"):
        check_board("hex8", True)


def test_replay_samples_and_linear_engine() -> None:
    g = play_game("square8", [random_engine] * 2, seed=3)
    x, y = replay_samples(g)
    assert x.shape == (64, len(FEATURES)) and y.shape == (64,)
    assert np.all((y >= 0) & (y <= 1))
    greedy = linear_engine([1.0] + [0.0] * (len(FEATURES) - 1), temperature=0)
    s = GameState(board("square8"), 2)
    s.play(9)
    assert greedy(s, np.random.default_rng(0)) in (1, 8, 10, 17)  # next to the lone ring
    with pytest.raises(ValidationError, match="weights"):
        linear_engine([1.0, 2.0])


@settings(max_examples=10, deadline=None)
@given(
    board_type=st.sampled_from(["square8", "hex8"]),
    players=st.sampled_from([2, 3, 4]),
    seed=st.integers(0, 2**31),
)
def test_lockstep_replay_gives_the_same_samples(board_type: str, players: int, seed: int) -> None:
    games = [play_game(board_type, [random_engine] * players, seed=seed + i) for i in range(5)]
    x_batch, y_batch = replay_batch(games, chunk=2)
    singles = [replay_samples(g) for g in games]
    assert np.allclose(x_batch, np.concatenate([x for x, _ in singles]))
    assert np.allclose(y_batch, np.concatenate([y for _, y in singles]))


def test_lockstep_replay_rejects_mixed_or_illegal_games() -> None:
    a = play_game("hex8", [random_engine] * 2, seed=1)
    b = play_game("square8", [random_engine] * 2, seed=1)
    with pytest.raises(ValidationError, match="share board type"):
        replay_batch([a, b])
    bad = GameRecord("hex8", 2, 9, [0] * 61, a.scores, [])
    with pytest.raises(ValidationError, match="game seed 9: move 0 is not legal"):
        replay_batch([a, bad])
