"""Self-play with the reference game: games to compressed JSONL, named by job id.

The file name comes from the job id and the games from its seed, so a job run
twice (a redelivery after a crash) writes the same bytes to the same name: one
set of artifacts, whatever happened on the way.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.jobs import RANDOM_CHAMPION, JobSpec
from ringrift_fleet.execution.workloads import SUPERSEDED, JobContext
from ringrift_fleet.execution.workloads.reference_game import (
    Engine,
    GameRecord,
    config_key,
    linear_engine,
    play_game,
    random_engine,
)
from ringrift_fleet.execution.workloads.training import load_model
from ringrift_fleet.models import games_prefix


def game_seed(seed: int, index: int) -> int:
    """The seed of game ``index`` of a job seeded ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def games_name(board_type: str, num_players: int, job_id: str) -> str:
    return f"{games_prefix(config_key(board_type, num_players))}{job_id}.jsonl.gz"


def play_games(
    board_type: str,
    num_players: int,
    num_games: int,
    seed: int,
    engine: Engine = random_engine,
    engine_name: str = "random",
) -> Iterator[GameRecord]:
    """Self-play games one by one (pure; usable without any fleet around it)."""
    for i in range(num_games):
        yield play_game(
            board_type, [engine] * num_players, game_seed(seed, i), [engine_name] * num_players
        )


def encode_games(games: Iterable[GameRecord]) -> bytes:
    """Gzipped JSONL with a fixed timestamp, so equal games give equal bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        for g in games:
            gz.write(json.dumps(g.to_dict(), separators=(",", ":")).encode() + b"\n")
    return buf.getvalue()


def read_games(path: Path) -> list[GameRecord]:
    """Games of one file; a malformed line is an error naming file and line."""
    out: list[GameRecord] = []
    try:
        with gzip.open(path, "rt") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data: Any = json.loads(line)
                except ValueError:
                    raise ValidationError(f"{path}:{lineno}: not JSON") from None
                out.append(GameRecord.from_dict(data, f"{path}:{lineno}"))
    except (OSError, EOFError) as exc:
        raise ValidationError(f"{path}: unreadable games file ({exc})") from None
    return out


def choose_engine(spec: JobSpec, store: ArtifactStore) -> tuple[Engine, str]:
    mode, model = spec.get("engine_mode"), spec.get("model")
    if mode == "random" or model in (None, RANDOM_CHAMPION):
        return random_engine, "random"
    weights = load_model(store, model)["weights"]
    return linear_engine(weights, spec.get("temperature", 1.0)), model


def run_selfplay(spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    bt, n, total = spec.get("board_type"), spec.get("num_players"), spec.get("num_games")
    engine, engine_name = choose_engine(spec, ctx.store)
    games: list[GameRecord] = []
    stopped = ""
    try:
        for game in play_games(bt, n, total, spec.seed, engine, engine_name):
            games.append(game)
            ctx.progress(len(games), total)
            if ctx.superseded():
                return {"status": "refused", "reason": SUPERSEDED, "games": 0, "artifacts": []}
    except ctx.interrupts as exc:
        stopped = type(exc).__name__
    artifacts = []
    name = games_name(bt, n, spec.job_id)
    if games:
        artifacts.append(ctx.store.put_bytes(name, encode_games(games)))
    return {
        "status": "partial" if stopped else "completed",
        "stopped": stopped or None,
        "config": config_key(bt, n),
        "games": len(games),
        "games_path": name if games else None,
        "engine": engine_name,
        "artifacts": artifacts,
    }
