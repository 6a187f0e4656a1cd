"""Short jobs: a host's queue holds enough work to cover the leader's round trip.

A self-play job of a fraction of a second ends long before the leader notices
(on a later tick) and places the next one.  With only a slot and the prefetch
queued, the fleet soak's workers held a job 16 % of the time; each host's queue
now holds ``queue_ahead_s`` of work, sized by the run time its workers report.
"""

from __future__ import annotations

from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.actions import Enqueue
from ringrift_fleet.scheduler.policy import QUEUE_AHEAD_MAX_PER_SLOT, plan, queued_ahead
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host, Job, Snapshot
from ringrift_fleet.training import TrainingThresholds
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat

ONE = (BoardConfig("hex8", 2),)
NEVER = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


def test_long_jobs_queue_the_prefetch_alone() -> None:
    assert queued_ahead(1, 0.25, 5.0, 160.0) == 1
    assert queued_ahead(8, 0.25, 5.0, 160.0) == 2
    assert queued_ahead(1, 0.0, 5.0, 160.0) == 1  # a job of 160 s covers 5 s by itself


def test_short_jobs_queue_enough_work_to_cover_the_queue_ahead() -> None:
    assert queued_ahead(1, 0.0, 5.0, 0.4) == 13
    assert queued_ahead(2, 0.25, 5.0, 0.4) == 25
    # bounded: a dead worker strands what its node queue holds
    assert queued_ahead(1, 0.0, 5.0, 0.001) == QUEUE_AHEAD_MAX_PER_SLOT
    assert queued_ahead(3, 0.0, 5.0, 0.001) == 3 * QUEUE_AHEAD_MAX_PER_SLOT


def test_zero_turns_the_queue_ahead_off() -> None:
    assert queued_ahead(1, 0.25, 0.0, 0.01) == 1
    assert queued_ahead(1, 0.0, 0.0, 0.01) == 0


def snapshot(job_seconds: dict[str, float], jobs: tuple[Job, ...] = ()) -> Snapshot:
    policy = SchedulerPolicy(configs=ONE, thresholds=NEVER, prefetch=0.0, queue_ahead_s=5.0)
    cpu = Host(node_id="a", gpu_power=0.1, slots=1)  # a CPU host: a tenth of an H100
    return Snapshot(now=100.0, hosts=(cpu,), policy=policy, job_seconds=job_seconds, jobs=jobs)


def placed(snap: Snapshot) -> list[Enqueue]:
    return [a for a in plan(snap) if isinstance(a, Enqueue)]


def test_the_leader_fills_a_host_by_the_measured_run_time_of_its_jobs() -> None:
    # 0.04 H100-seconds: 0.4 s on this host, so 5 s of work is 13 jobs behind the slot
    assert len(placed(snapshot({"hex8_2p": 0.04}))) == 1 + 13
    # nothing measured yet: the policy's guess (minutes) needs no queue beyond one job
    assert len(placed(snapshot({}))) == 1 + 1
    # a full queue gets nothing more; one job short gets exactly one
    queued = tuple(
        Job(f"selfplay:hex8_2p:{i}", JobType.SELFPLAY, "hex8_2p", JobStatus.CLAIMED, 1, 3, "a")
        for i in range(1, 15)  # the slot and the 13 behind it
    )
    assert placed(snapshot({"hex8_2p": 0.04}, queued)) == []
    assert len(placed(snapshot({"hex8_2p": 0.04}, queued[1:]))) == 1


def test_the_read_model_takes_the_run_time_the_worker_measured() -> None:
    """A job created 10 s before it ended ran 0.25 s: the queueing is not run time."""
    clock = Clock(1000.0)
    led = MemoryLedger("c")
    led.clock = clock
    beat = idle_beat(led, SchedulerPolicy(configs=ONE, thresholds=NEVER), clock)
    beat.refresh()
    for job, result in (("j1", {"run_seconds": 0.25}), ("j2", {})):
        clock.t += 1.0
        assert led.add_work(job, {"config": "hex8_2p"}, work_type="selfplay", max_attempts=3)
        assignment = led.assign(job, "w1", "selfplay")
        assert assignment is not None
        clock.t += 10.0
        assert led.complete_work(job, {"node": "w1", **result}, assignment.fence_token)
        beat.refresh()
        if job == "j1":  # power 1.0: an unknown host counts as one H100
            assert beat.view.job_seconds["hex8_2p"] == 0.25
    # without run_seconds: from its creation to its end (10 s), folded into the mean
    assert beat.view.job_seconds["hex8_2p"] == 0.9 * 0.25 + 0.1 * 10.0
