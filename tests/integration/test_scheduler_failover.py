"""Three coordinators with the scheduler (Raft), three Celery workers: SIGKILL the leader.

The new leader must carry on from the ledger: job ids stay contiguous (nothing
skipped), no attempt is started twice (nothing repeated), and every completed
job was accepted from exactly one attempt.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.support.celery_worker import cpu_worker_args, fleet_env, start_workers
from tests.support.coordinators import LocalFleet
from tests.support.procs import stop, wait_for
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = start_redis(tmp_path / "redis")
    env = fleet_env(
        server.url,
        tmp_path,
        RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS="hex8_2p",
        RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB="1500",
        RINGRIFT_P2P_SCHEDULER_PREFETCH="1",
    )
    # `ringrift-fleet coordinator --hosts-file …`, scheduler placing work: what systemd runs
    f = LocalFleet(tmp_path / "coord", voters=3, mode="raft", extra_env=env, scheduler=True)
    doc = yaml.safe_load(f.hosts_file.read_text())
    for spec in doc["hosts"].values():
        spec.update({"cpus": 4, "status": "ready"})
    f.hosts_file.write_text(yaml.safe_dump(doc))
    workers = []
    try:
        f.start_all(timeout=60)
        workers = start_workers(
            [(cpu_worker_args(n), f"{n}@cpu", tmp_path / f"w-{n}.log") for n in f.nodes],
            env,
        )
        yield {"fleet": f, "redis": redis.Redis.from_url(server.url), "workers": workers}
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        f.stop_all()
        server.stop()


def _work(f: LocalFleet, name: str) -> dict[str, dict[str, Any]]:
    try:
        return dict(f.ledger(name)["work"])
    except Exception:
        return {}


def _done(work: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k, w in work.items() if w["status"] == "completed"}


@pytest.mark.timeout(300)
def test_a_new_leader_neither_repeats_nor_skips(fleet: dict[str, Any]) -> None:
    f: LocalFleet = fleet["fleet"]
    r: redis.Redis = fleet["redis"]
    leader = f.wait_leader(30)
    assert leader, f.log("n0")
    assert wait_for(lambda: len(_done(_work(f, leader))) >= 3, 90, 0.5), f.log(leader)
    f.kill(leader, signal.SIGKILL)  # mid-plan: it ticks every 0.2 s
    survivor = next(n for n in f.nodes if n != leader)
    new = f.wait_leader(15, exclude=leader)
    assert new and new != leader
    before = len(_done(_work(f, new)))
    assert wait_for(lambda: len(_done(_work(f, new))) >= before + 4, 120, 0.5), f.log(new)

    work = _work(f, survivor)
    ids = sorted(int(re.sub(r".*:", "", k)) for k in work if k.startswith("selfplay:"))
    assert ids == list(range(1, len(ids) + 1)), "a job id was skipped"
    state = f.ledger(survivor)
    for job_id, item in work.items():
        attempts = item["attempts"]
        for attempt in range(1, attempts + 1):
            starts = int(r.get(f"ringrift:deliveries:{job_id}:{attempt}") or 0)
            assert starts <= 1, f"{job_id} attempt {attempt} started {starts} times"
        if item["status"] == "completed":
            # accepted from exactly the attempt the ledger holds
            assert state["assign"][job_id]["status"] == "completed"
            assert item["result"]["attempt"] == state["assign"][job_id]["attempt"]

    # nothing left behind: once membership declares the dead leader's host dead
    # (PEER_TIMEOUT 2 s), its jobs move to alive hosts
    def moved() -> bool:
        live = [w for w in _work(f, survivor).values() if w["status"] in ("claimed", "running")]
        return bool(live) and all(w["claimed_by"] in set(f.running()) for w in live)

    assert wait_for(moved, 20, 0.5), _work(f, survivor)
