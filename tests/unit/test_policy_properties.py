"""Hypothesis: plan()'s promises hold for any fleet, not just the ones in the tables."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.models import JobStatus, JobType, NodeHealth, ResourceMetrics
from ringrift_fleet.scheduler.actions import Dispatch, Enqueue, FailJob, Release
from ringrift_fleet.scheduler.policy import plan, unhealthy_reason
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import (
    BoardConfig,
    ConfigState,
    Host,
    Job,
    Outcome,
    Snapshot,
    Stage,
)
from ringrift_fleet.training import TrainingThresholds

CONFIGS = (BoardConfig("hex8", 2), BoardConfig("square19", 4, 2.0), BoardConfig("square8", 3))
POWERS = {"GH200": 1.2, "H100": 1.0, "A100": 0.8, "RTX_4090": 0.5, "A10": 0.4, "CPU": 0.1}


@st.composite
def hosts(draw: st.DrawFn, n: int) -> tuple[Host, ...]:
    out = []
    for i in range(n):
        gpu = draw(st.sampled_from(sorted(POWERS)))
        out.append(
            Host(
                node_id=f"h{i}",
                gpu_type=gpu,
                gpu_power=POWERS[gpu],
                gpu_vram_gb=80.0 if POWERS[gpu] >= 0.8 else 24.0,
                slots=draw(st.integers(1, 4)),
                can_train=POWERS[gpu] >= 0.5,
                metrics=ResourceMetrics(
                    cpu_percent=draw(st.floats(0, 100)),
                    memory_percent=draw(st.floats(0, 100)),
                    gpu_memory_percent=draw(st.floats(0, 100)),
                    disk_percent=draw(st.floats(0, 100)),
                    has_gpu=gpu != "CPU",
                ),
                status=draw(st.sampled_from(["ready", "ready", "ready", "offline", "retired"])),
                health=draw(st.sampled_from(list(NodeHealth))),
            )
        )
    return tuple(out)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n = draw(st.integers(1, 8))
    fleet = draw(hosts(n))
    names = [h.node_id for h in fleet] + ["gone"]
    dead = frozenset(draw(st.sets(st.sampled_from(names))))
    now = 10_000.0
    jobs = []
    for i in range(draw(st.integers(0, 20))):
        c = draw(st.sampled_from(CONFIGS))
        status = draw(st.sampled_from([JobStatus.PENDING, JobStatus.CLAIMED, JobStatus.RUNNING]))
        node = None if status is JobStatus.PENDING else draw(st.sampled_from(names))
        started = draw(st.floats(0, now)) if status is JobStatus.RUNNING else None
        jobs.append(
            Job(
                f"selfplay:{c.key}:{1000 + i}",
                JobType.SELFPLAY,
                c.key,
                status,
                draw(st.integers(0 if status is JobStatus.PENDING else 1, 3)),
                3,
                node,
                0.0,
                started,
                draw(st.sampled_from([600.0, 7200.0])),
            )
        )
    states = {}
    outcomes = {}
    for c in CONFIGS:
        stage = draw(st.sampled_from(list(Stage)))
        target = draw(st.sampled_from(names))
        s = ConfigState(stage=stage, generation=2, target_node=target, candidate="m.npz")
        states[c.key] = s
        sid = s.stage_job_id(c.key)
        if sid is None:
            continue
        where = draw(st.sampled_from(["live", "done", "failed", "missing"]))
        if where == "live":
            jobs.append(
                Job(sid, JobType(stage.value), c.key, JobStatus.RUNNING, 1, 3, target, 0.0, now)
            )
        elif where != "missing":
            outcomes[sid] = Outcome(
                sid, where == "done", {"model": "m2.npz", "win_rate": draw(st.floats(0, 1))}
            )
    policy = SchedulerPolicy(
        configs=CONFIGS,
        thresholds=TrainingThresholds(
            MIN_GAMES=100, MIN_GAMES_WHEN_STALE=10, MIN_HOURS_BETWEEN_RUNS=0
        ),
        prefetch=draw(st.sampled_from([0.0, 0.25, 1.0])),
        reap_grace_s=60.0,
    )
    return Snapshot(
        now=now,
        hosts=fleet,
        dead=dead,
        jobs=tuple(jobs),
        outcomes=outcomes,
        games={c.key: draw(st.integers(0, 1000)) for c in CONFIGS},
        states=states,
        usage={c.key: draw(st.floats(0, 1e5)) for c in CONFIGS},
        policy=policy,
    )


def _healthy(snap: Snapshot) -> dict[str, Host]:
    return {
        h.node_id: h
        for h in snap.hosts
        if h.node_id not in snap.dead and unhealthy_reason(h, snap.policy) is None
    }


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_unhealthy_and_dead_hosts_get_nothing(snap: Snapshot) -> None:
    healthy = _healthy(snap)
    for a in plan(snap):
        if isinstance(a, (Enqueue, Dispatch)):
            assert a.node_id in healthy, a


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_no_healthy_gpu_is_left_idle(snap: Snapshot) -> None:
    """Every healthy host ends the plan with at least as many jobs as it has slots."""
    actions = plan(snap)
    released = {a.job_id for a in actions if isinstance(a, (Release, FailJob))}
    load: Counter[str] = Counter(
        j.node_id
        for j in snap.jobs
        if j.status.is_active and j.node_id and j.job_id not in released
    )
    for a in actions:
        if isinstance(a, (Enqueue, Dispatch)):
            load[a.node_id] += 1
    for node, host in _healthy(snap).items():
        assert load[node] >= host.slots, (node, load[node], host.slots)


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_never_two_trainings_for_one_config(snap: Snapshot) -> None:
    actions = plan(snap)
    stage_types = (JobType.SYNC, JobType.TRAINING, JobType.EVALUATION)
    failed = {a.job_id for a in actions if isinstance(a, FailJob)}
    live: Counter[str] = Counter(
        j.config_key
        for j in snap.jobs
        if j.job_type in stage_types and j.job_id not in failed and j.job_id not in snap.outcomes
    )
    for a in actions:
        if (
            isinstance(a, Enqueue)
            and a.job_type in stage_types
            and not a.job_id.startswith("distribute:")
        ):
            live[a.config_key] += 1
    assert all(n <= 1 for n in live.values()), live
    # and only a stage job of the config's cursor is ever sent
    training = [a for a in actions if isinstance(a, Enqueue) and a.job_type is JobType.TRAINING]
    assert len({a.config_key for a in training}) == len(training)


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_only_lost_jobs_are_released_and_each_once(snap: Snapshot) -> None:
    actions = plan(snap)
    gave_up = Counter(a.job_id for a in actions if isinstance(a, (Release, FailJob)))
    assert all(n == 1 for n in gave_up.values())
    by_id = {j.job_id: j for j in snap.jobs}
    for a in actions:
        if isinstance(a, Release):
            j = by_id[a.job_id]
            assert j.status.is_active and a.attempt == j.attempt
            overdue = (
                j.started_at is not None
                and snap.now - j.started_at > j.hard_limit_s + snap.policy.reap_grace_s
            )
            assert j.node_id in snap.dead or overdue
    for j in snap.jobs:  # everything on a dead host is given up
        if j.status.is_active and j.node_id in snap.dead:
            assert gave_up[j.job_id] == 1


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_new_jobs_never_reuse_a_slot(snap: Snapshot) -> None:
    actions = plan(snap)
    slots = [a.slot for a in actions if isinstance(a, (Enqueue, Dispatch))]
    assert len(slots) == len(set(slots))
    existing = {j.job_id for j in snap.jobs} | set(snap.outcomes)
    for a in actions:
        if isinstance(a, Enqueue) and a.job_type is JobType.SELFPLAY:
            assert a.job_id not in existing
        if isinstance(a, Dispatch):
            assert a.job_id in existing
