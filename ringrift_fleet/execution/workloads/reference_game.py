"""The reference game: small, real, deterministic with a seed, playable on every board.

So that a fleet does real work out of the box (no GPU, no RingRift checkout),
the workloads play *Ringflip*, a placement game invented for this purpose:

* Boards: ``square8`` (8×8), ``square19`` (19×19), both with edge-sharing
  (4-way) neighbours, ``hex8`` (hexagon of side 5, 61 cells) and ``hexagonal``
  (hexagon of side 13, 469 cells), both with 6 neighbours.  2–4 players.
* Players take turns, seat 0 first.  A turn places one ring on any empty cell.
* Every opponent ring next to the new ring flips to the mover, unless it is
  *anchored*: it has at least two neighbours of its own colour.
* The game ends when the board is full.  A player's score is the rings they
  own; the highest score wins, equal highest scores share the win.

It is cheap (a move is a handful of vector operations over ``cells × 6``
arrays) yet has enough structure for a learned move evaluation to beat random
play clearly: flipping many rings, anchoring your own and not leaving rings
exposed all pay off.

Everything here is pure: a game is a function of the engines and a seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.boards import BOARD_TYPES as BOARD_TYPES  # re-exported
from ringrift_fleet.execution.boards import PLAYER_COUNTS as PLAYER_COUNTS
from ringrift_fleet.execution.boards import check_board as check_board
from ringrift_fleet.execution.boards import config_key as config_key

EMPTY = -1
ANCHOR = 2  # a ring with this many same-colour neighbours cannot be flipped

# Per-move features a model scores candidate cells with (all in [0, 1]).
BASE_FEATURES: tuple[str, ...] = (
    "flips",  # opponent rings this move flips
    "own_neighbours",  # own rings next to the new ring (it is anchored at 2)
    "empty_neighbours",  # exposure: cells an opponent could flip the ring from
    "anchored_opponents",  # opponent rings next to it that cannot be flipped
    "edge",  # 1 on a border cell (fewer neighbours, fewer ways to be flipped)
    "anchors_made",  # own rings that become anchored thanks to this ring
)
# Each base feature also enters multiplied by the game phase (share of the
# board filled), so a model can value e.g. exposure differently late on.
FEATURES: tuple[str, ...] = BASE_FEATURES + tuple(f"{f}*phase" for f in BASE_FEATURES)


@dataclass(frozen=True)
class Board:
    """A board's cells and adjacency, padded to ``max_degree`` with a sentinel cell."""

    board_type: str
    size: int
    max_degree: int
    neighbours: NDArray[np.int64]  # (size, max_degree); padding points at index ``size``
    degree: NDArray[np.int64]
    adjacency: tuple[tuple[int, ...], ...] = field(repr=False)


