"""The reference workload's speed and strength, on one core, without Celery.

Measures what the end-to-end demo relies on: a 4-game hex8 self-play, one game
on each board, replaying games for training (game by game and in lockstep, on
the same games), training, and how often the trained model beats the random
champion.  Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.execution.artifacts import ArtifactStore  # noqa: E402
from ringrift_fleet.execution.jobs import validate_job  # noqa: E402
from ringrift_fleet.execution.workloads import JobContext  # noqa: E402
from ringrift_fleet.execution.workloads.evaluation import play_match  # noqa: E402
from ringrift_fleet.execution.workloads.reference_game import (  # noqa: E402
    BOARD_TYPES,
    linear_engine,
    play_game,
    random_engine,
    replay_batch,
    replay_samples,
)
from ringrift_fleet.execution.workloads.selfplay import play_games, run_selfplay  # noqa: E402
from ringrift_fleet.execution.workloads.training import fit_weights  # noqa: E402


def _best_of(n: int, fn: object) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = JobContext(store=ArtifactStore(Path(tmp)))
        spec = validate_job(
            "selfplay", {"board_type": "hex8", "num_players": 2, "num_games": 4, "job_id": "b"}
        )
        out["hex8_selfplay_4_games_s"] = round(_best_of(5, lambda: run_selfplay(spec, ctx)), 4)
    for bt in BOARD_TYPES:
        out[f"{bt}_random_game_s"] = round(
            _best_of(3, lambda bt=bt: play_game(bt, [random_engine] * 2, seed=1)), 4
        )
    win_rates: dict[str, float] = {}
    for bt, n_games in (("hex8", 300), ("square8", 300), ("square19", 40), ("hexagonal", 30)):
        games = list(play_games(bt, 2, n_games, seed=11))
        # Same games, same moment: game-by-game replay against lockstep replay.
        out[f"{bt}_replay_{n_games}_single_s"] = round(
            _best_of(1, lambda games=games: [replay_samples(g) for g in games]), 3
        )
        out[f"{bt}_replay_{n_games}_lockstep_s"] = round(
            _best_of(1, lambda games=games: replay_batch(games)), 3
        )
        t = time.perf_counter()
        weights, _ = fit_weights(games)
        train_s = time.perf_counter() - t
        out[f"{bt}_train_{n_games}_games_s"] = round(train_s, 3)
        model = linear_engine(weights, temperature=0.25)
        out[f"{bt}_model_game_s"] = round(
            _best_of(1, lambda bt=bt, model=model: play_game(bt, [model, random_engine], seed=5)), 4
        )
        tally = play_match(bt, 2, model, random_engine, 20, seed=99)
        win_rates[bt] = round(tally.win_rate, 3)
    out["trained_vs_random_win_rate"] = win_rates
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
