"""Models and evaluations are kept per config: the champion and the newest N, no more.

A real ArtifactStore (SQLite manifest, files on disk) in a temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringrift_fleet.config import load_config
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.jobs import validate_job
from ringrift_fleet.execution.retention import doomed, pin, pins, retain

BOARD = {"board_type": "hex8", "num_players": 2, "job_id": "j"}


def put(store: ArtifactStore, name: str, created: float) -> dict[str, Any]:
    path = store.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return store.register(name, created=created)


def model(v: int) -> str:
    return f"models/hex8_2p/v{v:04d}.json"


def test_doomed_keeps_the_newest_units_and_the_pinned_ones() -> None:
    entries = {
        "models/x/v1.json": 1.0,
        "models/x/v2.json": 2.0,
        "models/x/job3/model.pt": 3.0,
        "models/x/job3/meta.json": 3.5,
        "models/x/v4.json": 4.0,
        "models/y/v9.json": 0.0,  # another config: never touched here
    }
    assert doomed(entries, "models/x/", 2) == ["models/x/v1.json", "models/x/v2.json"]
    assert doomed(entries, "models/x/", 2, ["models/x/v1.json"]) == ["models/x/v2.json"]
    # a sub-folder is one unit: kept or removed whole
    assert doomed(entries, "models/x/", 1) == [
        "models/x/job3/meta.json",
        "models/x/job3/model.pt",
        "models/x/v1.json",
        "models/x/v2.json",
    ]
    assert doomed(entries, "models/x/", 10) == []


def test_training_keeps_the_champion_and_the_newest_candidates(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for v in range(1, 4):
        put(store, model(v), float(v))
    # this host evaluated against v0002: it is the champion here
    evaluation = validate_job(
        "evaluation", {**BOARD, "candidate": model(3), "champion": model(2), "games": 2}
    )
    assert retain(store, evaluation, {}, models_keep=3, evaluations_keep=5) == []
    assert pins(store, "models/hex8_2p/") == [model(2)]
    removed: list[str] = []
    for v in range(4, 15):  # eleven more training runs
        art = put(store, model(v), float(v))
        training = validate_job("training", {**BOARD, "version": v})
        removed += retain(store, training, {"artifacts": [art]}, models_keep=3, evaluations_keep=5)
    left = store.names("models/")
    assert left == [model(2), model(12), model(13), model(14)]
    assert sorted(removed) == sorted(model(v) for v in (1, 3, *range(4, 12)))
    on_disk = sorted(p.name for p in (tmp_path / "models" / "hex8_2p").glob("v*.json"))
    assert on_disk == ["v0002.json", "v0012.json", "v0013.json", "v0014.json"]
    # the pins file is not an artifact: never listed, never served
    assert all(not n.endswith(".pins.json") for n in store.names())


def test_a_promotion_keeps_the_previous_champion_pinned_too(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for v in range(1, 4):
        pin(store, model(v))
    assert pins(store, "models/hex8_2p/") == [model(3), model(2)]  # the last two
    # a sync that delivered a model pins it (the leader distributes champions so)
    sync = validate_job("sync", {"job_id": "s", "artifacts": [model(7)], "source": "http://h:8770"})
    put(store, model(7), 7.0)
    retain(store, sync, {"artifacts": [{"name": model(7)}]}, models_keep=1, evaluations_keep=1)
    assert pins(store, "models/hex8_2p/")[0] == model(7)


def test_evaluations_keep_the_newest_n_job_folders(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    removed: list[str] = []
    for i in range(1, 9):
        arts = [
            put(store, f"evaluations/hex8_2p/job{i}/result.json", float(i)),
            put(store, f"evaluations/hex8_2p/job{i}/games.jsonl", float(i)),
        ]
        spec = validate_job(
            "evaluation", {**BOARD, "candidate": "random", "champion": "random", "games": 1}
        )
        removed += retain(store, spec, {"artifacts": arts}, models_keep=3, evaluations_keep=5)
    folders = sorted({n.split("/")[2] for n in store.names("evaluations/")})
    assert folders == ["job4", "job5", "job6", "job7", "job8"]
    assert len(removed) == 6
    assert not (tmp_path / "evaluations" / "hex8_2p" / "job1").exists()


def test_retention_defaults_come_from_the_config() -> None:
    cfg = load_config({})
    assert (cfg.MODELS_KEEP, cfg.EVALUATIONS_KEEP) == (10, 50)
    assert load_config({"RINGRIFT_P2P_MODELS_KEEP": "3"}).MODELS_KEEP == 3
