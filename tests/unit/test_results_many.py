"""The leader reads every live attempt's task state each tick: in one MGET, not one
GET per attempt (a host's queue may hold a dozen short jobs; 30 hosts made ~500
reads a tick on the leader of the fleet soak).

The batch reader must say exactly what Celery's own ``AsyncResult`` says for each
state a worker stores; checked against a real redis-server through the fleet's
Celery app.  The beat must then read each tick's states in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.execution.app import create_app
from ringrift_fleet.execution.dispatch import task_id_for
from ringrift_fleet.models import JobStatus
from ringrift_fleet.scheduler.service import celery_results_many
from tests.support.memory_ledger import Clock, MemoryLedger, finish, selfplay_beat

pytestmark = pytest.mark.timeout(60)


def test_one_mget_says_what_celery_says_for_every_state(redis_server: Any) -> None:
    from celery.result import AsyncResult

    app = create_app(P2PConfig(BROKER_URL=redis_server.url))
    backend = app.backend
    backend.store_result("done", {"status": "completed", "games": 8}, "SUCCESS")
    backend.store_result("broke", ValueError("bad board 'hex9'"), "FAILURE")
    backend.store_result("running", {"done": 3, "total": 8}, "PROGRESS")
    backend.store_result("started", None, "STARTED")
    backend.store_result("stopped", None, "REVOKED")
    ids = ["done", "broke", "running", "started", "stopped", "never-heard-of"]

    many = celery_results_many(app)
    assert many is not None
    got = many(ids)

    def one(task_id: str) -> tuple[str, object]:
        r = AsyncResult(task_id, app=app)
        state = r.state
        return state, (r.result if state in ("SUCCESS", "FAILURE", "REVOKED") else None)

    for task_id in ids:
        want, have = one(task_id), got[task_id]
        if isinstance(want[1], BaseException):  # exceptions compare by type and text
            assert (have[0], type(have[1]), str(have[1])) == (
                want[0],
                type(want[1]),
                str(want[1]),
            )
        else:
            assert have == want, task_id
    assert got["never-heard-of"] == ("PENDING", None)

    # a key someone else wrote is left out (the per-attempt read then deals with it)
    # and costs the others nothing
    redis.Redis.from_url(redis_server.url).set(backend.get_key_for_task("junk"), b"{not json")
    mixed = many(["junk", "done"])
    assert "junk" not in mixed and mixed["done"][0] == "SUCCESS"
    assert got["done"] == ("SUCCESS", {"status": "completed", "games": 8})


def test_a_tick_reads_all_live_attempts_in_one_call(redis_server: Any) -> None:
    r = redis.Redis.from_url(redis_server.url)
    clock = Clock(1000.0)
    ledger = MemoryLedger("leader")
    backend: dict[str, tuple[str, Any]] = {}
    calls: list[int] = []

    def read_one(task_id: str) -> tuple[str, Any]:
        raise AssertionError(f"read {task_id} on its own")

    def read_many(task_ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
        calls.append(len(task_ids))
        return {t: backend.get(t, ("PENDING", None)) for t in task_ids}

    slots = {"a": 2, "b": 2, "c": 2}
    beat = selfplay_beat(
        ledger, r, clock, slots=slots, backend=backend, read_result=read_one, read_results=read_many
    )
    beat.tick()  # places two jobs on each host
    clock.t += 1.0
    beat.tick()
    assert calls[-1] == 6, calls  # the six live attempts, in one call
    live = [w for w in ledger.items() if w.status.is_active]
    done = live[0]
    finish(ledger, backend, done.work_id)
    before = len(calls)
    clock.t += 1.0
    beat.tick()
    assert len(calls) == before + 1
    finished = ledger.get(done.work_id)
    assert finished is not None and finished.status is JobStatus.COMPLETED


def test_an_unreadable_task_state_holds_up_only_its_own_attempt(redis_server: Any) -> None:
    """A result key that is not Celery's (hand-written junk) used to fail every tick:
    no job on the fleet was recorded while it stayed.  Now only its attempt waits."""
    r = redis.Redis.from_url(redis_server.url)
    clock = Clock(1000.0)
    ledger = MemoryLedger("leader")
    backend: dict[str, tuple[str, Any]] = {}
    junk: set[str] = set()

    def read_one(task_id: str) -> tuple[str, Any]:
        if task_id in junk:
            raise ValueError("Expecting property name enclosed in double quotes")
        return backend.get(task_id, ("PENDING", None))

    beat = selfplay_beat(ledger, r, clock, slots={"a": 2}, backend=backend, read_result=read_one)
    beat.tick()
    first, second = [w for w in ledger.items() if w.status.is_active]
    current = ledger.current(first.work_id)
    assert current is not None
    junk.add(task_id_for(first.work_id, current.attempt))
    finish(ledger, backend, second.work_id)
    for _ in range(3):
        clock.t += 1.0
        beat.tick()
    done = ledger.get(second.work_id)
    held = ledger.get(first.work_id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert held is not None and held.status.is_active
