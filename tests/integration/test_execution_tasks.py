"""Tasks through a real redis-server and a real `ringrift-fleet worker` (Celery prefork)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.dispatch import job_outcome, send_job
from ringrift_fleet.execution.fencing import publish_fence
from tests.support.artifact_server import ArtifactServer
from tests.support.celery_worker import (
    cpu_worker_args,
    lease_holder_pid,
    one_worker_fleet,
    running_worker,
)
from tests.support.procs import PYTHON, REPO, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NODE = "exec-a"
CLUSTER_KEY = "tasks-cluster-key"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("exec-tasks")
    with one_worker_fleet(root, NODE, RINGRIFT_CLUSTER_KEY=CLUSTER_KEY) as fleet:
        yield fleet


def _get(fleet: dict[str, Any], task_id: str, timeout: float = 60) -> dict[str, Any]:
    result = fleet["app"].AsyncResult(task_id)
    assert wait_for(lambda: job_outcome(result) is not None, timeout, 0.1), task_id
    outcome = job_outcome(result)
    assert outcome is not None
    return outcome


def test_celery_call_cli_produces_games_on_disk(fleet: dict[str, Any]) -> None:
    env = {**os.environ, **fleet["env"], "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "ringrift_fleet",
            "call",
            "ringrift.selfplay",
            "--kwargs",
            '{"board_type":"hex8","num_players":2,"num_games":4}',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip().splitlines()[-1]
    result = _get(fleet, task_id)
    assert result["status"] == "completed"
    assert result["games"] == 4 and result["config"] == "hex8_2p"
    path = fleet["artifacts"] / result["games_path"]
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(lines) == 4
    game = json.loads(lines[0])
    assert game["board_type"] == "hex8" and len(game["moves"]) == 61
    [art] = result["artifacts"]
    assert art["name"] == result["games_path"] and art["size"] == path.stat().st_size
    entry = ArtifactStore(fleet["artifacts"]).entry(art["name"])
    assert entry is not None and entry["sha256"] == art["sha256"]


def test_bad_arguments_fail_fast_and_the_worker_runs_the_next_job(fleet: dict[str, Any]) -> None:
    app = fleet["app"]
    bad = [
        ({"board_type": "hex9", "num_players": 2, "num_games": 1}, "board_type"),
        ({"board_type": "hex8", "num_players": 7, "num_games": 1}, "num_players"),
        ({"board_type": "hex8", "num_players": 2}, "num_games"),
        ({"board_type": "hex8", "num_players": 2, "num_games": 1, "boardtype": "x"}, "boardtype"),
    ]
    started = time.monotonic()
    for kwargs, field in bad:
        res = app.send_task("ringrift.selfplay", kwargs=kwargs, queue="any")
        outcome = _get(fleet, res.id, 30)
        assert outcome["status"] == "failed"
        assert f"ringrift.selfplay.{field}" in outcome["error"], outcome
        assert "TaskInputError" in outcome["error"]  # one line for `celery result`
    positional = app.send_task("ringrift.training", args=["hex8", 2], queue="any")
    assert "takes keyword arguments only" in _get(fleet, positional.id, 30)["error"]
    assert time.monotonic() - started < 30
    ok = send_job(
        "selfplay",
        {"board_type": "square8", "num_players": 3, "num_games": 2},
        queue="any",
        job_id="after-bad",
        app=app,
    )
    assert _get(fleet, ok)["games"] == 2
    assert fleet["worker"].proc.poll() is None


def test_same_job_twice_executes_once_and_stale_fence_is_refused(fleet: dict[str, Any]) -> None:
    app, r = fleet["app"], fleet["redis"]
    kwargs = {"board_type": "hex8", "num_players": 2, "num_games": 3}
    publish_fence(r, "dup-1", "tok-2", ttl=300)
    first = send_job(
        "selfplay",
        kwargs,
        queue="any",
        job_id="dup-1",
        fence={"token": "tok-2", "attempt": 2},
        app=app,
    )
    one = _get(fleet, first)
    assert one["status"] == "completed" and one["attempt"] == 2
    # The same attempt sent again (a second copy): the stored result, no second run.
    again = app.send_task(
        "ringrift.selfplay",
        kwargs={**kwargs, "job_id": "dup-1", "fence": {"token": "tok-2", "attempt": 2}},
        queue="any",
    )
    two = _get(fleet, again.id)
    assert two["duplicate"] is True and two["artifacts"] == one["artifacts"]
    assert int(r.get("ringrift:deliveries:dup-1:2")) == 1
    # An old attempt whose fence was replaced does no work at all.
    stale = app.send_task(
        "ringrift.selfplay",
        kwargs={**kwargs, "job_id": "dup-1", "fence": {"token": "tok-1", "attempt": 1}},
        queue="any",
    )
    refused = _get(fleet, stale.id)
    assert refused["status"] == "refused" and "stale" in refused["reason"]
    assert r.get("ringrift:deliveries:dup-1:1") is None


def test_sigkill_mid_job_is_redelivered_and_completes_exactly_once(fleet: dict[str, Any]) -> None:
    app, r = fleet["app"], fleet["redis"]
    job = "killed-once"
    task_id = send_job(
        "selfplay",
        {"board_type": "square19", "num_players": 2, "num_games": 400},
        queue="any",
        job_id=job,
        app=app,
    )
    assert wait_for(lambda: lease_holder_pid(r, job) is not None, 30, 0.02)
    pid = lease_holder_pid(r, job)
    assert pid is not None
    assert r.get(f"ringrift:done:{job}") is None  # still running when killed
    os.kill(pid, signal.SIGKILL)
    result = _get(fleet, task_id, 120)
    assert result["status"] == "completed" and result["games"] == 400
    assert int(r.get(f"ringrift:deliveries:{job}:1")) == 2  # killed once, then run once
    files = sorted((fleet["artifacts"] / "games" / "square19_2p").glob(f"{job}*"))
    assert [f.name for f in files] == [f"{job}.jsonl.gz"]
    assert len(gzip.decompress(files[0].read_bytes()).splitlines()) == 400
    assert not list((fleet["artifacts"] / ".tmp").glob(f"*{job}*"))
    assert fleet["worker"].proc.poll() is None


def test_training_then_evaluation_beats_random(fleet: dict[str, Any]) -> None:
    app = fleet["app"]
    sp = send_job(
        "selfplay",
        {"board_type": "square8", "num_players": 2, "num_games": 200},
        queue="any",
        job_id="train-data",
        app=app,
    )
    assert _get(fleet, sp)["games"] == 200
    tr = send_job(
        "training",
        {"board_type": "square8", "num_players": 2},
        queue=f"node.{NODE}",
        job_id="train-1",
        app=app,
    )
    trained = _get(fleet, tr, 120)
    assert trained["status"] == "completed", trained
    assert trained["model"].startswith("models/square8_2p/v") and trained["samples"] >= 200 * 64
    model = json.loads((fleet["artifacts"] / trained["model"]).read_text())
    assert model["version"] == trained["version"]
    ev = send_job(
        "evaluation",
        {
            "board_type": "square8",
            "num_players": 2,
            "candidate": trained["model"],
            "champion": "random",
            "games": 30,
        },
        queue="any",
        job_id="eval-1",
        app=app,
    )
    result = _get(fleet, ev, 120)
    assert result["games"] == 30 and result["candidate"] == trained["model"]
    assert result["win_rate"] > 0.75 and result["elo_diff"] > 150


def test_sync_task_pulls_artifacts_from_another_hosts_server(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    other = ArtifactStore(tmp_path / "other-host")
    champion = other.put_bytes("models/hex8_3p/v0007.json", b'{"weights": []}')
    games = other.put_bytes("games/hex8_3p/remote-job.jsonl.gz", os.urandom(200_000))
    names = [champion["name"], games["name"]]
    with ArtifactServer(other.root, CLUSTER_KEY) as server:
        first = send_job(
            "sync",
            {"artifacts": names, "source": server.url},
            queue=f"node.{NODE}",
            job_id="sync-1",
            app=fleet["app"],
        )
        out = _get(fleet, first)
        assert out["status"] == "completed" and out["fetched"] == names
        assert {a["sha256"] for a in out["artifacts"]} == {champion["sha256"], games["sha256"]}
        again = send_job(
            "sync",
            {"artifacts": names, "source": server.url},
            queue=f"node.{NODE}",
            job_id="sync-2",
            app=fleet["app"],
        )
        assert _get(fleet, again)["skipped"] == names
    local = ArtifactStore(fleet["artifacts"])
    assert local.path(games["name"]).read_bytes() == other.path(games["name"]).read_bytes()
    assert local.entry(champion["name"])["sha256"] == champion["sha256"]  # type: ignore[index]


def test_a_sync_of_many_files_stores_its_lists_cut_with_their_lengths(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    """A games sync's result listed every file (560 kB each, for a day in Redis and in
    every ledger replica): stored, each list keeps 64 names and says how long it was,
    while every file arrives."""
    from ringrift_fleet.jsontypes import RESULT_LIST_MAX

    other = ArtifactStore(tmp_path / "many")
    names = sorted(
        other.put_bytes(f"games/hex6_2p/g{i:03d}.jsonl.gz", os.urandom(64))["name"]
        for i in range(150)
    )
    with ArtifactServer(other.root, CLUSTER_KEY) as server:
        spec = {"prefix": "games/hex6_2p/", "source": server.url}
        first = send_job("sync", spec, queue=f"node.{NODE}", job_id="sync-many", app=fleet["app"])
        out = _get(fleet, first)
        again = send_job("sync", spec, queue=f"node.{NODE}", job_id="sync-many-2", app=fleet["app"])
        twice = _get(fleet, again)
    assert out["status"] == "completed"
    assert out["fetched_count"] == out["artifacts_count"] == 150
    assert len(out["fetched"]) == len(out["artifacts"]) == RESULT_LIST_MAX
    assert set(out["fetched"]) <= set(names)
    assert len(json.dumps(out)) < 20_000, len(json.dumps(out))
    assert twice["skipped_count"] == 150 and len(twice["skipped"]) == RESULT_LIST_MAX
    assert twice["fetched"] == []
    local = ArtifactStore(fleet["artifacts"])
    assert [n for n in names if local.has(n)] == names  # every file, whatever the list says


def test_evaluation_fetches_a_champion_this_host_lacks_from_its_model_sources(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    """Soak defect: the evaluation host did not hold the champion, so the job failed."""
    from ringrift_fleet.execution.workloads.reference_game import FEATURES
    from ringrift_fleet.execution.workloads.training import MODEL_FORMAT

    other = ArtifactStore(tmp_path / "champion-host")
    model = {"format": MODEL_FORMAT, "weights": [0.1] * len(FEATURES)}
    champ = other.put_bytes("models/hex8_2p/v0042.json", json.dumps(model).encode())["name"]
    assert not ArtifactStore(fleet["artifacts"]).has(champ)
    kwargs = {"board_type": "hex8", "num_players": 2, "candidate": "random", "champion": champ}
    with ArtifactServer(other.root, CLUSTER_KEY) as server:
        dead = "http://127.0.0.1:9"  # a source that is down is skipped
        ev = send_job(
            "evaluation",
            {**kwargs, "games": 2, "model_sources": [dead, server.url]},
            queue=f"node.{NODE}",
            job_id="eval-fetch-1",
            app=fleet["app"],
        )
        out = _get(fleet, ev)
    assert out["status"] == "completed" and out["games"] == 2, out
    assert out["models_fetched"] == [champ]
    assert ArtifactStore(fleet["artifacts"]).has(champ)
    missing = send_job(
        "evaluation",
        {**kwargs, "champion": "models/hex8_2p/v0099.json", "games": 2, "model_sources": [dead]},
        queue=f"node.{NODE}",
        job_id="eval-fetch-2",
        app=fleet["app"],
    )
    failed = _get(fleet, missing)
    assert failed["status"] == "failed"
    assert "ringrift.evaluation.champion: model 'models/hex8_2p/v0099.json'" in failed["error"]
    assert "no model source had it" in failed["error"] and dead in failed["error"]


def test_progress_is_visible_while_a_job_runs(fleet: dict[str, Any]) -> None:
    app = fleet["app"]
    # ~5 ms a game here: 1,000 games run for seconds, a progress report every 0.5 s
    # (200 ran for a second: a loaded CI box's polls could miss the one report
    # between the first and the end)
    task_id = send_job(
        "selfplay",
        {"board_type": "square19", "num_players": 4, "num_games": 1000},
        queue="any",
        job_id="progress-1",
        app=app,
    )
    result = app.AsyncResult(task_id)
    seen: list[dict[str, Any]] = []

    def progressing() -> bool:
        if result.state == "PROGRESS" and isinstance(result.info, dict):
            seen.append(result.info)
        return len(seen) >= 2 and seen[-1]["done"] > seen[0]["done"]

    assert wait_for(progressing, 60, 0.1), seen
    assert seen[0]["job_id"] == "progress-1" and seen[0]["total"] == 1000
    assert 0 < seen[0]["done"] < 1000
    assert _get(fleet, task_id)["games"] == 1000


def test_whole_worker_killed_next_attempt_runs_at_once_old_one_refused(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    """A host dies (its whole worker, SIGKILL): the leader re-sends under a new fence."""
    app, r = fleet["app"], fleet["redis"]
    job = "host-died"
    kwargs = {"board_type": "square19", "num_players": 2, "num_games": 150}
    args = cpu_worker_args("victim", "node.victim")
    with running_worker(args, fleet["env"], tmp_path / "victim.log", "victim@cpu") as victim:
        publish_fence(r, job, "attempt-1", ttl=600)
        send_job(
            "selfplay", kwargs, queue="node.victim", job_id=job,
            fence={"token": "attempt-1", "attempt": 1}, app=app,
        )  # fmt: skip
        assert wait_for(lambda: lease_holder_pid(r, job) is not None, 30, 0.02)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
    publish_fence(r, job, "attempt-2", ttl=600)  # what the leader does on the host's death
    started = time.monotonic()
    second = send_job(
        "selfplay", kwargs, queue="any", job_id=job,
        fence={"token": "attempt-2", "attempt": 2}, app=app,
    )  # fmt: skip
    out = _get(fleet, second, 120)
    assert out["status"] == "completed" and out["attempt"] == 2 and out["games"] == 150
    assert time.monotonic() - started < 60  # no wait for Redis's visibility timeout
    # The first attempt's message, should it ever be delivered again, does nothing.
    old = app.send_task(
        "ringrift.selfplay",
        kwargs={**kwargs, "job_id": job, "fence": {"token": "attempt-1", "attempt": 1}},
        queue="any",
    )
    assert _get(fleet, old.id)["status"] == "refused"
    files = list((fleet["artifacts"] / "games" / "square19_2p").glob(f"{job}*"))
    assert [f.name for f in files] == [f"{job}.jsonl.gz"]


def test_newer_attempt_takes_over_a_live_stale_run_which_writes_nothing(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    """Two leaders overlapped: the old attempt still runs when the new one starts."""
    app, r = fleet["app"], fleet["redis"]
    job = "overlap"
    kwargs = {"board_type": "square19", "num_players": 2, "num_games": 300}
    args = cpu_worker_args("stale", "node.stale")
    with running_worker(args, fleet["env"], tmp_path / "stale.log", "stale@cpu"):
        publish_fence(r, job, "old", ttl=600)
        first = send_job(
            "selfplay", kwargs, queue="node.stale", job_id=job,
            fence={"token": "old", "attempt": 1}, app=app,
        )  # fmt: skip
        assert wait_for(lambda: lease_holder_pid(r, job) is not None, 30, 0.02)
        publish_fence(r, job, "new", ttl=600)
        second = send_job(
            "selfplay", kwargs, queue="any", job_id=job,
            fence={"token": "new", "attempt": 2}, app=app,
        )  # fmt: skip
        new = _get(fleet, second, 120)
        old = _get(fleet, first, 120)
    assert new["status"] == "completed" and new["attempt"] == 2 and new["games"] == 300
    assert old["status"] == "refused" and old["attempt"] == 1
    path = fleet["artifacts"] / new["games_path"]
    assert len(gzip.decompress(path.read_bytes()).splitlines()) == 300
    assert hashlib.sha256(path.read_bytes()).hexdigest() == new["artifacts"][0]["sha256"]
