"""Two budgets for a job's attempts: its own failures, and attempts lost with the
whole worker or host.

The 60-minute soak gave up two games syncs: a worker kill (kill -9 of the whole
worker, as the soak does every 5 minutes and a reboot or a preempted host does)
hit each of them in all three attempts, and MAX_REDELIVERIES counted those deaths
as the job's failures.  A job that kills its own worker *process* is bounded on
the worker already (a redelivered attempt fails past MAX_REDELIVERIES starts); a
death of the whole worker or host is rarely the job's doing.  Now such losses
count against MAX_LOST_ATTEMPTS, the job's own failures against MAX_REDELIVERIES,
and the count of losses lives in the ledger, so a new leader goes on counting.

The real Beat on the in-memory ledger and a real redis-server (tests/support/beat_fleet.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from ringrift_fleet.models import JobStatus
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.readmodel import LOST_KEY, LOST_KIND
from tests.support.beat_fleet import Fleet, status_of

pytestmark = pytest.mark.timeout(60)


def lose_worker(f: Fleet, job: str) -> int:
    """The live attempt starts (its task STARTED) and its whole worker dies: no run
    lease, no result.  Returns the attempt the leader places next."""
    current = f.ledger.current(job)
    assert current is not None
    f.backend[f"{job}.a{current.attempt}"] = ("STARTED", None)
    f.ticks(1)
    assert status_of(f, job) is JobStatus.RUNNING
    f.ticks(4)  # past the lease grace
    after = f.ledger.current(job)
    assert after is not None
    return after.attempt


def fail(f: Fleet, job: str) -> None:
    """The live attempt fails of its own (its task raised)."""
    current = f.ledger.current(job)
    assert current is not None
    f.backend[f"{job}.a{current.attempt}"] = ("FAILURE", ValueError("bad board"))
    f.ticks(2)


def given_up(f: Fleet, job: str) -> str:
    """The leader's one "given up" event for ``job``, once the ledger ended it."""
    assert status_of(f, job) is JobStatus.CANCELLED
    (why,) = [t for _, t in f.beat.events if job in t and "given up" in t]
    return why


def lost_record(f: Fleet) -> dict[str, Any]:
    return dict(f.ledger.records(LOST_KIND).get(LOST_KEY) or {})


def complete(f: Fleet, job: str) -> None:
    current = f.ledger.current(job)
    assert current is not None
    f.backend[f"{job}.a{current.attempt}"] = (
        "SUCCESS",
        f.run(job, current.attempt, current.fence_token),
    )
    f.ticks(1)
    assert status_of(f, job) is JobStatus.COMPLETED


@pytest.fixture
def r(redis_server: Any) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_a_job_whose_worker_dies_five_times_runs_a_sixth_and_completes(r: redis.Redis) -> None:
    f = Fleet(r, max_attempts=3, max_lost=5)
    job, attempt, _ = f.placed()
    for n in range(1, 6):
        assert lose_worker(f, job) == attempt + n, f"re-placed after loss {n}, not given up"
        assert lost_record(f) == {job: n}
    complete(f, job)
    assert f.beat.lease_lost_total == 5
    assert not [t for _, t in f.beat.events if "given up" in t]


def test_one_loss_past_the_budget_gives_the_job_up_naming_it(r: redis.Redis) -> None:
    f = Fleet(r, max_attempts=3, max_lost=2)
    job, _, _ = f.placed()
    lose_worker(f, job)
    lose_worker(f, job)
    lose_worker(f, job)
    why = given_up(f, job)
    assert "3 attempts lost to worker or host deaths (MAX_LOST_ATTEMPTS=2)" in why


