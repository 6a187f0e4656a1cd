"""A worker that died on a live host: plan re-places its job once the run lease is gone
(pure), and the broker's failures are logged a bounded number of times."""

from __future__ import annotations

import logging

import pytest

from ringrift_fleet.execution.broker import BrokerHealth, mask_url
from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.actions import (
    HARD_LIMIT,
    HOST_DEAD,
    LEASE_LOST,
    Dispatch,
    FailJob,
    Release,
)
from ringrift_fleet.scheduler.policy import plan
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, ConfigState, Host, Job, Snapshot, Stage
from ringrift_fleet.training import TrainingThresholds

ONE = (BoardConfig("hex8", 2),)
NEVER = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)
POLICY = SchedulerPolicy(
    configs=ONE, thresholds=NEVER, prefetch=0.0, queue_ahead_s=0.0, lease_grace_s=2.0
)
JOB = "selfplay:hex8_2p:7"


def host(node: str, slots: int = 1) -> Host:
    return Host(node_id=node, gpu_type="H100", gpu_power=1.0, slots=slots, can_train=True)


def job(status: JobStatus, attempt: int = 1, node: str = "a", kind: JobType = JobType.SELFPLAY,
        job_id: str = JOB) -> Job:  # fmt: skip
    started = 90.0 if status is JobStatus.RUNNING else None
    return Job(job_id, kind, "hex8_2p", status, attempt, 3, node, 0.0, started, 7200.0)


def snap(*jobs: Job, gone: dict[str, float], now: float = 100.0, **kw: object) -> Snapshot:
    return Snapshot(
        now=now,
        hosts=(host("a"), host("b")),
        jobs=jobs,
        lease_gone=gone,
        policy=POLICY,
        **kw,  # type: ignore[arg-type]
    )


def releases(actions: list) -> list[tuple[str, str, int, str]]:
    return [(a.job_id, a.node_id, a.attempt, a.cause) for a in actions if isinstance(a, Release)]


def test_a_started_attempt_without_its_lease_is_re_placed_after_the_grace() -> None:
    running = job(JobStatus.RUNNING)
    assert releases(plan(snap(running, gone={JOB: 99.0}))) == []  # 1 s: within the grace
    actions = plan(snap(running, gone={JOB: 97.5}))
    assert releases(actions) == [(JOB, "a", 1, LEASE_LOST)]
    reason = next(a for a in actions if isinstance(a, Release)).reason
    assert "run lease" in reason and "on a" in reason
    placed = [(d.job_id, d.attempt) for d in actions if isinstance(d, Dispatch)]
    assert placed == [(JOB, 2)]  # under a new attempt, at once


def test_a_placed_attempt_that_has_not_started_is_never_re_placed_for_its_lease() -> None:
    # sent, still queued: no lease yet, whatever the beat saw
    queued = job(JobStatus.CLAIMED)
    assert releases(plan(snap(queued, gone={JOB: 0.0}))) == []
    assert releases(plan(snap(job(JobStatus.RUNNING), gone={}))) == []


def test_the_other_causes_keep_their_names() -> None:
    dead = snap(job(JobStatus.RUNNING, node="x"), gone={}, dead=frozenset({"x"}))
    assert releases(plan(dead)) == [(JOB, "x", 1, HOST_DEAD)]
    hung = Job(JOB, JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "a", 0.0, 0.0, 10.0)
    assert releases(plan(snap(hung, gone={}))) == [(JOB, "a", 1, HARD_LIMIT)]


def test_out_of_attempts_the_job_fails_instead() -> None:
    actions = plan(snap(job(JobStatus.RUNNING, attempt=3), gone={JOB: 0.0}))
    assert [f.job_id for f in actions if isinstance(f, FailJob)] == [JOB]
    assert not [d for d in actions if isinstance(d, Dispatch) and d.job_id == JOB]


def test_a_stage_job_whose_worker_died_runs_again_on_its_healthy_host() -> None:
    tid = "training:hex8_2p:g1"
    st = ConfigState(stage=Stage.TRAINING, generation=1, target_node="a")
    training = job(JobStatus.RUNNING, kind=JobType.TRAINING, job_id=tid)
    actions = plan(snap(training, gone={tid: 0.0}, states={"hex8_2p": st}))
    assert releases(actions) == [(tid, "a", 1, LEASE_LOST)]
    assert [(d.job_id, d.node_id, d.attempt) for d in actions if isinstance(d, Dispatch)] == [
        (tid, "a", 2)
    ]
    assert not [f for f in actions if isinstance(f, FailJob)]


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_failing_broker_is_logged_once_per_kind_per_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    health = BrokerHealth("redis://:s3cret@10.0.0.5:6379/0", clock=clock, wall=clock)
    caplog.set_level(logging.WARNING, logger="ringrift_fleet.execution.broker")
    for _ in range(600):  # ten minutes of 1 s ticks, two kinds of failure each tick
        health.failed("ping", ConnectionError("Connection refused"))
        health.failed("send", TimeoutError("timed out"))
        clock.t += 1.0
    assert health.status()["up"] is False
    lines = [r.getMessage() for r in caplog.records]
    assert 20 <= len(lines) <= 22, len(lines)  # 2 kinds x 10 minutes (+ the first of each)
    assert all("s3cret" not in line and "***" in line for line in lines)
    assert "failed 60 time(s) in the last 60 s" in lines[-1]
    health.ok()
    assert health.status()["up"] is True
    assert "back after" in caplog.records[-1].getMessage()


def test_a_flapping_broker_is_not_logged_per_tick(caplog: pytest.LogCaptureFixture) -> None:
    # PING answers, every send fails: up and down again each tick
    clock = _Clock()
    health = BrokerHealth("redis://h:6379/0", clock=clock, wall=clock)
    caplog.set_level(logging.WARNING, logger="ringrift_fleet.execution.broker")
    for _ in range(300):  # five minutes of 1 s ticks
        health.ok()
        health.failed("send", ConnectionError("MISCONF"))
        clock.t += 1.0
    assert len(caplog.records) <= 2 * 5 + 2, [r.getMessage() for r in caplog.records]


def test_broker_urls_are_masked() -> None:
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("redis://user:pw@h/1") == "redis://user:***@h/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
