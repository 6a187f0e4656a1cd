"""The broker survives the loss of its primary (issue 13): Redis replication + Sentinel.

Real processes on 127.0.0.1: three redis-server (a primary, two replicas, AOF on,
passwords on), three Sentinels (``redis-server --sentinel``, down-after 1 s), a
``ringrift-fleet coordinator`` with the scheduler placing real self-play jobs, and a
real CPU Celery worker — every one of them given only the Sentinel set.  The test
``kill -9``s the primary while jobs run and asserts: Sentinel promotes a replica;
every job placed before the kill completes, and jobs placed after it too; no job
is accepted twice or executed twice; the coordinator and the worker were never
restarted (same PIDs); /status shows the new primary and the failover.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringrift_fleet.commands.status import render
from tests.support.celery_worker import cpu_worker_args, start_workers
from tests.support.coordinators import LocalFleet
from tests.support.procs import stop, wait_for
from tests.support.sentinel import SentinelSet, executions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def fleet_env(root: Path, sentinels: SentinelSet) -> dict[str, str]:
    return {
        **sentinels.env(),
        "RINGRIFT_P2P_STATE_DIR": str(root / "state"),
        "RINGRIFT_P2P_ARTIFACT_DIR": str(root / "artifacts"),
        "RINGRIFT_P2P_RUN_LEASE_TTL": "3",
        "RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS": "hex8_2p",
        "RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB": "4",
        "RINGRIFT_P2P_SCHEDULER_PREFETCH": "1",
    }


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sentinels = SentinelSet(tmp_path / "broker").start()
    env = fleet_env(tmp_path, sentinels)
    f = LocalFleet(tmp_path / "coord", voters=1, scheduler=True, extra_env=env)
    doc = yaml.safe_load(f.hosts_file.read_text())
    for spec in doc["hosts"].values():
        spec.update({"cpus": 2, "status": "ready"})
    f.hosts_file.write_text(yaml.safe_dump(doc))
    workers = []
    try:
        f.start_all(timeout=60)
        workers = start_workers([(cpu_worker_args("n0"), "n0@cpu", tmp_path / "w-n0.log")], env)
        yield {"fleet": f, "sentinels": sentinels, "workers": workers}
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        f.stop_all()
        sentinels.stop()


def _work(f: LocalFleet) -> dict[str, dict[str, Any]]:
    try:
        return dict(f.ledger("n0")["work"])
    except Exception:
        return {}


def _done(work: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k, w in work.items() if w["status"] == "completed"}


def test_killing_the_redis_primary_loses_no_job_and_runs_none_twice(
    fleet: dict[str, Any],
) -> None:
    f: LocalFleet = fleet["fleet"]
    s: SentinelSet = fleet["sentinels"]
    worker = fleet["workers"][0]
    assert f.wait_leader(30), f.log("n0")
    assert wait_for(lambda: len(_done(_work(f))) >= 2, 120, 0.5), f.log("n0")
    pids = {"coordinator": f.nodes["n0"].proc.pid, "worker": worker.proc.pid}  # type: ignore[union-attr]

    # jobs running and queued at the kill
    before = _work(f)
    placed_before = set(before) - _done(before)
    old = s.kill_primary()
    killed_at = time.monotonic()

    assert wait_for(lambda: s.primary_port() not in (None, old), 30, 0.1), "no promotion"
    promoted = s.primary_port()
    failover_s = time.monotonic() - killed_at

    # every job placed before the kill completes, and the fleet goes on placing and
    # completing new ones through the new primary
    def resumed() -> bool:
        work = _work(f)
        done = _done(work)
        return placed_before <= done and len(done - set(before)) >= 2

    assert wait_for(resumed, 150, 0.5), (
        f"not resumed: {sorted(placed_before - _done(_work(f)))} still open\n"
        + f.log("n0")
        + worker.log_text()[-3000:]
    )
    first_after = time.monotonic() - killed_at

    # nobody restarted: same processes, still running
    assert f.nodes["n0"].proc is not None and f.nodes["n0"].proc.pid == pids["coordinator"]
    assert f.nodes["n0"].proc.poll() is None
    assert worker.proc.pid == pids["worker"] and worker.proc.poll() is None

    work = _work(f)
    state = f.ledger("n0")
    runs = executions(worker.log_text())
    for job_id in _done(work):
        # accepted once, from the attempt the ledger holds
        assert state["assign"][job_id]["status"] == "completed"
        assert work[job_id]["result"]["attempt"] == state["assign"][job_id]["attempt"]
    assert _done(work) <= set(runs), "a completed job the worker never ran?"
    twice = {j: n for j, n in runs.items() if n > 1}
    assert not twice, f"jobs executed more than once: {twice}"
    lost = placed_before - _done(work)
    assert not lost

    # /status: the Sentinels' view names the new primary and the failover
    def status_shows_failover() -> bool:
        topo = (f.status("n0") or {}).get("broker", {}).get("topology", {})
        return topo.get("primary") == f"127.0.0.1:{promoted}" and bool(topo.get("failovers"))

    assert wait_for(status_shows_failover, 15, 0.5), (
        f"promoted {promoted}, /status broker: "
        + json.dumps((f.status("n0") or {}).get("broker"), indent=1, default=str)
        + "\n"
        + f.log("n0")
    )
    text = render(f.status("n0") or {})  # what `ringrift-fleet status` prints
    assert f"broker primary   127.0.0.1:{promoted}" in text, text
    assert f"last failover    127.0.0.1:{old} -> 127.0.0.1:{promoted}" in text, text
    assert "broker failover" in (f.workdir / "n0.log").read_text()
    print(
        f"failover_s={failover_s:.2f} first_jobs_after_s={first_after:.2f} "
        f"placed_before={len(placed_before)} done={len(_done(work))}"
    )
