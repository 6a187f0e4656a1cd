"""What a broker failover can leave behind, and the leader still ends the job once.

A worker writes the run store's result (``ringrift:done:<job>``,
:func:`fencing.finish_run`) a moment before Celery's ``SUCCESS``, and a failover can
keep the first and lose the second: Celery's ``store_result`` meets the dead
primary and gives up (with ``result_extended`` it first reads the old meta, a read
its backend does not retry: "Exception raised outside body", seen in the netns
failover test), or the ``SUCCESS`` reached the old primary but not a replica
(replication is asynchronous and in order).  The job then has no
final task state (``PENDING``, or ``STARTED`` when that was kept), no run lease
(``complete_run`` dropped it in the same step) and a stored result: the lease
check sees "held", the lost-message check sees "ran", and nothing would ever
report it (the CI failure of the Sentinel failover test: one job, placed before
the kill, never completed).  The leader reads the stored result instead.

Real redis-server (the fencing scripts), the real Beat on the in-memory ledger;
Celery's result backend is a dict, so a test can lose exactly one write.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from ringrift_fleet.execution import fencing
from ringrift_fleet.models import JobStatus
from ringrift_fleet.scheduler.beat import SLOT_PREFIX
from tests.support.beat_fleet import Fleet
from tests.support.beat_fleet import status_of as _status

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fleet(redis_server: Any) -> Fleet:
    return Fleet(redis.Redis.from_url(redis_server.url))


def test_a_result_stored_before_a_failover_lost_its_success_is_accepted_once(fleet: Fleet) -> None:
    """Ledger CLAIMED, task PENDING (neither STARTED nor SUCCESS survived), done kept."""
    f = fleet
    job, attempt, token = f.placed()
    assert f.r.get(f"{SLOT_PREFIX}{job}#{attempt}").endswith(b"|sent")  # type: ignore[union-attr]
    f.run(job, attempt, token)  # the backend never hears of it
    f.ticks(15)  # past the lost-message grace and the lease grace
    assert _status(f, job) is JobStatus.COMPLETED
    w = f.ledger.get(job)
    assert w is not None and w.result is not None and w.result["attempt"] == attempt
    assert f.sent.count((job, 1)) == 1  # never sent again, never re-placed
    assert f.ledger.current(job).attempt == 1  # type: ignore[union-attr]
    assert f.beat.results_from_store == 1


def test_a_started_job_whose_success_was_lost_is_completed_not_stranded(fleet: Fleet) -> None:
    """Ledger RUNNING, task STARTED forever (kept), no run lease, done kept."""
    f = fleet
    job, attempt, token = f.placed()
    f.backend[f"{job}.a{attempt}"] = ("STARTED", None)
    f.ticks(1)
    assert _status(f, job) is JobStatus.RUNNING
    f.run(job, attempt, token)
    f.ticks(10)
    assert _status(f, job) is JobStatus.COMPLETED
    assert f.ledger.current(job).attempt == 1  # type: ignore[union-attr]
    assert f.sent.count((job, 1)) == 1 and f.beat.lease_lost_total == 0


def test_another_attempts_stored_result_is_not_taken_for_this_one(fleet: Fleet) -> None:
    """A done key under another token (an attempt the leader voided) answers nothing."""
    f = fleet
    job, _, token = f.placed()
    stale = {"status": "completed", "fence": {"token": "t0:old", "attempt": 0}, "attempt": 0}
    f.r.set(fencing.done_key(job), json.dumps(stale))
    f.ticks(1)
    assert _status(f, job) is JobStatus.CLAIMED
    assert f.beat.results_from_store == 0
    assert fencing.stored_results(f.r, {job: token}) == {}
    assert fencing.stored_results(f.r, {job: "t0:old"}) == {job: stale}


def test_when_both_the_result_and_the_success_are_lost_the_job_runs_again(fleet: Fleet) -> None:
    """Ledger RUNNING, task STARTED kept, run lease and result lost: re-placed (not
    stranded); the new attempt completes."""
    f = fleet
    job, attempt, _ = f.placed()
    f.backend[f"{job}.a{attempt}"] = ("STARTED", None)
    f.ticks(1)
    assert _status(f, job) is JobStatus.RUNNING
    f.ticks(4)  # no run lease at all: lease lost after the grace
    current = f.ledger.current(job)
    assert current is not None and current.attempt == 2
    assert (job, 2) in f.sent
    f.backend[f"{job}.a2"] = ("SUCCESS", f.run(job, 2, current.fence_token))
    f.ticks(1)
    assert _status(f, job) is JobStatus.COMPLETED


@pytest.mark.parametrize("finishes", ["before the release", "after the release"])
def test_a_job_finishing_as_its_host_is_declared_dead_runs_once(
    fleet: Fleet, finishes: str
) -> None:
    """The soak's "run twice": a host declared dead (falsely, under load) while its job
    finishes.  The leader's tick reads results, then voids the dead host's attempts;
    a result stored between the two used to stand *and* the job was placed again.
    Now voiding and the worker's finish are one ordered step: a result stored first
    is taken (completed, never re-placed); a fence voided first refuses the result."""
    from ringrift_fleet.membership.base import MembershipEvent

    f = fleet
    job, attempt, token = f.placed()
    f.backend[f"{job}.a{attempt}"] = ("STARTED", None)
    f.ticks(1)
    assert _status(f, job) is JobStatus.RUNNING
    lease = f.start(job, attempt, token, ttl=30)

    def finish() -> str:
        return f.finish(job, attempt, token, lease)[0]

    outcome: list[str] = []
    collect = f.beat.collect

    def collect_then_finish() -> int:
        changed = collect()  # the tick has read results: nothing final yet
        if finishes == "before the release":
            outcome.append(finish())  # ...and the worker stores its result now
        return changed

    f.beat.collect = collect_then_finish  # type: ignore[method-assign]
    f.beat.on_membership(MembershipEvent(kind="dead", node="a", incarnation=1, at=f.clock.t))
    f.ticks(1)
    f.beat.collect = collect  # type: ignore[method-assign]
    if finishes == "after the release":
        outcome.append(finish())
    f.ticks(3)
    runs_that_stood = [o for o in outcome if o == "ok"]
    current = f.ledger.current(job)
    assert current is not None
    if finishes == "before the release":
        assert runs_that_stood == ["ok"]
        assert _status(f, job) is JobStatus.COMPLETED
        assert current.attempt == 1 and (job, 2) not in f.sent, "placed again: run twice"
        assert f.beat.finished_before_release == 1
    else:
        assert runs_that_stood == [], "a voided attempt's result was stored"
        # voided and back in the queue (the only host is dead: placed when one lives)
        assert current.attempt == 1 and current.status is JobStatus.FAILED
        assert _status(f, job) is JobStatus.PENDING
        assert f.beat.finished_before_release == 0
