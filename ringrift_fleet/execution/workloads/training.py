"""Training with the reference game: a ridge regression over move features, in numpy.

Each move of each game gives one sample: the chosen move's features minus the
mean over all legal moves (what the mover *chose*), labelled with the mover's
final share of the rings; games of a config are replayed in lockstep
(``reference_game.replay_batch``).  The fitted weights score candidate moves;
scaled so one unit is one standard deviation of the training scores, a softmax
temperature means the same thing for every model.  A few hundred games train
in about a second and the model beats random play nearly always.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.jobs import JobSpec
from ringrift_fleet.execution.workloads import SUPERSEDED, JobContext, WorkloadError
from ringrift_fleet.execution.workloads.reference_game import (
    FEATURES,
    GameRecord,
    config_key,
    replay_batch,
)
from ringrift_fleet.models import games_prefix

MODEL_FORMAT = "ringrift-ringflip-linear-v1"
MAX_TRAINING_GAMES = 1000  # newest files first; keeps a training run to seconds
REPLAY_CHUNK = 128  # games replayed in lockstep at once (memory: chunk × cells × 6)
_VERSION = re.compile(r"/v(\d+)\.json$")


def model_name(board_type: str, num_players: int, version: int) -> str:
    return f"models/{config_key(board_type, num_players)}/v{version:04d}.json"


def next_version(store: ArtifactStore, board_type: str, num_players: int) -> int:
    prefix = f"models/{config_key(board_type, num_players)}/"
    found = [int(m.group(1)) for n in store.names(prefix) if (m := _VERSION.search(n))]
    return max(found, default=0) + 1


def fit_weights(
    games: Sequence[GameRecord],
    l2: float = 0.01,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Weights over FEATURES fitted to ``games`` (pure), and the number of samples."""
    groups: dict[tuple[str, int], list[GameRecord]] = {}
    for game in games:
        groups.setdefault((game.board_type, game.num_players), []).append(game)
    xs, ys = [], []
    done = 0
    for group in groups.values():
        for start in range(0, len(group), REPLAY_CHUNK):
            part = group[start : start + REPLAY_CHUNK]
            x, y = replay_batch(part, chunk=REPLAY_CHUNK)
            xs.append(x)
            ys.append(y)
            done += len(part)
            if progress:
                progress(done, len(games))
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    y_all = y_all - y_all.mean()
    gram = x_all.T @ x_all + l2 * len(x_all) * np.eye(len(FEATURES))
    w = np.linalg.solve(gram, x_all.T @ y_all)
    spread = float(np.std(x_all @ w))
    if spread > 0:
        w = w / spread
    return w, len(x_all)


def load_model(store: ArtifactStore, name: str) -> dict[str, Any]:
    """A model file; the error names the artifact when it is missing or malformed."""
    path = store.path(name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(f"model {name!r}: no such artifact on this host") from None
    except ValueError:
        raise ValidationError(f"model {name!r}: not JSON") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ValidationError(f"model {name!r}: not a {MODEL_FORMAT} model")
    weights = data.get("weights")
    if not isinstance(weights, list) or len(weights) != len(FEATURES):
        raise ValidationError(f"model {name!r}: weights must be {len(FEATURES)} numbers")
    return data


def run_training(spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    from ringrift_fleet.execution.workloads.selfplay import read_games

    bt, n = spec.get("board_type"), spec.get("num_players")
    cfg = config_key(bt, n)
    names = spec.get("games")
    if names is None:
        names = ctx.store.newest(games_prefix(cfg))
    games: list[GameRecord] = []
    used: list[str] = []
    for name in names:
        if len(games) >= MAX_TRAINING_GAMES:
            break
        path = ctx.store.path(name)
        try:
            found = read_games(path)
        except ValidationError:
            if spec.get("games") is None and not path.exists():
                continue  # evicted by games retention since the listing (another process)
            raise
        games.extend(g for g in found if config_key(g.board_type, g.num_players) == cfg)
        used.append(name)
    games = games[:MAX_TRAINING_GAMES]
    if len(games) < spec.get("min_games", 1):
        raise WorkloadError(
            f"training {cfg}: {len(games)} games on this host, min_games is {spec.get('min_games')}"
        )
    version = spec.get("version") or next_version(ctx.store, bt, n)
    name = model_name(bt, n, version)
    existing = ctx.store.entry(name)
    if existing is not None and ctx.store.path(name).is_file():
        owner = load_model(ctx.store, name).get("job_id")
        if owner != spec.job_id:
            raise WorkloadError(f"training {cfg}: {name} already exists (made by job {owner})")
    weights, samples = fit_weights(games, spec.get("l2", 0.01), ctx.progress)
    if ctx.superseded():
        return {"status": "refused", "reason": SUPERSEDED, "artifacts": []}
    model = {
        "format": MODEL_FORMAT,
        "board_type": bt,
        "num_players": n,
        "version": version,
        "features": list(FEATURES),
        "weights": [round(float(w), 8) for w in weights],
        "trained_on": {"games": len(games), "samples": samples, "files": used},
        "job_id": spec.job_id,
        "created": time.time(),
    }
    artifact = ctx.store.put_bytes(name, json.dumps(model, indent=1).encode())
    return {
        "status": "completed",
        "config": cfg,
        "model": name,
        "version": version,
        "samples": samples,
        "games": len(games),
        "artifacts": [artifact],
    }
