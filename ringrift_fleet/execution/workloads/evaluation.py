"""Evaluation: candidate against champion, win rate and an Elo estimate.

Seats rotate so the candidate plays every seat equally.  With more than two
players the candidate's score is compared with each champion seat in turn
(win 1, draw ½, loss 0), so the win rate reads the same for 2, 3 and 4 players:
0.5 means equal strength.  The Elo difference is the logistic one,
``400·log10(p / (1 − p))``, with ``p`` kept half a game away from 0 and 1.

Where an evaluation runs, and how it gets its models: the scheduler runs it on
its cycle's training host, where the candidate was just trained (the best
trainer the cycle chose, holding its games), and does not move it to a host
that happens to hold the champion — that host would lack the candidate instead.
A champion this host lacks (it was down, cut off or not yet in the fleet when
the champion was distributed, or that sync failed) is fetched before the first
game: the scheduler names the hosts known to hold the models in
``model_sources`` and :func:`fetch_missing_models` copies what is missing from
the first that has it, through the verified artifact sync (the task layer calls
it, so command workloads get their models too).  Only when no source has it
does the job fail, naming the model and every source tried.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.failures import TaskInputError
from ringrift_fleet.execution.jobs import RANDOM_CHAMPION, TASK_NAMES, JobSpec
from ringrift_fleet.execution.retention import pin
from ringrift_fleet.execution.sync import SyncError, sync_artifacts
from ringrift_fleet.execution.workloads import SUPERSEDED, JobContext
from ringrift_fleet.execution.workloads.reference_game import (
    Engine,
    config_key,
    linear_engine,
    play_game,
    random_engine,
)
from ringrift_fleet.execution.workloads.selfplay import game_seed
from ringrift_fleet.execution.workloads.training import load_model

MODEL_FETCH_TIMEOUT_S = 30.0  # per request to one source


@dataclass(frozen=True)
class Tally:
    wins: float = 0.0
    draws: float = 0.0
    losses: float = 0.0

    @property
    def pairs(self) -> float:
        return self.wins + self.draws + self.losses

    @property
    def win_rate(self) -> float:
        return (self.wins + 0.5 * self.draws) / self.pairs if self.pairs else 0.5


def elo_diff(win_rate: float, pairs: float) -> float:
    """Logistic Elo difference for a win rate over ``pairs`` pairings (clamped)."""
    if pairs <= 0:
        return 0.0
    eps = 0.5 / pairs
    p = min(max(win_rate, eps), 1 - eps)
    return 400.0 * math.log10(p / (1 - p))


def engine_for(store: ArtifactStore, ref: str, temperature: float, field: str = "model") -> Engine:
    """The player for a model reference; a missing or unreadable model names ``field``
    (``ringrift.evaluation.candidate: model '…' is not on this host``)."""
    if ref == RANDOM_CHAMPION:
        return random_engine
    where = f"{TASK_NAMES['evaluation']}.{field}"
    if not store.has(ref):
        raise TaskInputError(f"{where}: model {ref!r} is not on this host")
    try:
        model = load_model(store, ref)
    except ValidationError as exc:
        raise TaskInputError(f"{where}: {exc}") from None
    return linear_engine(model["weights"], temperature)


def fetch_missing_models(
    spec: JobSpec,
    store: ArtifactStore,
    token: str,
    *,
    timeout: float = MODEL_FETCH_TIMEOUT_S,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[str]:
    """Copy the candidate and champion onto this host from ``model_sources`` when it
    lacks them; the names fetched.  Each missing model comes from the first source
    that has it; when none does, TaskInputError names the model and every source."""
    sources: list[str] = spec.get("model_sources") or []
    fetched: list[str] = []
    for field in ("candidate", "champion"):
        ref = spec.get(field)
        if not sources or not isinstance(ref, str) or ref == RANDOM_CHAMPION or store.has(ref):
            continue
        tried: list[str] = []
        for source in sources:
            try:
                report = sync_artifacts(
                    store, source, [ref], token=token, timeout=timeout, should_stop=should_stop
                )
            except (SyncError, ValidationError) as exc:
                tried.append(str(exc))
                continue
            fetched += [a["name"] for a in report.fetched]
            break
        else:
            raise TaskInputError(
                f"{TASK_NAMES['evaluation']}.{field}: model {ref!r} is not on this host and "
                f"no model source had it ({'; '.join(tried)})"
            )
    return fetched


def play_match(
    board_type: str,
    num_players: int,
    candidate: Engine,
    champion: Engine,
    games: int,
    seed: int,
    tally: Tally | None = None,
    start: int = 0,
) -> Tally:
    """Play games ``start`` … ``start+games-1`` (pure given the engines) and tally the
    candidate's pairings; game ``i`` seats the candidate at ``i mod num_players``."""
    t = tally or Tally()
    for i in range(start, start + games):
        seat = i % num_players
        engines = [champion] * num_players
        engines[seat] = candidate
        rec = play_game(board_type, engines, game_seed(seed, i))
        mine = rec.scores[seat]
        w = sum(1 for j, s in enumerate(rec.scores) if j != seat and mine > s)
        d = sum(1 for j, s in enumerate(rec.scores) if j != seat and mine == s)
        t = Tally(t.wins + w, t.draws + d, t.losses + (num_players - 1 - w - d))
    return t


def run_evaluation(spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    bt, n, total = spec.get("board_type"), spec.get("num_players"), spec.get("games")
    temp = spec.get("temperature", 0.25)
    cand_ref, champ_ref = spec.get("candidate"), spec.get("champion")
    cand = engine_for(ctx.store, cand_ref, temp, "candidate")
    champ = engine_for(ctx.store, champ_ref, temp, "champion")
    with contextlib.suppress(OSError):  # housekeeping never fails a job
        pin(ctx.store, champ_ref)  # model retention keeps this host's champion (retention.py)
    tally, played, stopped = Tally(), 0, ""
    try:
        for i in range(total):
            tally = play_match(bt, n, cand, champ, 1, spec.seed, tally, start=i)
            played += 1
            ctx.progress(played, total)
            if ctx.superseded():
                return {"status": "refused", "reason": SUPERSEDED, "games": 0, "artifacts": []}
    except ctx.interrupts as exc:
        stopped = type(exc).__name__
    return {
        "status": "partial" if stopped else "completed",
        "stopped": stopped or None,
        "config": config_key(bt, n),
        "candidate": cand_ref,
        "champion": champ_ref,
        "games": played,
        "wins": tally.wins,
        "draws": tally.draws,
        "losses": tally.losses,
        "win_rate": round(tally.win_rate, 4),
        "elo_diff": round(elo_diff(tally.win_rate, tally.pairs), 1),
        "artifacts": [],
    }