def test_its_own_failures_still_stop_it_at_max_redeliveries(r: redis.Redis) -> None:
    """The ledger allows both budgets together (8 attempts); the third failure of its
    own is still the last."""
    f = Fleet(r, max_attempts=3, max_lost=5)
    job, _, _ = f.placed()
    w = f.ledger.get(job)
    assert w is not None and w.max_attempts == 8
    fail(f, job)
    fail(f, job)
    assert status_of(f, job) is not JobStatus.CANCELLED
    fail(f, job)
    f.ticks(1)
    why = given_up(f, job)
    assert "failed 3 time(s) (MAX_REDELIVERIES=3)" in why
    assert f.sent.count((job, 4)) == 0, "no fourth attempt"
    counts = f.beat.counts()
    assert counts.replacements[("selfplay", "job_failed")] == 2, "the third was not re-placed"


def test_losses_do_not_spend_the_failure_budget_nor_failures_the_loss_budget(
    r: redis.Redis,
) -> None:
    f = Fleet(r, max_attempts=2, max_lost=2)
    job, _, _ = f.placed()
    lose_worker(f, job)
    fail(f, job)
    lose_worker(f, job)
    assert status_of(f, job) is not JobStatus.CANCELLED  # 1 failure of 2, 2 losses of 2
    complete(f, job)
    assert f.ledger.current(job).attempt == 4  # type: ignore[union-attr]


def test_a_new_leader_goes_on_counting_the_losses(r: redis.Redis) -> None:
    f = Fleet(r, max_attempts=3, max_lost=2)
    job, _, _ = f.placed()
    lose_worker(f, job)
    lose_worker(f, job)
    # another coordinator takes over: a fresh Beat over the same (replicated) ledger
    old = f.beat
    f.beat = Beat(
        ledger=f.ledger,
        leadership=f.ledger,
        redis=r,
        policy=old.policy,
        hosts=lambda: old.hosts(),
        send=f.send,
        read_result=lambda task_id: f.backend.get(task_id, ("PENDING", None)),
        clock=f.clock,
    )
    f.beat.lost_messages = old.lost_messages
    lose_worker(f, job)
    assert status_of(f, job) is JobStatus.CANCELLED, "the third loss was the new leader's"


def test_the_record_holds_live_jobs_only(r: redis.Redis) -> None:
    """Rewritten on every loss with the live jobs' counts: a finished job's count
    leaves it, so it never grows past the ledger's live jobs."""
    f = Fleet(r, max_attempts=3, max_lost=5)
    job, _, _ = f.placed()
    lose_worker(f, job)
    complete(f, job)
    f.ticks(1)
    (second,) = [w.work_id for w in f.ledger.items() if w.status.is_active]
    lose_worker(f, second)
    assert lost_record(f) == {second: 1}


def test_a_job_an_older_leader_added_keeps_its_three_attempts(r: redis.Redis) -> None:
    """Its ledger bound is 3 (an older release added it): a loss at its third attempt
    gives it up, as the ledger would refuse a fourth anyway."""
    f = Fleet(r, max_attempts=3, max_lost=5)
    f.placed()
    (job,) = [w.work_id for w in f.ledger.items()]
    f.ledger.state["work"][job]["max_attempts"] = 3  # as an older leader wrote it
    f.beat._next_full_read = 0.0  # and this leader read it so
    lose_worker(f, job)
    lose_worker(f, job)
    lose_worker(f, job)
    why = given_up(f, job)
    assert "all the ledger allows" in why


def test_an_attempt_voided_because_its_sender_died_is_a_loss_not_a_failure(
    r: redis.Redis,
) -> None:
    """Another leader took the attempt's send slot and died before sending: the
    attempt is voided and placed again, and that counts against the loss budget."""
    from ringrift_fleet.execution import fencing
    from ringrift_fleet.scheduler.slots import slot_value

    f = Fleet(r, max_attempts=1, max_lost=5)  # one failure of its own would end it
    job, attempt, _ = f.placed()
    f.r.set(fencing.slot_key(job, attempt), slot_value("9:gone-leader", False))
    f.ticks(1)
    current = f.ledger.current(job)
    assert current is not None and current.attempt == attempt + 1, "placed again"
    assert lost_record(f) == {job: 1}
    assert status_of(f, job) is not JobStatus.CANCELLED
    complete(f, job)
