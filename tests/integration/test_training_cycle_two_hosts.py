"""A whole training cycle across two worker hosts with separate disks.

Each worker has its own artifact directory, served by its own artifact
server, as each host's :8770 would serve it. Self-play lands on both. Before
training, the games sync must bring the other host's games to the training
host: the model trains on every game, not only the local ones. The ledger is
the real state machine in this process (tests/support/memory_ledger.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ringrift_fleet.execution.app import create_app
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.workloads.training import load_model
from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
from ringrift_fleet.training import TrainingThresholds
from tests.integration.test_scheduler_fencing import beat, completed, run_ticks
from tests.support.artifact_server import ArtifactServer
from tests.support.celery_worker import config_for, fleet_env, start_cpu_worker
from tests.support.memory_ledger import MemoryLedger
from tests.support.procs import stop
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.integration

KEY = "two-hosts-cluster-key-0123456789"


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = start_redis(tmp_path / "redis")
    workers, servers = [], []
    try:
        envs = {
            n: fleet_env(server.url, tmp_path / n, RINGRIFT_CLUSTER_KEY=KEY) for n in ("w1", "w2")
        }
        for name, env in envs.items():
            workers.append(start_cpu_worker(name, env, tmp_path))
            store = ArtifactStore(config_for(env).artifact_dir)
            servers.append(ArtifactServer(store.root, KEY).__enter__())
        yield {
            "app": create_app(config_for(envs["w1"])),
            "redis": redis.Redis.from_url(server.url),
            "stores": {n: ArtifactStore(config_for(e).artifact_dir) for n, e in envs.items()},
            "urls": {n: s.url for n, s in zip(envs, servers, strict=True)},
        }
    finally:
        for s in servers:
            s.__exit__(None, None, None)
        for w in workers:
            stop(w.proc, timeout=15)
        server.stop()


@pytest.mark.timeout(240)
def test_training_uses_games_from_both_hosts(two_hosts: dict[str, Any]) -> None:
    ledger = MemoryLedger("leader")
    pol = SchedulerPolicy(
        configs=(BoardConfig.parse("hex8_2p"),),
        thresholds=TrainingThresholds(
            MIN_GAMES=24, MIN_GAMES_WHEN_STALE=24, MIN_HOURS_BETWEEN_RUNS=0.0
        ),
        allow_cpu_training=True,
        games_per_job=2,
        eval_games=8,
        load_max=1.0,
        disk_critical=100.0,
        prefetch=0.0,
        queue_ahead_s=0.0,
    )
    hosts = [Host("w1", slots=1, can_train=True), Host("w2", slots=1, can_train=True)]
    b = beat(ledger, two_hosts, hosts, pol)
    b.address = two_hosts["urls"].get

    def trained() -> bool:
        return any(w.work_type is JobType.TRAINING for w in completed(ledger).values())

    started = time.monotonic()
    run_ticks([b], 180, until=trained)
    assert trained(), f"no training within {time.monotonic() - started:.0f}s: {b.status()}"

    done = list(completed(ledger).values())
    training = next(w for w in done if w.work_type is JobType.TRAINING)
    target = str(training.claimed_by)
    made_elsewhere = {
        str((w.result or {}).get("games_path"))
        for w in done
        if w.work_type is JobType.SELFPLAY and w.claimed_by != target
    }
    syncs = [w for w in done if w.work_type is JobType.SYNC and w.claimed_by == target]
    assert syncs, f"no games sync ran on the training host {target}"
    fetched = set((syncs[0].result or {}).get("fetched", []))
    # the sync brought games made on the other host (never the target's own)
    assert fetched and fetched <= made_elsewhere, (fetched, made_elsewhere)
    store: ArtifactStore = two_hosts["stores"][target]
    assert all(store.has(name) for name in fetched)
    # and the model was trained on them as well as on the local games
    model = load_model(store, str((training.result or {})["model"]))
    assert fetched <= set(model["trained_on"]["files"]), model["trained_on"]
    assert not any(w.status is JobStatus.FAILED for w in ledger.items())
