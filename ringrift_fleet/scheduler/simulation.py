# mypy: disallow-any-explicit
"""A discrete-event fleet that runs the production scheduler for a simulated day.

Nothing of the scheduler is modelled here: each tick runs the real
:class:`~ringrift_fleet.scheduler.beat.Beat` — its read model, the pure ``plan``
and the :class:`~ringrift_fleet.scheduler.interpreter.Interpreter` that applies
the actions — on a ledger running the real state machine
(:func:`ringrift_fleet.consensus.ledger.apply`), through in-memory ports: a fence
store with ``SET NX`` semantics (:class:`~ringrift_fleet.scheduler.slots.MemorySlots`),
a broker of per-host queues, and a result backend.  What is modelled is the
world around it, because it is what the scheduler must survive:

* hosts with 1-8 GPUs of mixed power, each with its own node queue (a Redis
  list: it outlives the host) and one slot per GPU;
* job lengths that depend on board size, GPU power and random noise;
* host failures: crashes (running work dies) and partitions (running work goes
  on and reports after the host is back — a stale attempt reporting late),
  declared by membership after a short delay; hung jobs that never report and
  must be reaped;
* workers as ``execution/fencing.py`` makes them: an attempt whose fence is not
  the published one is refused, a run takes the job's run lease, a result is
  stored only while its attempt's fence is still published;
* injected faults: a send the broker fails, the ``|sent`` mark failing after a
  send that worked, and a leader that dies between taking a send slot and
  sending (the next leader, on the same ledger with a higher term, takes over).

``duplicate_executions`` counts jobs whose result was kept twice (stored by a
worker past its fence, or accepted by the ledger); ``duplicates_without_fencing``
counts the stale attempts that finished and would have been a second result
without the fence.  A re-enqueue's time is membership's death declaration to the
new attempt being placed: the measured wall time of the beat tick that does it.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.api import Ledger
from ringrift_fleet.execution.dispatch import task_id_for
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.models import JobStatus, JobType, ResourceMetrics, WorkItem
from ringrift_fleet.placement import can_train
from ringrift_fleet.scheduler.actions import Action, Dispatch, Enqueue, FailJob
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.fairshare import share_ratios, window_totals
from ringrift_fleet.scheduler.policy import plan, unhealthy_reason
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.slots import BrokerFault, MemorySlots
from ringrift_fleet.scheduler.snapshot import Host, Snapshot, Stage

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
INF = float("inf")


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
    lease_ttl_s: float = 30.0  # a run lease outlives its worker by this long
    hang_probability: float = 0.003  # attempts that never report
    job_noise: float = 0.35  # lognormal sigma of job lengths
    seconds_per_game: float = 30.0  # cheapest game on an H100
    training_s: tuple[float, float] = (1800.0, 3600.0)
    eval_s: tuple[float, float] = (300.0, 900.0)
    sync_s: tuple[float, float] = (20.0, 120.0)
    unhealthy_fraction: float = 0.04  # hosts whose disk fills for a while
    share_window_s: float = 3600.0
    share_step_s: float = 900.0
    # injected broker and leader faults
    send_fail_probability: float = 0.01  # the broker fails a send (sent again next tick)
    mark_fail_probability: float = 0.01  # the "|sent" mark fails after the send worked
    leader_change_every_s: float = 2 * 3600.0  # mean time between leader deaths mid-send


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
    queue: deque[tuple[str, int, str]] = field(default_factory=deque)  # job, attempt, fence
    running: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    disk: float = 30.0


@dataclass
class SimResult:
    gpu_busy_fraction: float
    # over every trailing window and config: the worst (an extreme value: one hour
    # in which one config's long jobs died with their hosts sets it) ...
    min_config_share_ratio: float
    # ... the median over windows of each window's worst config (a typical hour) ...
    median_window_min_share_ratio: float
    # ... and the largest fraction of windows in which one config got under half
    # its share (sustained starvation is what a user notices)
    max_fraction_of_windows_under_half_share: float
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
    # trainings of one config whose attempt the ledger holds live, at once (the
    # scheduler's decision; a cut-off host's cancelled attempt goes on unseen and
    # is counted only in the next key)
    max_concurrent_trainings_per_config: int
    max_concurrent_trainings_with_zombies: int
    plans: int
    plan_ms_p50: float

    def to_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


class SimLedger(Ledger):
    """The ledger's state machine in this process: every write is ``sm.apply`` on one
    shared state, as a Raft replica would apply it once committed.  Two leaders of
    different terms share the state; the older one's writes are refused by term."""

    def __init__(
        self, node_id: str, term: int, state: sm.State, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self.node_id = node_id
        self.state = state
        self._term = term
        self.clock = clock

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        return sm.apply(self.state, op)

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        yield self.state

    def is_leader(self) -> bool:
        return True

    def leader(self) -> str | None:
        return self.node_id

    def term(self) -> int:
        return self._term


class SimSlots(MemorySlots):
    """The in-memory fence store, with a leader that can die right after taking a slot."""

    dying: str | None = None  # the fence of a leader about to die mid-send
    died = False

    def claim(self, job_id: str, attempt: int, leader: str, ttl: int) -> bool:
        took = super().claim(job_id, attempt, leader, ttl)
        if took and leader == self.dying:
            self.died = True
            raise BrokerFault("leader died between taking the slot and sending")
        return took


class FleetSim:
    def __init__(self, params: SimParams, policy: SchedulerPolicy | None = None) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.fault_rng = random.Random(params.seed + 1_000_003)
        self.policy = policy or SchedulerPolicy()
        self.now = 0.0
        # (when, order, kind, what happens then)
        self.events: list[tuple[float, int, str, Callable[[], None]]] = []
        self._seq = 0
        self.hosts: dict[str, SimHost] = {}
        self.state = sm.new_state()
        self.slots = SimSlots(clock=self.clock, fault=self._fault)
        self.backend: dict[str, tuple[str, object]] = {}  # task id -> (state, value)
        self.dead_at: dict[str, float] = {}  # host -> when membership declared it dead
        self.term = 0
        self.beat = self._new_leader()
        self.intervals: list[tuple[str, float, float, float]] = []
        self.lost_at: dict[str, tuple[float, str]] = {}  # job -> (its host's death, host)
        self.requeue_s: list[float] = []
        self.detect_s: list[float] = []
        self.plan_ms: list[float] = []
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()  # injected faults that struck
        self.kept: Counter[str] = Counter()  # job -> results kept (stored past the fence)
        self.active_trainings: Counter[str] = Counter()
        self.max_trainings = 0  # live attempts only
        self.max_trainings_with_zombies = 0
        self.slot_samples = 0  # healthy, reachable GPU slots seen at each tick
        self.busy_samples = 0  # … of which running a job
        self._pending_reports: dict[str, list[tuple[str, int, str, float, bool]]] = {}
        self._make_hosts()

    def clock(self) -> float:
        return self.now

    # -- set-up ---------------------------------------------------------------------------

    def _make_hosts(self) -> None:
        weights = [m[3] for m in GPU_MIX]
        for i in range(self.p.hosts):
            gpu, power, vram, _ = self.rng.choices(GPU_MIX, weights)[0]
            slots = 4 if gpu == "CPU" else self.rng.choice((1, 2, 4, 8))
            h = SimHost(f"host-{i:02d}", gpu, power, vram, slots)
            self.hosts[h.node_id] = h
            self._schedule(self._failure_gap(), "fail", partial(self.fail, h.node_id))
        n_unhealthy = max(1, round(self.p.hosts * self.p.unhealthy_fraction))
        for h in self.rng.sample(list(self.hosts.values()), n_unhealthy):
            start = self.rng.uniform(0, self.p.duration_s * 0.8)
            self._schedule(start, "disk", partial(self.set_disk, h.node_id, 85.0))
            self._schedule(
                start + self.rng.uniform(1800, 7200),
                "disk",
                partial(self.set_disk, h.node_id, 30.0),
            )
        if self.p.leader_change_every_s > 0:
            self._schedule(self._leader_gap(), "leader", self.leader_dies_mid_send)

    def _failure_gap(self) -> float:
        return self.now + self.rng.expovariate(1.0 / self.p.host_mtbf_s)

    def _leader_gap(self) -> float:
        return self.now + self.fault_rng.expovariate(1.0 / self.p.leader_change_every_s)

    def _schedule(self, at: float, kind: str, then: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, then))

    def set_disk(self, node: str, percent: float) -> None:
        self.hosts[node].disk = percent

    # -- the production scheduler on in-memory ports ---------------------------------------

    def _new_leader(self) -> Beat:
        """A coordinator that wins the next term on the shared ledger state."""
        self.term += 1
        ledger = SimLedger(f"leader-{self.term}", self.term, self.state, self.clock)
        beat = Beat(
            ledger=ledger,
            leadership=ledger,
            slots=self.slots,
            policy=self.policy,
            hosts=self.alive_hosts,
            send=self.send,
            read_result=lambda task_id: self.backend.get(task_id, ("PENDING", None)),
            clock=self.clock,
            planner=self.timed_plan,
        )
        beat.full_read_every_s = 3600.0  # a 300 s full read costs a day-long run minutes
        beat.full_read_jitter = 0.0  # a seeded run replays exactly
        for node, at in self.dead_at.items():
            beat.on_membership(MembershipEvent("dead", node, 0, at=at))
        return beat

    def _fault(self, op: str) -> bool:
        if op == "mark_sent" and self.fault_rng.random() < self.p.mark_fail_probability:
            self.faults["mark_sent_failed"] += 1
            return True
        return False

    def alive_hosts(self) -> list[Host]:
        return [
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
        ]

    def timed_plan(self, snap: Snapshot) -> list[Action]:
        unhealthy = {h.node_id for h in snap.hosts if unhealthy_reason(h, self.policy)}
        t0 = time.perf_counter()
        actions = plan(snap)
        self.plan_ms.append((time.perf_counter() - t0) * 1000)
        self.counts["plans"] += 1
        for a in actions:
            if isinstance(a, (Enqueue, Dispatch)) and a.node_id in unhealthy:
                self.counts["unhealthy_placements"] += 1
            elif isinstance(a, FailJob):
                self.counts["failed_jobs"] += 1
        return actions

    def send(
        self,
        job_type: JobType,
        kwargs: Mapping[str, object],
        *,
        queue: str,
        job_id: str,
        fence: Mapping[str, object],
    ) -> str:
        """The broker: the message goes onto the host's node queue (it outlives the host)."""
        if self.fault_rng.random() < self.p.send_fail_probability:
            self.faults["send_failed"] += 1
            raise BrokerFault("injected: the broker failed the send")
        attempt = int(str(fence["attempt"]))
        self.hosts[queue.removeprefix("node.")].queue.append((job_id, attempt, str(fence["token"])))
        self.counts["messages_sent"] += 1
        return task_id_for(job_id, attempt)

    def tick(self) -> None:
        """One beat of the leader; a leader that died mid-send is replaced by the next."""
        placed_before = self._placed()
        t0 = time.perf_counter()
        self.beat.tick()
        wall = time.perf_counter() - t0
        if self.slots.died:
            self.faults["leader_died_mid_send"] += 1
            self.slots.died, self.slots.dying = False, None
            self.beat = self._new_leader()
        self._count_requeues(placed_before, wall)
        for h in self.hosts.values():
            self.pull(h)

    def _placed(self) -> dict[str, tuple[int, str | None]]:
        return {
            j: (w.attempts, w.claimed_by)
            for j in self.lost_at
            if (w := self.beat.ledger.get(j)) is not None
        }

    def _count_requeues(self, before: dict[str, tuple[int, str | None]], wall: float) -> None:
        for job_id, (died, host) in list(self.lost_at.items()):
            w = self.beat.ledger.get(job_id)
            if w is None or w.status.is_terminal:
                del self.lost_at[job_id]
                continue
            if w.status is JobStatus.CLAIMED and w.claimed_by not in (None, host):
                if before.get(job_id) != (w.attempts, w.claimed_by):
                    self.requeue_s.append(self.now - died + wall)
                else:  # placed by an earlier tick than this one
                    self.requeue_s.append(self.now - died)
                self.counts["requeues"] += 1
                del self.lost_at[job_id]

    # -- workers ----------------------------------------------------------------------------

    def pull(self, h: SimHost) -> None:
        """A worker takes attempts from its node queue while it has a free slot."""
        if not h.up or not h.connected:
            return
        while h.queue and len(h.running) < h.slots:
            job_id, attempt, token = h.queue.popleft()
            task_id = task_id_for(job_id, attempt)
            owner = f"{h.node_id}:{h.epoch}:{attempt}"
            if not self.slots.claim_run(job_id, owner, token, INF):
                # the worker's fence check (fencing.claim_run): not the live attempt
                self.counts["stale_attempts_refused"] += 1
                refusal = {"status": "refused", "reason": "stale fence", "job_id": job_id}
                self.backend[task_id] = ("SUCCESS", refusal)
                continue
            self.backend[task_id] = ("STARTED", None)
            h.running[(job_id, attempt)] = (self.now, token)
            w = self.beat.ledger.get(job_id)
            assert w is not None
            if w.work_type is JobType.TRAINING:
                key = str(w.payload.get("config", ""))
                self.active_trainings[key] += 1
                self.max_trainings_with_zombies = max(
                    self.max_trainings_with_zombies, self.active_trainings[key]
                )
                self.max_trainings = max(self.max_trainings, self.live_trainings(key))
            if self.rng.random() < self.p.hang_probability:
                # hangs: Celery's hard limit frees the slot, no result ever comes
                limit = float(w.payload.get("hard_limit_s", 7200.0))
                self._schedule(
                    self.now + limit,
                    "killed",
                    partial(self.finish, h.node_id, h.epoch, job_id, attempt, killed=True),
                )
            else:
                length = self.job_length(w, h)
                self._schedule(
                    self.now + length,
                    "finish",
                    partial(self.finish, h.node_id, h.epoch, job_id, attempt, killed=False),
                )

    def live_trainings(self, key: str) -> int:
        """Trainings of ``key`` running now as the ledger's live attempt of a live job."""
        n = 0
        for h in self.hosts.values():
            for job_id, attempt in h.running:
                w = self.beat.ledger.get(job_id)
                if (
                    w is not None
                    and w.work_type is JobType.TRAINING
                    and str(w.payload.get("config", "")) == key
                    and not w.status.is_terminal
                    and w.attempts == attempt
                    and w.claimed_by == h.node_id
                ):
                    n += 1
        return n

    def job_length(self, w: WorkItem, h: SimHost) -> float:
        noise = math.exp(self.rng.gauss(0.0, self.p.job_noise))
        kwargs = w.payload.get("kwargs", {})
        if w.work_type is JobType.SELFPLAY:
            c = self.policy.config(str(w.payload.get("config", "")))
            cost = (c.game_cost if c else 1.0) * int(kwargs.get("num_games", 1))
            return cost * self.p.seconds_per_game / h.power * noise
        lo, hi = {
            JobType.TRAINING: self.p.training_s,
            JobType.EVALUATION: self.p.eval_s,
            JobType.SYNC: self.p.sync_s,
        }[w.work_type]
        return self.rng.uniform(lo, hi) / max(h.power, 0.1) * noise

    def _end_training(self, job_id: str) -> None:
        w = self.beat.ledger.get(job_id)
        if w is not None and w.work_type is JobType.TRAINING:
            self.active_trainings[str(w.payload.get("config", ""))] -= 1

    def finish(self, node: str, epoch: int, job_id: str, attempt: int, killed: bool) -> None:
        h = self.hosts[node]
        if epoch != h.epoch:
            return  # the host crashed: this run died with it
        run = h.running.pop((job_id, attempt), None)
        if run is None:
            return
        start, token = run
        self._end_training(job_id)
        if not h.connected:
            # partitioned: the result waits until the host is back
            self._pending_reports.setdefault(node, []).append(
                (job_id, attempt, token, start, killed)
            )
            return
        self.report(h, job_id, attempt, token, start, killed)
        self.pull(h)

    def report(
        self, h: SimHost, job_id: str, attempt: int, token: str, start: float, killed: bool
    ) -> None:
        self.slots.drop_run(job_id, f"{h.node_id}:{h.epoch}:{attempt}")
        if killed:
            return  # a hung attempt: nothing reports; the scheduler reaps it
        w = self.beat.ledger.get(job_id)
        assert w is not None
        kwargs, key = w.payload.get("kwargs", {}), str(w.payload.get("config", ""))
        result: dict[str, object] = {
            "status": "completed",
            "node": h.node_id,
            "job_id": job_id,
            "fence": {"token": token, "attempt": attempt, "term": self.term},
            "run_seconds": self.now - start,
        }
        if w.work_type is JobType.SELFPLAY:
            result["games"] = int(kwargs.get("num_games", 0))
        elif w.work_type is JobType.TRAINING:
            result["model"] = f"{key}_g{kwargs.get('generation')}.npz"
        elif w.work_type is JobType.EVALUATION:
            result["win_rate"] = min(1.0, max(0.0, self.rng.gauss(0.56, 0.06)))
        if not self.slots.store_result(job_id, token, result):
            # its fence is gone (fencing.complete_run): a stale attempt, discarded
            self.counts["zombie_results_refused"] += 1
            if w.status is JobStatus.COMPLETED or w.attempts != attempt:
                self.counts["duplicates_without_fencing"] += 1
            return
        self.kept[job_id] += 1
        self.backend[task_id_for(job_id, attempt)] = ("SUCCESS", result)
        if w.work_type is JobType.SELFPLAY:
            self.intervals.append((key, start, self.now, h.power))
            self.counts["selfplay_jobs_done"] += 1
        elif w.work_type is JobType.TRAINING:
            self.counts["trainings_done"] += 1

    # -- failures -----------------------------------------------------------------------------

    def fail(self, node: str) -> None:
        h = self.hosts[node]
        if not h.up or not h.connected:
            return
        self.counts["host_failures"] += 1
        for job_id, attempt in h.running:  # no renewals from here on: leases lapse
            owner = f"{h.node_id}:{h.epoch}:{attempt}"
            self.slots.lapse_run(job_id, owner, self.now + self.p.lease_ttl_s)
        if self.rng.random() < self.p.partition_fraction:
            h.connected = False  # running work goes on, unseen
        else:
            for (job_id, _attempt), (start, _token) in list(h.running.items()):
                self._end_training(job_id)
                w = self.beat.ledger.get(job_id)
                if w is not None and w.work_type is JobType.SELFPLAY:
                    key = str(w.payload.get("config", ""))
                    self.intervals.append((key, start, self.now, h.power))
            h.running.clear()
            h.up = False
            h.epoch += 1
        delay = self.rng.uniform(*self.p.detect_s)
        self.detect_s.append(delay)
        self._schedule(self.now + delay, "detect", partial(self.detect, node))
        self._schedule(
            self.now + self.rng.uniform(*self.p.down_s), "recover", partial(self.recover, node)
        )

    def detect(self, node: str) -> None:
        h = self.hosts[node]
        if h.up and h.connected:
            return
        h.declared_dead = True
        self.dead_at[node] = self.now
        for w in self.beat.ledger.items():
            if w.status.is_active and w.claimed_by == node:
                self.lost_at[w.work_id] = (self.now, node)
        self.beat.on_membership(MembershipEvent("dead", node, 0, at=self.now))
        self.tick()  # the beat reacts to a membership death at once

    def recover(self, node: str) -> None:
        h = self.hosts[node]
        h.up, h.connected, h.declared_dead = True, True, False
        self.dead_at.pop(node, None)
        self.beat.on_membership(MembershipEvent("alive", node, 0, at=self.now))
        for job_id, attempt, token, start, killed in self._pending_reports.pop(node, []):
            self.report(h, job_id, attempt, token, start, killed)
        self._schedule(self._failure_gap(), "fail", partial(self.fail, node))
        self.pull(h)

    def leader_dies_mid_send(self) -> None:
        """The leader's next send slot is its last act: it dies before sending."""
        self.slots.dying = self.beat.effects.fence
        self._schedule(self._leader_gap(), "leader", self.leader_dies_mid_send)

    # -- the run ------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        self._schedule(0.0, "tick", _nothing)
        end = self.p.duration_s
        steps = 0
        while self.events and steps < 50_000_000:
            steps += 1
            at, _, kind, then = heapq.heappop(self.events)
            if at > end:
                break
            self.now = at
            if kind == "tick":
                self.sample()  # before the beat: slots left idle since the last one count
                self.tick()
                self._schedule(at + self.p.tick_s, "tick", _nothing)
                if progress and int(at) % 3600 == 0:
                    progress(at)
            else:
                then()
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
            for (job_id, _), (start, _token) in h.running.items():
                w = self.beat.ledger.get(job_id)
                if w is not None and w.work_type is JobType.SELFPLAY:
                    key = str(w.payload.get("config", ""))
                    self.intervals.append((key, start, self.now, h.power))
        ratios: list[float] = []
        window_mins: list[float] = []
        under_half: dict[str, int] = {}
        t = self.p.share_window_s
        while t <= self.p.duration_s:
            totals = window_totals(self.intervals, t - self.p.share_window_s, t)
            shares = share_ratios(totals, self.policy.configs)
            ratios.extend(shares.values())
            window_mins.append(min(shares.values(), default=0.0))
            for key, ratio in shares.items():
                under_half[key] = under_half.get(key, 0) + (ratio < 0.5)
            t += self.p.share_step_s
        items = self.beat.ledger.items()
        lost = sum(1 for w in items if self.is_lost(w))
        rq = sorted(self.requeue_s) or [0.0]
        replaced = self.beat.replaced
        states = self.beat.view.states
        return SimResult(
            gpu_busy_fraction=self.busy_samples / self.slot_samples if self.slot_samples else 0.0,
            min_config_share_ratio=min(ratios) if ratios else 0.0,
            median_window_min_share_ratio=statistics.median(window_mins) if window_mins else 0.0,
            max_fraction_of_windows_under_half_share=(
                max(under_half.values(), default=0) / len(window_mins) if window_mins else 0.0
            ),
            lost_jobs=lost,
            duplicate_executions=sum(1 for n in self.kept.values() if n > 1),
            requeue_p50_s=_pct(rq, 50),
            requeue_p99_s=_pct(rq, 99),
            detect_p50_s=_pct(sorted(self.detect_s) or [0.0], 50),
            requeues=self.counts["requeues"],
            zombie_results_refused=self.counts["zombie_results_refused"],
            duplicates_without_fencing=self.counts["duplicates_without_fencing"],
            stale_attempts_refused=self.counts["stale_attempts_refused"],
            reaped_jobs=sum(n for (_, cause), n in replaced.items() if cause != "host_death"),
            failed_jobs=self.counts["failed_jobs"],
            host_failures=self.counts["host_failures"],
            selfplay_jobs_done=self.counts["selfplay_jobs_done"],
            trainings_done=self.counts["trainings_done"],
            promotions=sum(s.promotions for s in states.values()),
            unhealthy_placements=self.counts["unhealthy_placements"],
            max_concurrent_trainings_per_config=self.max_trainings,
            max_concurrent_trainings_with_zombies=self.max_trainings_with_zombies,
            plans=self.counts["plans"],
            plan_ms_p50=statistics.median(self.plan_ms) if self.plan_ms else 0.0,
        )

    def is_lost(self, w: WorkItem) -> bool:
        """A live job no queue, worker, send or pending requeue will ever finish."""
        if w.status.is_terminal:
            return False
        recent = self.now - (w.updated_at or 0.0) <= 60.0
        if w.status is JobStatus.PENDING:
            return not recent
        node = w.claimed_by
        if node is None:
            return True
        h = self.hosts[node]
        if h.declared_dead:
            return self.now - self.dead_at.get(node, self.now) > 60.0
        if w.status is JobStatus.CLAIMED:
            queued = any(j == w.work_id and a == w.attempts for j, a, _ in h.queue)
            running = (w.work_id, w.attempts) in h.running
            return not (queued or running or recent)
        if (w.work_id, w.attempts) in h.running:
            return False
        if any(r[0] == w.work_id for r in self._pending_reports.get(node, [])):
            return False
        # a hung attempt Celery killed: the scheduler reaps it after the grace
        limit = float(w.payload.get("hard_limit_s", 7200.0))
        limit += self.policy.reap_grace_s + 2 * self.p.tick_s
        return self.now - (w.updated_at or 0.0) > limit


def _nothing() -> None:
    """A tick's event: what a tick does is the run loop's (it samples, then beats)."""


def _pct(sorted_values: list[float], q: float) -> float:
    i = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def simulate(params: SimParams | None = None, policy: SchedulerPolicy | None = None) -> SimResult:
    return FleetSim(params or SimParams(), policy).run()


__all__ = ["FleetSim", "SimParams", "SimResult", "Stage", "simulate"]
