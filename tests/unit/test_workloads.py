"""Workloads without Celery: self-play files, training, evaluation, argument checks, store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import ArtifactStore, check_name
from ringrift_fleet.execution.jobs import fields_of, seed_from, validate_job
from ringrift_fleet.execution.workloads import JobContext, StopRequested, WorkloadError
from ringrift_fleet.execution.workloads.evaluation import Tally, elo_diff, run_evaluation
from ringrift_fleet.execution.workloads.selfplay import read_games, run_selfplay
from ringrift_fleet.execution.workloads.training import load_model, run_training


def _ctx(tmp_path: Path, **kw: object) -> JobContext:
    return JobContext(store=ArtifactStore(tmp_path / "art"), node="n", **kw)  # type: ignore[arg-type]


def _selfplay(ctx: JobContext, job_id: str, games: int, bt: str = "hex8", n: int = 2) -> dict:
    spec = validate_job(
        "selfplay", {"board_type": bt, "num_players": n, "num_games": games, "job_id": job_id}
    )
    return run_selfplay(spec, ctx)


def test_selfplay_writes_one_deterministic_file_per_job(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    a = _selfplay(ctx, "job-1", 4)
    assert a["status"] == "completed" and a["games"] == 4
    assert a["games_path"] == "games/hex8_2p/job-1.jsonl.gz"
    first = ctx.store.path(a["games_path"]).read_bytes()
    b = _selfplay(ctx, "job-1", 4)  # the same job again (a redelivery)
    assert b["artifacts"] == a["artifacts"]
    assert ctx.store.path(a["games_path"]).read_bytes() == first
    assert len(read_games(ctx.store.path(a["games_path"]))) == 4
    assert ctx.store.names("games/") == ["games/hex8_2p/job-1.jsonl.gz"]


def test_selfplay_stops_and_keeps_finished_games(tmp_path: Path) -> None:
    done: list[int] = []

    def progress(d: int, total: int) -> None:
        done.append(d)
        if d == 3:
            raise StopRequested()

    out = _selfplay(_ctx(tmp_path, progress=progress), "stopped", 10)
    assert out["status"] == "partial" and out["games"] == 3 and out["stopped"] == "StopRequested"
    ctx = _ctx(tmp_path, superseded=lambda: True)  # another copy took the job over
    out = _selfplay(ctx, "taken-over", 10)
    assert out["status"] == "refused" and out["artifacts"] == []
    assert not ctx.store.path("games/hex8_2p/taken-over.jsonl.gz").exists()


def test_training_produces_a_versioned_model_that_beats_random(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    _selfplay(ctx, "g1", 60, "square8", 3)
    _selfplay(ctx, "g2", 60, "square8", 3)
    spec = validate_job("training", {"board_type": "square8", "num_players": 3, "job_id": "t1"})
    t1 = run_training(spec, ctx)
    assert t1["model"] == "models/square8_3p/v0001.json" and t1["games"] == 120
    one_file = {**spec_kw(3), "games": ["games/square8_3p/g1.jsonl.gz"], "job_id": "t2"}
    t2 = run_training(validate_job("training", one_file), ctx)
    assert t2["version"] == 2 and t2["games"] == 60
    model = load_model(ctx.store, t1["model"])
    assert model["trained_on"]["games"] == 120 and len(model["weights"]) == 12
    ev = validate_job(
        "evaluation",
        {
            "board_type": "square8",
            "num_players": 3,
            "candidate": t1["model"],
            "champion": "random",
            "games": 12,
            "job_id": "e1",
        },
    )
    res = run_evaluation(ev, ctx)
    assert res["games"] == 12 and res["wins"] + res["draws"] + res["losses"] == 24
    assert res["win_rate"] > 0.75 and res["elo_diff"] > 150
    with pytest.raises(WorkloadError, match="already exists"):
        run_training(validate_job("training", {**spec_kw(3), "version": 1, "job_id": "t3"}), ctx)
    with pytest.raises(WorkloadError, match="min_games is 999"):
        run_training(
            validate_job("training", {**spec_kw(3), "min_games": 999, "job_id": "t4"}), ctx
        )


def spec_kw(n: int) -> dict[str, object]:
    return {"board_type": "square8", "num_players": n}


def test_elo_and_tally() -> None:
    assert elo_diff(0.5, 100) == 0
    assert math.isclose(elo_diff(0.75, 100), 400 * math.log10(3))
    assert elo_diff(1.0, 10) == pytest.approx(400 * math.log10(0.95 / 0.05))
    assert Tally(3, 2, 1).win_rate == pytest.approx(4 / 6)


def test_missing_model_is_named(tmp_path: Path) -> None:
    spec = validate_job(
        "evaluation",
        {
            "board_type": "hex8",
            "num_players": 2,
            "candidate": "models/x/v9.json",
            "champion": "random",
            "games": 2,
        },
        default_job_id="e",
    )
    with pytest.raises(ValidationError, match=r"models/x/v9\.json"):
        run_evaluation(spec, _ctx(tmp_path))


@pytest.mark.parametrize(
    ("job_type", "kwargs", "message"),
    [
        ("selfplay", {"board_type": "hex8", "num_players": 2}, "selfplay.num_games: missing"),
        ("selfplay", {"board_type": "hex8", "num_players": 2, "num_games": 0}, "num_games: 0"),
        ("selfplay", {"board_type": "hex8", "num_players": 2, "num_games": "4"}, "num_games"),
        (
            "selfplay",
            {"board_type": "hex8", "num_players": 2, "num_games": 1, "engine_mode": "model"},
            "engine_mode 'model' needs a model",
        ),
        ("training", {"board_type": "go", "num_players": 2}, "training.board_type: 'go'"),
        ("training", {"board_type": "hex8", "num_players": 2, "games": "a"}, "games: expected"),
        (
            "evaluation",
            {
                "board_type": "hex8",
                "num_players": 2,
                "candidate": "../x",
                "champion": "random",
                "games": 2,
            },
            "candidate: '../x'",
        ),
        ("sync", {"artifacts": [], "source": "http://h:1"}, "artifacts: expected a non-empty"),
        ("sync", {"artifacts": ["a"], "source": "ftp://h"}, "source: 'ftp://h'"),
        ("sync", {"source": "http://h:1"}, "give either artifacts .a list. or prefix"),
        ("sync", {"artifacts": ["a"], "prefix": "g/", "source": "http://h:1"}, "either artifacts"),
        (
            "sync",
            {"prefix": "games/hex8_2p", "source": "http://h:1"},
            "prefix: 'games/hex8_2p' must end",
        ),
        (
            "sync",
            {"prefix": "../etc/", "source": "http://h:1"},
            "prefix: '../etc' is not a relative",
        ),
        ("sync", {"artifacts": ["a"], "source": ["http://h:1"]}, "a list of sources needs prefix"),
        ("sync", {"prefix": "g/", "source": []}, "source: expected 1 to 64 URLs"),
        ("sync", {"prefix": "g/", "source": ["http://h:1", "h:2"]}, "source.1.: 'h:2' is not"),
        ("noop", {"fence": {"attempt": 1}}, "fence.token: missing"),
        ("noop", {"fence": {"token": "t", "attempt": 0}}, "fence.attempt: 0"),
        ("noop", {"job_id": "a/b"}, "job_id: 'a/b'"),
        ("noop", {"colour": "red"}, "noop.colour: unknown field"),
        ("mine", {}, "job_type: 'mine'"),
    ],
)
def test_validation_names_the_field(job_type: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        validate_job(job_type, kwargs, default_job_id="j")


def test_validation_defaults() -> None:
    spec = validate_job("noop", {}, default_job_id="task-1")
    assert spec.job_id == "task-1" and spec.seed == seed_from("task-1") and spec.fence is None
    spec = validate_job("noop", {"job_id": "j", "fence": {"token": "t", "attempt": 3, "term": 9}})
    assert spec.attempt == 3 and spec.fence is not None and spec.fence.term == 9
    assert fields_of("sync") == ("fence", "job_id", "seed", "artifacts", "prefix", "source")


def test_store_manifest_and_names(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    entry = store.put_bytes("models/a/v0001.json", b"{}")
    assert entry["size"] == 2 and store.has("models/a/v0001.json", entry["sha256"])
    # Another process (a fresh store object) reads the same manifest.
    assert set(ArtifactStore(tmp_path).manifest()) == {"models/a/v0001.json"}
    assert not list((tmp_path / ".tmp").iterdir())
    for bad in ("../x", "/etc/passwd", "a//b", ".tmp/x", "manifest.json", "manifest.db", ""):
        with pytest.raises(ValidationError):
            check_name(bad)


def test_store_lists_by_prefix_and_newest_first(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for i, name in enumerate(["games/hex8_2p/b", "games/hex8_2p/a", "games/hex8_3p/c", "x/y"]):
        store.put_bytes(name, b"g")
        store.register(name, created=100.0 + i)
    assert store.names("games/hex8_2p/") == ["games/hex8_2p/a", "games/hex8_2p/b"]
    assert store.newest("games/hex8_2p/") == ["games/hex8_2p/a", "games/hex8_2p/b"]
    assert store.newest("games/", limit=1) == ["games/hex8_3p/c"]
    assert [a["created"] for a in store.listing("games/hex8_3p/")] == [102.0]
    assert store.names("nothing/") == [] and len(store.names()) == 4


def test_an_older_releases_json_manifest_is_imported_once_and_kept_aside(tmp_path: Path) -> None:
    (tmp_path / "models/a").mkdir(parents=True)
    (tmp_path / "models/a/v0001.json").write_bytes(b"{}")
    legacy = {"models/a/v0001.json": {"size": 2, "sha256": "ab", "created": 5.0}}
    escapes = {"games/x/../../../etc/passwd": {"size": 1, "sha256": "ef"}, "bad": {"size": "?"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {**legacy, **escapes}}))
    store = ArtifactStore(tmp_path)
    assert store.entry("models/a/v0001.json") == {"size": 2, "sha256": "ab", "created": 5.0}
    assert store.names() == ["models/a/v0001.json"], "names outside the store, junk: skipped"
    assert not (tmp_path / "manifest.json").exists()
    assert (tmp_path / "manifest.json.imported").exists()
    # A crash between the import and the rename imports again: rows already there win.
    store.register("models/a/v0001.json", sha256="cd", created=6.0)
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": legacy}))
    assert ArtifactStore(tmp_path).entry("models/a/v0001.json") == {
        "size": 2,
        "sha256": "cd",
        "created": 6.0,
    }


def test_a_broken_manifest_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValidationError, match=r"manifest\.json: not valid JSON"):
        ArtifactStore(tmp_path).manifest()
    assert (tmp_path / "manifest.json").read_text() == "{not json", "the bad file is kept"
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.db").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(ValidationError, match=r"manifest\.db: not a usable manifest"):
        ArtifactStore(other).manifest()


def test_games_retention_keeps_the_newest_files_per_config_only(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, games_keep=3)
    store.put_bytes("models/hex8_2p/v0001.json", b"{}")
    for i in range(5):
        for cfg in ("hex8_2p", "hex8_3p"):
            name = f"games/{cfg}/job-{i}.jsonl.gz"
            store.path(name).parent.mkdir(parents=True, exist_ok=True)
            store.path(name).write_bytes(b"g")
            store.register(name, created=1000.0 + i)
    kept = [f"games/hex8_2p/job-{i}.jsonl.gz" for i in (4, 3, 2)]
    assert store.newest("games/hex8_2p/") == kept
    assert sorted(p.name for p in (tmp_path / "games/hex8_2p").iterdir()) == sorted(
        k.rsplit("/", 1)[1] for k in kept
    ), "the evicted files are gone from disk too"
    assert len(store.names("games/hex8_3p/")) == 3, "each config keeps its own"
    assert store.names("models/") == ["models/hex8_2p/v0001.json"], "models are never evicted"
    assert not store.keeps("games/hex8_2p/old", 1001.0)
    assert store.keeps("games/hex8_2p/new", 1003.5) and store.keeps("games/other/x", 0.0)
    everything = ArtifactStore(tmp_path / "all")
    for i in range(5):
        everything.put_bytes(f"games/hex8_2p/{i}", b"g")
    assert len(everything.names("games/")) == 5, "games_keep=0 keeps every file"


def test_old_job_logs_and_work_dirs_are_swept_at_most_hourly(tmp_path: Path) -> None:
    import os

    store = ArtifactStore(tmp_path)
    now = 1_000_000.0
    day = 86_400.0
    for job, age in (("old", 8 * day), ("new", 1 * day)):
        store.log_path(job).parent.mkdir(parents=True, exist_ok=True)
        store.log_path(job).write_text("log")
        store.work_dir(job).mkdir(parents=True)
        (store.work_dir(job) / "part-1").write_text("x")
        for path in (store.log_path(job), store.work_dir(job)):
            os.utime(path, (now - age, now - age))
    store.put_bytes("games/hex8_2p/kept.jsonl.gz", b"g")
    assert store.sweep(7 * day, now=now) == 2
    assert not store.log_path("old").exists() and not store.work_dir("old").exists()
    assert store.log_path("new").exists() and store.work_dir("new").exists()
    assert store.names() == ["games/hex8_2p/kept.jsonl.gz"], "artifacts are not swept"
    # Within the hour nothing is looked at; after it, the next sweep runs.
    os.utime(store.log_path("new"), (now - 8 * day, now - 8 * day))
    assert store.sweep(7 * day, now=now + 60) == 0 and store.log_path("new").exists()
    assert store.sweep(7 * day, now=now + 3_700) == 1 and not store.log_path("new").exists()
