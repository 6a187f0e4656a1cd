"""A discrete-event fleet that runs the real ``plan`` for a simulated day.

What is modelled, because it is what the scheduler must survive:

* hosts with 1-8 GPUs of mixed power, each with its own node queue (a Redis
  list: it outlives the host) and one slot per GPU;
* job lengths that depend on board size, GPU power and random noise;
* host failures: crashes (running work dies) and partitions (running work goes
  on and reports after the host is back — a zombie), detected by membership
  after a short delay; hung jobs that never report and must be reaped;
* the ledger's fence: a result is accepted only from the job's live attempt,
  a worker refuses to start an attempt that is no longer live.  Zombie results
  are counted twice: as refused, and as the duplicates they would have been.

The beat is modelled as planning every ``tick_s`` and at once on a death.  The
time a re-enqueue takes is the measured wall time of ``plan`` plus one ledger
write per action before it (``ledger_write_s``).
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ringrift_fleet.models import JobStatus, JobType, ResourceMetrics
from ringrift_fleet.scheduler.actions import (
    Action,
    Dispatch,
    Enqueue,
    FailJob,
    Notify,
    Release,
    SetState,
)
from ringrift_fleet.scheduler.fairshare import UsageWindow, share_ratios, window_totals
from ringrift_fleet.scheduler.policy import plan, unhealthy_reason
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import ConfigState, Host, Job, Outcome, Snapshot, Stage

# (gpu, power, vram_gb, share of hosts): a rented fleet's mix
GPU_MIX = (
    ("GH200", 1.2, 96.0, 0.15),
    ("H100", 1.0, 80.0, 0.25),
    ("A100", 0.8, 80.0, 0.15),
    ("RTX_5090", 0.7, 32.0, 0.1),
    ("RTX_4090", 0.5, 24.0, 0.2),
    ("A10", 0.4, 24.0, 0.1),
    ("CPU", 0.1, 0.0, 0.05),
)


@dataclass
class SimParams:
    hosts: int = 50
    duration_s: float = 24 * 3600.0
    warmup_s: float = 1800.0  # excluded from the busy fraction
    tick_s: float = 5.0
    seed: int = 1
    host_mtbf_s: float = 3 * 24 * 3600.0  # mean time between failures of one host
    down_s: tuple[float, float] = (600.0, 3600.0)
    partition_fraction: float = 0.3  # failures that leave running work going (zombies)
    detect_s: tuple[float, float] = (1.0, 4.0)  # membership's time to declare a death
    hang_probability: float = 0.003  # attempts that never report
    job_noise: float = 0.35  # lognormal sigma of job lengths
    seconds_per_game: float = 30.0  # cheapest game on an H100
    training_s: tuple[float, float] = (1800.0, 3600.0)
    eval_s: tuple[float, float] = (300.0, 900.0)
    sync_s: tuple[float, float] = (20.0, 120.0)
    ledger_write_s: float = 0.0005  # one synchronous Raft write on the leader
    unhealthy_fraction: float = 0.04  # hosts whose disk fills for a while
    share_window_s: float = 3600.0
    share_step_s: float = 900.0


@dataclass
class SimHost:
    node_id: str
    gpu: str
    power: float
    vram: float
    slots: int
    up: bool = True
    connected: bool = True  # False while partitioned
    declared_dead: bool = False
    epoch: int = 0  # bumped on crash: events of an older epoch are void
    queue: deque[tuple[str, int]] = field(default_factory=deque)  # its node queue in Redis
    running: dict[tuple[str, int], float] = field(default_factory=dict)  # attempt -> start
    disk: float = 30.0


@dataclass
class SimJob:
    job_id: str
    job_type: JobType
    config_key: str
    kwargs: dict[str, Any]
    max_attempts: int
    hard_limit_s: float
    status: JobStatus = JobStatus.CLAIMED
    attempt: int = 1
    node: str | None = None
    enqueued_at: float = 0.0
    started_at: float | None = None
    accepted: int = 0  # results accepted for this job (more than 1 = a duplicate)


@dataclass
class SimResult:
    gpu_busy_fraction: float
    min_config_share_ratio: float
    lost_jobs: int
    duplicate_executions: int
    requeue_p50_s: float
    requeue_p99_s: float
    detect_p50_s: float
    requeues: int
    zombie_results_refused: int
    duplicates_without_fencing: int
    stale_attempts_refused: int
    reaped_jobs: int
    failed_jobs: int
    host_failures: int
    selfplay_jobs_done: int
    trainings_done: int
    promotions: int
    unhealthy_placements: int
    max_concurrent_trainings_per_config: int
    plans: int
    plan_ms_p50: float

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


class FleetSim:
    def __init__(self, params: SimParams, policy: SchedulerPolicy | None = None) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.policy = policy or SchedulerPolicy()
        self.now = 0.0
        self.events: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self.hosts: dict[str, SimHost] = {}
        self.jobs: dict[str, SimJob] = {}
        self.live: set[str] = set()  # ids of non-terminal jobs
        self.states: dict[str, ConfigState] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.games: Counter[str] = Counter()
        self.usage = UsageWindow(self.policy.fairshare_window_s)
        self.job_seconds: dict[str, float] = {}
        self.intervals: list[tuple[str, float, float, float]] = []
        self.dead_at: dict[str, float] = {}  # host -> when membership declared it dead
        self.lost_at: dict[str, float] = {}  # released job -> its host's death time
        self.newly_dead: set[str] = set()
        self.requeue_s: list[float] = []
        self.detect_s: list[float] = []
        self.plan_ms: list[float] = []
        self.counts: Counter[str] = Counter()
        self.active_trainings: Counter[str] = Counter()
        self.max_trainings = 0
        self.released_at: dict[str, float] = {}
        self._pending_reports: dict[str, list[tuple[str, int, float, bool]]] = {}
        self.slot_samples = 0  # healthy, reachable GPU slots seen at each tick
        self.busy_samples = 0  # … of which running a job
        self._make_hosts()

    # -- set-up ---------------------------------------------------------------------------

    def _make_hosts(self) -> None:
        weights = [m[3] for m in GPU_MIX]
        for i in range(self.p.hosts):
            gpu, power, vram, _ = self.rng.choices(GPU_MIX, weights)[0]
            slots = 4 if gpu == "CPU" else self.rng.choice((1, 2, 4, 8))
            h = SimHost(f"host-{i:02d}", gpu, power, vram, slots)
            self.hosts[h.node_id] = h
            self._schedule(self._failure_gap(), "fail", (h.node_id,))
        n_unhealthy = max(1, round(self.p.hosts * self.p.unhealthy_fraction))
        for h in self.rng.sample(list(self.hosts.values()), n_unhealthy):
            start = self.rng.uniform(0, self.p.duration_s * 0.8)
            self._schedule(start, "disk", (h.node_id, 85.0))
            self._schedule(start + self.rng.uniform(1800, 7200), "disk", (h.node_id, 30.0))

    def _failure_gap(self) -> float:
        return self.now + self.rng.expovariate(1.0 / self.p.host_mtbf_s)

    def _schedule(self, at: float, kind: str, data: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, data))

    # -- the snapshot the beat would build ------------------------------------------------

    def snapshot(self) -> Snapshot:
        from ringrift_fleet.placement import can_train

        hosts = tuple(
            Host(
                node_id=h.node_id,
                gpu_type=h.gpu,
                gpu_power=h.power,
                gpu_vram_gb=h.vram,
                slots=h.slots,
                can_train=can_train(h.gpu, h.vram),
                metrics=ResourceMetrics(
                    cpu_percent=30.0,
                    memory_percent=40.0,
                    gpu_memory_percent=50.0,
                    disk_percent=h.disk,
                    has_gpu=h.gpu != "CPU",
                ),
            )
            for h in self.hosts.values()
            if not h.declared_dead
        )
        jobs = tuple(
            Job(
                j.job_id,
                j.job_type,
                j.config_key,
                j.status,
                j.attempt,
                j.max_attempts,
                j.node,
                j.enqueued_at,
                j.started_at,
                j.hard_limit_s,
                j.kwargs,
            )
            for j in (self.jobs[i] for i in self.live)
        )
        outcomes = {}
        for c in self.policy.configs:
            sid = self.states.get(c.key, ConfigState()).stage_job_id(c.key)
            if sid is not None and sid in self.outcomes:
                outcomes[sid] = self.outcomes[sid]
        snap = Snapshot(
            now=self.now,
            hosts=hosts,
            dead=frozenset(h.node_id for h in self.hosts.values() if h.declared_dead),
            jobs=jobs,
            outcomes=outcomes,
            games=dict(self.games),
            states=dict(self.states),
            usage=self.usage.totals(self.now),
            job_seconds=dict(self.job_seconds),
            newly_dead=frozenset(self.newly_dead),
            policy=self.policy,
        )
        self.newly_dead.clear()
        return snap

    # -- the beat: plan, then apply in order ----------------------------------------------

    def beat(self) -> None:
        snap = self.snapshot()
        unhealthy = {h.node_id for h in snap.hosts if unhealthy_reason(h, self.policy)}
        t0 = time.perf_counter()
        actions = plan(snap)
        elapsed = time.perf_counter() - t0
        self.counts["plans"] += 1
        self.plan_ms.append(elapsed * 1000)
        for i, a in enumerate(actions):
            if isinstance(a, (Enqueue, Dispatch)) and a.node_id in unhealthy:
                self.counts["unhealthy_placements"] += 1
            self.apply(a, elapsed + (i + 1) * self.p.ledger_write_s)
        for h in self.hosts.values():
            self.pull(h)

    def apply(self, a: Action, latency: float) -> None:
        if isinstance(a, SetState):
            self.states[a.config_key] = a.state
        elif isinstance(a, Enqueue):
            if a.job_id in self.jobs:  # slot already taken: the broker refuses a second copy
                self.counts["slot_refused"] += 1
                return
            job = SimJob(
                a.job_id,
                a.job_type,
                a.config_key,
                dict(a.kwargs),
                a.max_attempts,
                a.hard_limit_s,
                node=a.node_id,
                enqueued_at=self.now,
            )
            self.jobs[a.job_id] = job
            self.live.add(a.job_id)
            self.hosts[a.node_id].queue.append((a.job_id, 1))
        elif isinstance(a, Dispatch):
            job = self.jobs[a.job_id]
            if job.status is not JobStatus.PENDING or a.attempt != job.attempt + 1:
                self.counts["slot_refused"] += 1
                return
            job.status, job.attempt, job.node = JobStatus.CLAIMED, a.attempt, a.node_id
            job.enqueued_at, job.started_at = self.now, None
            self.hosts[a.node_id].queue.append((a.job_id, a.attempt))
            if a.job_id in self.lost_at:
                self.requeue_s.append(self.now - self.lost_at.pop(a.job_id) + latency)
                self.counts["requeues"] += 1
        elif isinstance(a, Release):
            job = self.jobs[a.job_id]
            if job.attempt != a.attempt or not job.status.is_active:
                return
            if job.status is JobStatus.RUNNING:
                self._end_training(job)
            job.status, job.node, job.started_at = JobStatus.PENDING, None, None
            self.released_at[a.job_id] = self.now
            if self.hosts[a.node_id].declared_dead:
                self.lost_at[a.job_id] = self.dead_at[a.node_id]
            else:
                self.counts["reaped_jobs"] += 1
        elif isinstance(a, FailJob):
            job = self.jobs[a.job_id]
            if job.status is JobStatus.RUNNING:
                self._end_training(job)
            job.status = JobStatus.FAILED
            self.live.discard(a.job_id)
            self.outcomes[a.job_id] = Outcome(a.job_id, False, error=a.reason)
            self.counts["failed_jobs"] += 1
        elif isinstance(a, Notify):
            self.counts["notify_" + a.event_type] += 1

    # -- workers ----------------------------------------------------------------------------

    def pull(self, h: SimHost) -> None:
        """A worker takes attempts from its node queue while it has a free slot."""
        if not h.up or not h.connected:
            return
        while h.queue and len(h.running) < h.slots:
            job_id, attempt = h.queue.popleft()
            job = self.jobs[job_id]
            live = (
                job.status is JobStatus.CLAIMED and job.attempt == attempt and job.node == h.node_id
            )
            if not live:  # the run key / fence check: this attempt is no longer the job's
                self.counts["stale_attempts_refused"] += 1
                continue
            job.status, job.started_at = JobStatus.RUNNING, self.now
            h.running[(job_id, attempt)] = self.now
            if job.job_type is JobType.TRAINING:
                self.active_trainings[job.config_key] += 1
                self.max_trainings = max(self.max_trainings, self.active_trainings[job.config_key])
            length = self.job_length(job, h)
            if self.rng.random() < self.p.hang_probability:
                # hangs: Celery's hard limit frees the slot, no result ever comes
                self._schedule(
                    self.now + job.hard_limit_s, "killed", (h.node_id, h.epoch, job_id, attempt)
                )
            else:
                self._schedule(self.now + length, "finish", (h.node_id, h.epoch, job_id, attempt))

    def job_length(self, job: SimJob, h: SimHost) -> float:
        noise = math.exp(self.rng.gauss(0.0, self.p.job_noise))
        if job.job_type is JobType.SELFPLAY:
            c = self.policy.config(job.config_key)
            cost = (c.game_cost if c else 1.0) * int(job.kwargs.get("num_games", 1))
            return cost * self.p.seconds_per_game / h.power * noise
        lo, hi = {
            JobType.TRAINING: self.p.training_s,
            JobType.EVALUATION: self.p.eval_s,
            JobType.SYNC: self.p.sync_s,
        }[job.job_type]
        return self.rng.uniform(lo, hi) / max(h.power, 0.1) * noise

    def _end_training(self, job: SimJob) -> None:
        if job.job_type is JobType.TRAINING:
            self.active_trainings[job.config_key] -= 1

    def finish(self, node: str, epoch: int, job_id: str, attempt: int, killed: bool) -> None:
        h = self.hosts[node]
        if epoch != h.epoch:
            return  # the host crashed: this run died with it
        start = h.running.pop((job_id, attempt), None)
        if start is None:
            return
        job = self.jobs[job_id]
        if not h.connected:
            # partitioned: the result waits until the host is back
            self._pending_reports.setdefault(node, []).append((job_id, attempt, start, killed))
            return
        self.report(h, job, attempt, start, killed)
        self.pull(h)

    def report(self, h: SimHost, job: SimJob, attempt: int, start: float, killed: bool) -> None:
        if killed:
            return  # a hung attempt: nothing reports; the scheduler reaps it
        live = job.status is JobStatus.RUNNING and job.attempt == attempt and job.node == h.node_id
        if not live:
            self.counts["zombie_results_refused"] += 1
            if job.status is JobStatus.COMPLETED or job.attempt != attempt:
                self.counts["duplicates_without_fencing"] += 1
            return
        self._end_training(job)
        job.status = JobStatus.COMPLETED
        job.accepted += 1
        self.live.discard(job.job_id)
        result: dict[str, Any] = {}
        if job.job_type is JobType.SELFPLAY:
            n = int(job.kwargs.get("num_games", 0))
            self.games[job.config_key] += n
            self.counts["selfplay_jobs_done"] += 1
            self.usage.add(job.config_key, start, self.now, h.power)
            self.intervals.append((job.config_key, start, self.now, h.power))
            prev = self.job_seconds.get(job.config_key)
            d = (self.now - start) * h.power  # H100-seconds, like the usage
            self.job_seconds[job.config_key] = d if prev is None else 0.98 * prev + 0.02 * d
        elif job.job_type is JobType.TRAINING:
            self.counts["trainings_done"] += 1
            result = {"model": f"{job.config_key}_g{job.kwargs.get('generation')}.npz"}
        elif job.job_type is JobType.EVALUATION:
            result = {"win_rate": min(1.0, max(0.0, self.rng.gauss(0.56, 0.06)))}
        self.outcomes[job.job_id] = Outcome(job.job_id, True, result, node_id=h.node_id)

    # -- failures -----------------------------------------------------------------------------

    def fail(self, node: str) -> None:
        h = self.hosts[node]
        if not h.up or not h.connected:
            return
        self.counts["host_failures"] += 1
        if self.rng.random() < self.p.partition_fraction:
            h.connected = False  # running work goes on, unseen
        else:
            for (job_id, _attempt), start in list(h.running.items()):
                if self.jobs[job_id].job_type is JobType.SELFPLAY:
                    self.intervals.append((self.jobs[job_id].config_key, start, self.now, h.power))
            h.running.clear()
            h.up = False
            h.epoch += 1
        delay = self.rng.uniform(*self.p.detect_s)
        self.detect_s.append(delay)
        self._schedule(self.now + delay, "detect", (node,))
        self._schedule(self.now + self.rng.uniform(*self.p.down_s), "recover", (node,))

    def detect(self, node: str) -> None:
        h = self.hosts[node]
        if h.up and h.connected:
            return
        h.declared_dead = True
        self.dead_at[node] = self.now
        self.newly_dead.add(node)
        self.beat()  # the beat reacts to a membership death at once

    def recover(self, node: str) -> None:
        h = self.hosts[node]
        h.up, h.connected, h.declared_dead = True, True, False
        for job_id, attempt, start, killed in self._pending_reports.pop(node, []):
            self.report(h, self.jobs[job_id], attempt, start, killed)
        self._schedule(self._failure_gap(), "fail", (node,))
        self.pull(h)

    # -- the run ------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        self._schedule(0.0, "tick", ())
        end = self.p.duration_s
        steps = 0
        while self.events and steps < 50_000_000:
            steps += 1
            at, _, kind, data = heapq.heappop(self.events)
            if at > end:
                break
            self.now = at
            if kind == "tick":
                self.sample()  # before the beat: slots left idle since the last one count
                self.beat()
                self._schedule(at + self.p.tick_s, "tick", ())
                if progress and int(at) % 3600 == 0:
                    progress(at)
            elif kind == "finish":
                self.finish(data[0], data[1], data[2], data[3], killed=False)
            elif kind == "killed":
                self.finish(data[0], data[1], data[2], data[3], killed=True)
            elif kind == "fail":
                self.fail(*data)
            elif kind == "detect":
                self.detect(*data)
            elif kind == "recover":
                self.recover(*data)
            elif kind == "disk":
                self.hosts[data[0]].disk = data[1]
        self.now = end
        return self.result()

    def sample(self) -> None:
        """Count slots that could work (up, reachable, healthy) and those that do."""
        if self.now < self.p.warmup_s:
            return
        for h in self.hosts.values():
            if not (h.up and h.connected) or h.disk > self.policy.disk_critical:
                continue
            self.slot_samples += h.slots
            self.busy_samples += min(len(h.running), h.slots)

    def result(self) -> SimResult:
        for h in self.hosts.values():
            for (job_id, _), start in h.running.items():
                if self.jobs[job_id].job_type is JobType.SELFPLAY:
                    self.intervals.append((self.jobs[job_id].config_key, start, self.now, h.power))
        ratios: list[float] = []
        t = self.p.share_window_s
        while t <= self.p.duration_s:
            totals = window_totals(self.intervals, t - self.p.share_window_s, t)
            ratios.extend(share_ratios(totals, self.policy.configs).values())
            t += self.p.share_step_s
        lost = sum(1 for job_id in self.live if self.is_lost(self.jobs[job_id]))
        dup = sum(1 for j in self.jobs.values() if j.accepted > 1)
        rq = sorted(self.requeue_s) or [0.0]
        return SimResult(
            gpu_busy_fraction=self.busy_samples / self.slot_samples if self.slot_samples else 0.0,
            min_config_share_ratio=min(ratios) if ratios else 0.0,
            lost_jobs=lost,
            duplicate_executions=dup,
            requeue_p50_s=_pct(rq, 50),
            requeue_p99_s=_pct(rq, 99),
            detect_p50_s=_pct(sorted(self.detect_s) or [0.0], 50),
            requeues=self.counts["requeues"],
            zombie_results_refused=self.counts["zombie_results_refused"],
            duplicates_without_fencing=self.counts["duplicates_without_fencing"],
            stale_attempts_refused=self.counts["stale_attempts_refused"],
            reaped_jobs=self.counts["reaped_jobs"],
            failed_jobs=self.counts["failed_jobs"],
            host_failures=self.counts["host_failures"],
            selfplay_jobs_done=self.counts["selfplay_jobs_done"],
            trainings_done=self.counts["trainings_done"],
            promotions=sum(s.promotions for s in self.states.values()),
            unhealthy_placements=self.counts["unhealthy_placements"],
            max_concurrent_trainings_per_config=self.max_trainings,
            plans=self.counts["plans"],
            plan_ms_p50=statistics.median(self.plan_ms) if self.plan_ms else 0.0,
        )

    def is_lost(self, j: SimJob) -> bool:
        """A live job no queue, worker or pending requeue will ever finish."""
        if j.status is JobStatus.PENDING:
            return self.now - self.released_at.get(j.job_id, self.now) > 60.0
        if j.node is None or self.hosts[j.node].declared_dead:
            return True  # active on a dead host and never released
        h = self.hosts[j.node]
        if j.status is JobStatus.CLAIMED:
            return (j.job_id, j.attempt) not in h.queue
        if (j.job_id, j.attempt) in h.running:
            return False
        # a hung attempt Celery killed: the scheduler reaps it after the grace
        limit = j.hard_limit_s + self.policy.reap_grace_s + 2 * self.p.tick_s
        return j.started_at is None or self.now - j.started_at > limit


def _pct(sorted_values: list[float], q: float) -> float:
    i = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def simulate(params: SimParams | None = None, policy: SchedulerPolicy | None = None) -> SimResult:
    return FleetSim(params or SimParams(), policy).run()


__all__ = ["FleetSim", "SimParams", "SimResult", "Stage", "simulate"]