def _square_cells(n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    cells = [(r, c) for r in range(n) for c in range(n)]
    return cells, [(1, 0), (-1, 0), (0, 1), (0, -1)]


def _hex_cells(side: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    k = side - 1
    cells = [(q, r) for q in range(-k, k + 1) for r in range(-k, k + 1) if abs(q + r) <= k]
    return cells, [(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)]


_SHAPES: dict[str, Callable[[], tuple[list[tuple[int, int]], list[tuple[int, int]]]]] = {
    "square8": lambda: _square_cells(8),
    "square19": lambda: _square_cells(19),
    "hex8": lambda: _hex_cells(5),
    "hexagonal": lambda: _hex_cells(13),
}


@functools.cache
def board(board_type: str) -> Board:
    """The (cached) board for a board type."""
    check_board(board_type, 2)
    cells, steps = _SHAPES[board_type]()
    index = {cell: i for i, cell in enumerate(cells)}
    adjacency = tuple(
        tuple(index[(a + da, b + db)] for da, db in steps if (a + da, b + db) in index)
        for a, b in cells
    )
    size, width = len(cells), len(steps)
    nbrs = np.full((size, width), size, dtype=np.int64)
    for i, adj in enumerate(adjacency):
        nbrs[i, : len(adj)] = adj
    degree = np.array([len(a) for a in adjacency], dtype=np.int64)
    return Board(board_type, size, width, nbrs, degree, adjacency)


class GameState:
    """A position: ``owner[cell]`` is a seat or EMPTY; the sentinel cell stays EMPTY."""

    def __init__(self, b: Board, num_players: int) -> None:
        self.board = b
        self.num_players = num_players
        self.owner = np.full(b.size + 1, EMPTY, dtype=np.int64)
        self.to_move = 0
        self.filled = 0

    @property
    def over(self) -> bool:
        return self.filled >= self.board.size

    def empty_cells(self) -> NDArray[np.int64]:
        return np.flatnonzero(self.owner[: self.board.size] == EMPTY)

    def scores(self) -> list[int]:
        owned = self.owner[: self.board.size]
        counts = np.bincount(owned[owned != EMPTY], minlength=self.num_players)
        return [int(c) for c in counts[: self.num_players]]

    def filled_mask(self) -> NDArray[np.bool_]:
        mask: NDArray[np.bool_] = self.owner[: self.board.size] != EMPTY
        return mask

    def _same_count(self, cell: int) -> int:
        me = self.owner[cell]
        return sum(1 for nb in self.board.adjacency[cell] if self.owner[nb] == me)

    def play(self, cell: int) -> int:
        """Place the mover's ring on ``cell``; returns how many rings flipped."""
        if self.owner[cell] != EMPTY or not 0 <= cell < self.board.size:
            raise ValueError(f"cell {cell} is not an empty cell of {self.board.board_type}")
        me = self.to_move
        self.owner[cell] = me
        to_flip = [
            nb
            for nb in self.board.adjacency[cell]
            if self.owner[nb] not in (EMPTY, me) and self._same_count(nb) < ANCHOR
        ]
        for nb in to_flip:
            self.owner[nb] = me
        self.filled += 1
        self.to_move = (me + 1) % self.num_players
        return len(to_flip)

    def candidate_features(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Empty cells and their feature rows (``FEATURES`` order) for the player to move."""
        b, owner, me = self.board, self.owner, self.to_move
        cells = self.empty_cells()
        nb_owner = owner[b.neighbours]  # (size, width), sentinel -> EMPTY
        occupied = nb_owner != EMPTY
        same = (nb_owner == owner[: b.size, None]) & occupied
        same_count = np.append(same.sum(axis=1), 0)  # per cell, sentinel 0
        cand_nbrs = b.neighbours[cells]
        cn_owner = owner[cand_nbrs]
        cn_same = same_count[cand_nbrs]
        opp = (cn_owner != EMPTY) & (cn_owner != me)
        mine = cn_owner == me
        flips = (opp & (cn_same < ANCHOR)).sum(axis=1)
        anchored_opp = (opp & (cn_same >= ANCHOR)).sum(axis=1)
        own = mine.sum(axis=1)
        anchors_made = (mine & (cn_same == ANCHOR - 1)).sum(axis=1)
        real = cand_nbrs < b.size
        empties = (real & (cn_owner == EMPTY)).sum(axis=1)
        edge = (b.degree[cells] < b.max_degree).astype(np.float64)
        scale = float(b.max_degree)
        base = np.stack(
            [
                flips / scale,
                own / scale,
                empties / scale,
                anchored_opp / scale,
                edge,
                anchors_made / scale,
            ],
            axis=1,
        )
        phase = self.filled / b.size
        return cells, np.concatenate([base, base * phase], axis=1)


# --- engines -----------------------------------------------------------------------------

Engine = Callable[[GameState, np.random.Generator], int]


def random_engine(state: GameState, rng: np.random.Generator) -> int:
    """Uniformly random legal move (the untrained champion)."""
    cells = state.empty_cells()
    return int(cells[rng.integers(len(cells))])


def linear_engine(weights: Sequence[float], temperature: float = 0.25) -> Engine:
    """Plays by a linear score over ``FEATURES``, sampled with a softmax at ``temperature``."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(FEATURES),):
        raise ValidationError(f"model weights: expected {len(FEATURES)} numbers, got {w.shape}")

    def choose(state: GameState, rng: np.random.Generator) -> int:
        cells, feats = state.candidate_features()
        scores = feats @ w
        if temperature <= 0:
            best = np.flatnonzero(scores >= scores.max() - 1e-12)
            return int(cells[best[rng.integers(len(best))]])
        z = (scores - scores.max()) / temperature
        p = np.exp(z)
        p /= p.sum()
        return int(cells[rng.choice(len(cells), p=p)])

    return choose


# --- playing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameRecord:
    """One finished game, as written (one JSON object per line) to the games files."""

    board_type: str
    num_players: int
    seed: int
    moves: list[int]
    scores: list[int]
    engines: list[str]

    @property
    def winners(self) -> list[int]:
        top = max(self.scores)
        return [i for i, s in enumerate(self.scores) if s == top]

    def to_dict(self) -> dict[str, Any]:
        return {
            "board_type": self.board_type,
            "num_players": self.num_players,
            "seed": self.seed,
            "moves": self.moves,
            "scores": self.scores,
            "winners": self.winners,
            "engines": self.engines,
        }

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "game") -> GameRecord:
        if not isinstance(d, dict):
            raise ValidationError(f"{ctx}: expected an object")
        try:
            bt, n = check_board(d.get("board_type"), d.get("num_players"), ctx)
            moves = [int(m) for m in d["moves"]]
            scores = [int(s) for s in d["scores"]]
            engines = [str(e) for e in d.get("engines", [])]
            seed = int(d.get("seed", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"{ctx}: malformed game record ({exc})") from None
        if len(scores) != n or len(moves) != board(bt).size:
            raise ValidationError(f"{ctx}: scores/moves do not match {bt} with {n} players")
        return cls(bt, n, seed, moves, scores, engines)


def play_game(
    board_type: str,
    engines: Sequence[Engine],
    seed: int,
    engine_names: Sequence[str] | None = None,
) -> GameRecord:
    """Play one full game; ``engines[i]`` moves for seat ``i``."""
    n = len(engines)
    check_board(board_type, n)
    rng = np.random.default_rng(seed)
    state = GameState(board(board_type), n)
    moves: list[int] = []
    while not state.over:
        cell = engines[state.to_move](state, rng)
        state.play(cell)
        moves.append(cell)
    names = list(engine_names) if engine_names else ["?"] * n
    return GameRecord(board_type, n, seed, moves, state.scores(), names)


def replay_samples(game: GameRecord) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Training samples of a game: per move, the chosen move's features relative to the
    mean candidate, and the mover's final share of the rings.

    Relative features isolate what the mover *chose* from what the position offered,
    which is what a move-scoring model has to learn.
    """
    state = GameState(board(game.board_type), game.num_players)
    total = float(sum(game.scores)) or 1.0
    xs: list[NDArray[np.float64]] = []
    ys: list[float] = []
    for cell in game.moves:
        cells, feats = state.candidate_features()
        pos = np.searchsorted(cells, cell)
        if pos >= len(cells) or cells[pos] != cell:
            raise ValidationError(f"game seed {game.seed}: move {cell} is not legal")
        xs.append(feats[pos] - feats.mean(axis=0))
        ys.append(game.scores[state.to_move] / total)
        state.play(int(cell))
    return np.asarray(xs), np.asarray(ys)


def replay_batch(
    games: Sequence[GameRecord], chunk: int = 256
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`replay_samples` for many games of one board and player count at once.

    Every game of a configuration lasts exactly ``board.size`` moves with seats in
    the same order, so the games can be replayed in lockstep as one array per
    step: the same samples, an order of magnitude faster than game by game.
    Samples come game-major (all of game 0's moves, then game 1's, …).
    """
    if not games:
        return np.zeros((0, len(FEATURES))), np.zeros(0)
    bt, n = games[0].board_type, games[0].num_players
    if any(g.board_type != bt or g.num_players != n for g in games):
        raise ValidationError("replay_batch: games must share board type and player count")
    xs, ys = [], []
    for start in range(0, len(games), chunk):
        x, y = _replay_chunk(games[start : start + chunk], board(bt), n)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _replay_chunk(
    games: Sequence[GameRecord], b: Board, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    g_count, size, width = len(games), b.size, b.max_degree
    moves = np.asarray([g.moves for g in games], dtype=np.int64)  # (G, size)
    scores = np.asarray([g.scores for g in games], dtype=np.float64)
    shares = scores / np.maximum(scores.sum(axis=1, keepdims=True), 1.0)
    owner = np.full((g_count, size + 1), EMPTY, dtype=np.int64)
    rows = np.arange(g_count)
    real = b.neighbours < size  # (size, width)
    edge = (b.degree < b.max_degree).astype(np.float64)
    scale = float(width)
    x_out = np.empty((g_count, size, len(FEATURES)))
    y_out = np.empty((g_count, size))
    for t in range(size):
        me = t % n
        nb_owner = owner[:, b.neighbours]  # (G, size, width)
        occupied = nb_owner != EMPTY
        same = (nb_owner == owner[:, :size, None]) & occupied
        same_count = np.concatenate([same.sum(axis=2), np.zeros((g_count, 1), np.int64)], axis=1)
        cn_same = same_count[:, b.neighbours]
        opp = occupied & (nb_owner != me)
        mine = nb_owner == me
        base = np.stack(
            [
                (opp & (cn_same < ANCHOR)).sum(axis=2) / scale,
                mine.sum(axis=2) / scale,
                (real & ~occupied).sum(axis=2) / scale,
                (opp & (cn_same >= ANCHOR)).sum(axis=2) / scale,
                np.broadcast_to(edge, (g_count, size)),
                (mine & (cn_same == ANCHOR - 1)).sum(axis=2) / scale,
            ],
            axis=2,
        )  # (G, size, 6)
        feats = np.concatenate([base, base * (t / size)], axis=2)
        empty = (owner[:, :size] == EMPTY)[:, :, None]
        mean = (feats * empty).sum(axis=1) / empty.sum(axis=1)
        cell = moves[:, t]
        if np.any(owner[rows, cell] != EMPTY):
            bad = int(np.flatnonzero(owner[rows, cell] != EMPTY)[0])
            raise ValidationError(f"game seed {games[bad].seed}: move {cell[bad]} is not legal")
        x_out[:, t] = feats[rows, cell] - mean
        y_out[:, t] = shares[:, me]
        # Play the move: flip unanchored opponent neighbours (counts from before the move).
        nbs = b.neighbours[cell]  # (G, width)
        o = owner[rows[:, None], nbs]
        flip = (nbs < size) & (o != EMPTY) & (o != me) & (same_count[rows[:, None], nbs] < ANCHOR)
        owner[rows, cell] = me
        owner[rows[:, None], nbs] = np.where(flip, me, o)
    return x_out.reshape(-1, len(FEATURES)), y_out.reshape(-1)
