# mypy: disallow-any-explicit
"""The scheduler's decision: ``plan(snapshot) -> actions``, a pure function.

One call looks at the whole fleet and says what to do next, in the order the
beat must apply it:

1. lost work: attempts on hosts declared dead, past their hard limit, or whose
   run lease vanished after they started (their worker died on a live host) are
   released (their fence dies) and placed again; stage jobs end their cycle,
   except after a lost lease on a healthy host, where they run there again;
2. the training cycle of each config: sync its games to the best training
   host → train → evaluate candidate vs champion → promote (or not), record
   Elo, distribute the champion, notify — one stage job per config at a time;
3. self-play: every healthy host's node queue is topped up to its free slots
   plus a prefetch (and, where ``queue_ahead_s`` is set for short jobs, at least
   that much work a slot by the measured run time of a job), with configs
   chosen by fair share.

Nothing here reads a clock, a socket or a global: the same call runs on the
leader, in Hypothesis tests and in the 50-host simulator.  Job ids derive only
from ledger state, so two leaders planning from the same state name the same
slots and the broker accepts only the first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from ringrift_fleet.models import JobStatus, JobType, NodeHealth, NodeSummary
from ringrift_fleet.scheduler.actions import (
    HARD_LIMIT,
    HOST_DEAD,
    LEASE_LOST,
    LOSSES,
    Action,
    Dispatch,
    Enqueue,
    FailJob,
    Notify,
    Release,
    SetState,
)
from ringrift_fleet.scheduler.fairshare import pick_configs
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

_STAGE_TYPE = {
    Stage.SYNC: JobType.SYNC,
    Stage.TRAINING: JobType.TRAINING,
    Stage.EVALUATION: JobType.EVALUATION,
}


# --- health ----------------------------------------------------------------------------


def unhealthy_reason(host: Host, policy: SchedulerPolicy) -> str | None:
    """Why ``host`` must get no new work, or None when it may."""
    if host.status != "ready":
        return f"status {host.status}"
    if host.health in (NodeHealth.UNHEALTHY, NodeHealth.OFFLINE):
        return f"health {host.health.value}"
    if host.metrics.disk_percent > policy.disk_critical:
        return f"disk {host.metrics.disk_percent:.0f}% > {policy.disk_critical:.0f}%"
    if host.metrics.load_score > policy.load_max:
        return f"load {host.metrics.load_score:.2f} > {policy.load_max:.2f}"
    return None


def healthy_hosts(snap: Snapshot) -> list[Host]:
    return [
        h
        for h in snap.hosts
        if h.node_id not in snap.dead and unhealthy_reason(h, snap.policy) is None
    ]


# --- small pure helpers --------------------------------------------------------------------


def elo_delta(win_rate: float) -> float:
    """Elo difference that a score of ``win_rate`` implies, clamped to ±800."""
    p = min(max(win_rate, 1e-3), 1 - 1e-3)
    return max(-800.0, min(800.0, -400.0 * math.log10(1.0 / p - 1.0)))


def selfplay_id(key: str, seq: int) -> str:
    return f"selfplay:{key}:{seq}"


# the most jobs a slot has queued for ``queue_ahead_s``: a worker that dies strands
# what its node queue holds until it is back or its host is declared dead
QUEUE_AHEAD_MAX_PER_SLOT = 16


def queued_ahead(slots: int, prefetch: float, queue_ahead_s: float, job_s: float) -> int:
    """Jobs a host's queue holds beyond its slots, so a slot that finishes starts
    the next job at once: the prefetch, or enough jobs of ``job_s`` seconds (on
    this host) to cover ``queue_ahead_s`` -- the leader notices a finished job and
    places the next only on a later tick, and a sub-second job would leave its
    slot idle for most of that."""
    extra = math.ceil(slots * prefetch) if prefetch > 0 else 0
    if queue_ahead_s > 0 and job_s > 0:
        ahead = min(math.ceil(slots * queue_ahead_s / job_s), slots * QUEUE_AHEAD_MAX_PER_SLOT)
        extra = max(extra, ahead)
    return extra


def _config_kwargs(c: BoardConfig) -> dict[str, object]:
    return {"board_type": c.board_type, "num_players": c.num_players}


class _Planner:
    """One plan call's working state; discarded after it returns."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.policy = snap.policy
        self.actions: list[Action] = []
        self.alive = {h.node_id: h for h in snap.hosts if h.node_id not in snap.dead}
        self.healthy = {h.node_id: h for h in healthy_hosts(snap)}
        self.load: Counter[str] = Counter(
            j.node_id for j in snap.jobs if j.status.is_active and j.node_id
        )
        self.jobs = {j.job_id: j for j in snap.jobs}
        # the shortest self-play job of any config, in seconds on a power-1.0 host
        self.shortest_job_s = (
            min(
                (snap.job_seconds.get(c.key) or self.policy.expected_job_seconds(c))
                for c in snap.configs
            )
            if snap.configs
            else 0.0
        )
        self.failed_now: dict[str, Outcome] = {}
        self.states: dict[str, ConfigState] = {c.key: snap.state(c.key) for c in snap.configs}
        self.changed: set[str] = set()

    # -- placement ----------------------------------------------------------------------

    def capacity(self, host: Host) -> int:
        """Jobs a host's queue should hold: its slots and what is queued behind them."""
        job_s = self.shortest_job_s / (host.gpu_power if host.gpu_power > 0 else 1.0)
        p = self.policy
        return host.slots + queued_ahead(host.slots, p.prefetch, p.queue_ahead_s, job_s)

    def free(self, node: str) -> int:
        host = self.healthy.get(node)
        return 0 if host is None else self.capacity(host) - self.load[node]

    def place(self, node: str) -> None:
        self.load[node] += 1

    def emptiest_host(self) -> Host | None:
        if not self.healthy:
            return None
        return max(
            self.healthy.values(),
            key=lambda h: (self.free(h.node_id) / max(h.slots, 1), h.gpu_power, h.node_id),
        )

    def set_state(self, key: str, state: ConfigState) -> None:
        self.states[key] = state
        self.changed.add(key)

    # -- 1. lost work ---------------------------------------------------------------------

    def lost_reason(self, job: Job) -> tuple[str, str] | None:
        """(cause, reason) when the job's live attempt is lost, else None."""
        if not job.status.is_active or job.node_id is None:
            return None
        if job.node_id in self.snap.dead:
            return HOST_DEAD, f"host {job.node_id} declared dead"
        if job.status is not JobStatus.RUNNING:
            return None  # placed, not started yet: it has no run lease to lose
        if job.started_at is not None:
            limit = job.hard_limit_s + self.policy.reap_grace_s
            if self.snap.now - job.started_at > limit:
                return HARD_LIMIT, f"ran {self.snap.now - job.started_at:.0f}s, past its hard limit"
        gone = self.snap.lease_gone.get(job.job_id)
        if gone is not None and self.snap.now - gone >= self.policy.lease_grace_s:
            return LEASE_LOST, (
                f"attempt {job.attempt} on {job.node_id} lost its run lease "
                f"({self.snap.now - gone:.1f}s without it): its worker died"
            )
        return None

    def recover_lost(self) -> None:
        for node in sorted(self.snap.newly_dead):
            self.actions.append(
                Notify(
                    "node_offline",
                    f"Host offline: {node}",
                    f"{node} was declared dead; its jobs are being re-enqueued",
                    severity="warning",
                    details={"node": node},
                    key=f"node_offline:{node}:{self.snap.now:.0f}",
                )
            )
        for job in self.snap.jobs:
            lost = self.lost_reason(job)
            if lost is None or job.node_id is None:
                continue
            cause, reason = lost
            self.load[job.node_id] -= 1
            # a stage job whose worker died on a healthy host runs there again
            # (its games are still there)
            rerun_here = cause == LEASE_LOST and job.node_id in self.healthy
            stage = job.job_type is not JobType.SELFPLAY
            spent = self.out_of_attempts(job, losing=cause in LOSSES)
            if (stage and not rerun_here) or spent:
                # A stage job is tied to its host's copy of the games: its cycle
                # ends and starts again on a host that has them.
                self.give_up(job, f"{reason}; {spent}" if spent else reason)
                continue
            self.actions.append(Release(job.job_id, job.node_id, job.attempt, reason, cause))
            self.jobs[job.job_id] = replace(
                job,
                status=JobStatus.PENDING,
                node_id=None,
                started_at=None,
                lost=job.lost + int(cause in LOSSES),
            )

    def out_of_attempts(self, job: Job, *, losing: bool = False) -> str | None:
        """Why ``job`` may not run again once its attempts so far have ended (the
        live one lost to its worker's or host's death when ``losing``), or None.

        Two budgets: MAX_REDELIVERIES failures of its own (a failed task, a worker
        process it killed that often, its hard limit) and MAX_LOST_ATTEMPTS
        attempts lost besides to the death of the whole worker or host (kill -9,
        a reboot, a preempted host), which is rarely the job's doing: a 60-minute
        soak gave up long syncs that chaos had killed three times."""
        lost = job.lost + int(losing)
        failed = job.attempt - lost
        if failed >= self.policy.max_attempts:
            return f"failed {failed} time(s) (MAX_REDELIVERIES={self.policy.max_attempts})"
        if lost > self.policy.max_lost:
            return (
                f"{lost} attempts lost to worker or host deaths "
                f"(MAX_LOST_ATTEMPTS={self.policy.max_lost})"
            )
        if job.attempt >= job.max_attempts:
            return f"{job.attempt} attempts, all the ledger allows it"
        return None

    def give_up(self, job: Job, reason: str) -> None:
        """End ``job`` for good (FailJob); a stage job's cycle reads the outcome."""
        self.actions.append(FailJob(job.job_id, job.attempt, reason))
        self.failed_now[job.job_id] = Outcome(job.job_id, False, error=reason)
        self.jobs.pop(job.job_id, None)
        if job.job_type is JobType.SELFPLAY:
            self.notify_failure(job, reason)

    def notify_failure(self, job: Job, reason: str) -> None:
        self.actions.append(
            Notify(
                "job_failed",
                f"{job.job_type.value} job failed: {job.job_id}",
                reason,
                severity="error",
                details={"job_id": job.job_id, "config": job.config_key, "attempt": job.attempt},
                key=f"job_failed:{job.job_id}",
            )
        )

    def redispatch_pending(self) -> None:
        """Place jobs the ledger holds with no live attempt (released, or never sent)."""
        for job in sorted(self.jobs.values(), key=lambda j: j.job_id):
            if job.status is not JobStatus.PENDING:
                continue
            spent = self.out_of_attempts(job) if job.attempt else None
            if spent:
                # its last attempt failed (the ledger gave it back for another, as
                # it allows both budgets together)
                self.give_up(job, spent)
                continue
            if job.job_type is JobType.SELFPLAY:
                # lost work goes out at once, to the emptiest healthy queue even
                # if every queue is full: waiting for a free slot would hold it
                # back for a whole job length
                host = self.emptiest_host()
            else:
                # a stage job goes only to its cycle's host (its games are there),
                # queued behind that host's self-play if it is full
                st = self.states.get(job.config_key)
                node = st.target_node if st else None
                host = self.healthy.get(node) if node else None
            if host is None:
                continue
            self.place(host.node_id)
            self.actions.append(
                Dispatch(
                    job.job_id,
                    job.job_type,
                    job.config_key,
                    host.node_id,
                    host.pinned_queue,
                    job.attempt + 1,
                    job.kwargs,
                )
            )

    # -- 2. training cycles ---------------------------------------------------------------

    def training_candidates(self, busy: set[str]) -> list[Host]:
        return [
            h
            for h in self.healthy.values()
            if (h.can_train or self.policy.allow_cpu_training) and h.node_id not in busy
        ]

    def stage_job(self, c: BoardConfig, st: ConfigState) -> Enqueue | None:
        """The job of ``st``'s stage, derived from the cursor alone (so it can be re-derived).

        Every stage runs on the cycle's host, the evaluation too: the candidate is
        there.  A champion that host lacks is not a reason to move the evaluation
        (elsewhere the candidate would be missing); the task fetches it first from
        the hosts known to hold it (``model_sources``, added by the beat's
        ``task_kwargs``; see execution/workloads/evaluation.py)."""
        job_id = st.stage_job_id(c.key)
        node = st.target_node
        if job_id is None or node is None:
            return None
        host = self.alive.get(node)
        queue = host.pinned_queue if host else f"node.{node}"
        kwargs: dict[str, object] = {**_config_kwargs(c), "generation": st.generation}
        if st.stage is Stage.SYNC:
            kwargs.update({"config": c.key, "kind": "games", "target": node})
        elif st.stage is Stage.TRAINING:
            kwargs.update({"base_model": st.champion, "games_up_to": st.games_at_trigger})
        elif st.stage is Stage.EVALUATION:
            kwargs.update(
                {
                    "candidate": st.candidate,
                    "champion": st.champion,
                    "games": self.policy.eval_games,
                }
            )
        job_type = _STAGE_TYPE[st.stage]
        return Enqueue(
            job_id,
            job_type,
            c.key,
            node,
            queue,
            kwargs,
            max_attempts=self.policy.ledger_attempts,
            hard_limit_s=self.policy.hard_limit(job_type.value),
        )

    def advance_cycles(self) -> None:
        busy = {
            st.target_node
            for st in self.states.values()
            if st.stage is not Stage.IDLE and st.target_node
        }
        for c in self.snap.configs:
            st = self.states[c.key]
            if st.stage is Stage.IDLE:
                self.maybe_start_cycle(c, st, busy)
            else:
                self.follow_cycle(c, st)

    def maybe_start_cycle(self, c: BoardConfig, st: ConfigState, busy: set[str]) -> None:
        from ringrift_fleet.training import rank_nodes_for_training, should_trigger_training

        if self.snap.now < st.retry_after:
            return
        games = self.snap.games.get(c.key, 0)
        new_games = max(0, games - st.games_at_last_training)
        hours = (
            None
            if st.last_training_at is None
            else max(0.0, (self.snap.now - st.last_training_at) / 3600.0)
        )
        decision = should_trigger_training(
            games_available=new_games,
            hours_since_last_training=hours,
            thresholds=self.policy.thresholds,
        )
        if not decision:
            return
        candidates = self.training_candidates(busy) or self.training_candidates(set())
        if not candidates:
            return
        ranked = [n.node_id for n in rank_nodes_for_training([_summary(h) for h in candidates])]
        if not ranked and self.policy.allow_cpu_training:
            # the one-machine demo: no GPU can train, so the strongest idle host does
            ranked = [
                h.node_id
                for h in sorted(
                    candidates, key=lambda h: (-h.gpu_power, h.metrics.load_score, h.node_id)
                )
            ]
        node = next((n for n in ranked if n in {h.node_id for h in candidates}), None)
        if node is None:
            return
        busy.add(node)
        new = st.but(
            stage=Stage.SYNC,
            generation=st.generation + 1,
            target_node=node,
            games_at_trigger=games,
            candidate=None,
        )
        self.set_state(c.key, new)
        job = self.stage_job(c, new)
        if job is not None:
            self.place(node)
            self.actions.append(job)

    def outcome(self, job_id: str) -> Outcome | None:
        return self.failed_now.get(job_id) or self.snap.outcomes.get(job_id)

    def follow_cycle(self, c: BoardConfig, st: ConfigState) -> None:
        job_id = st.stage_job_id(c.key)
        assert job_id is not None
        done = self.outcome(job_id)
        if done is None:
            if job_id in self.jobs:
                return  # running or queued: wait
            if st.target_node not in self.alive:
                self.end_cycle(c, st, f"training host {st.target_node} is gone", failed=True)
                return
            if st.target_node not in self.healthy:
                why = unhealthy_reason(self.alive[st.target_node], self.policy)
                self.end_cycle(c, st, f"training host {st.target_node}: {why}", failed=True)
                return
            # the cursor moved but the job never reached the ledger (leader died
            # between the two writes): send it now; its slot stops a second copy
            job = self.stage_job(c, st)
            if job is not None and st.target_node:
                self.place(st.target_node)
                self.actions.append(job)
            return
        if not done.ok:
            self.end_cycle(c, st, f"{st.stage.value} failed: {done.error}", failed=True)
        elif st.stage is Stage.SYNC:
            self.next_stage(c, st.but(stage=Stage.TRAINING))
        elif st.stage is Stage.TRAINING:
            self.training_done(c, st, done)
        elif st.stage is Stage.EVALUATION:
            self.evaluation_done(c, st, done)

    def next_stage(self, c: BoardConfig, new: ConfigState) -> None:
        node = new.target_node or ""
        if node not in self.healthy:
            host = self.alive.get(node)
            why = "gone" if host is None else unhealthy_reason(host, self.policy)
            self.end_cycle(c, new, f"training host {node}: {why}", failed=True)
            return
        self.set_state(c.key, new)
        job = self.stage_job(c, new)
        if job is not None and new.target_node:
            self.place(new.target_node)
            self.actions.append(job)

    def training_done(self, c: BoardConfig, st: ConfigState, done: Outcome) -> None:
        r = done.result
        model = r.get("model") or r.get("model_path") or r.get("candidate")
        if not isinstance(model, str) or not model:
            self.end_cycle(c, st, "training reported no model", failed=True)
            return
        self.actions.append(
            Notify(
                "training_complete",
                f"Training Complete: {c.key}",
                f"generation {st.generation} trained on {st.target_node}: {model}",
                details={
                    "config": c.key,
                    "board_type": c.board_type,
                    "num_players": c.num_players,
                    "model": model,
                    "generation": st.generation,
                    "node": st.target_node,
                },
                key=f"training_complete:{c.key}:g{st.generation}",
            )
        )
        self.next_stage(c, st.but(stage=Stage.EVALUATION, candidate=model))

    def evaluation_done(self, c: BoardConfig, st: ConfigState, done: Outcome) -> None:
        r = done.result
        win_rate = r.get("win_rate")
        if isinstance(win_rate, bool) or not isinstance(win_rate, (int, float)):
            self.end_cycle(c, st, "evaluation reported no win_rate", failed=True)
            return
        delta = elo_delta(float(win_rate))
        elo = st.champion_elo + delta
        details = {
            "config": c.key,
            "board_type": c.board_type,
            "num_players": c.num_players,
            "candidate": st.candidate,
            "champion": st.champion,
            "win_rate": float(win_rate),
            "elo_change": round(delta, 1),
        }
        if float(win_rate) >= 0.5 + self.policy.promotion_margin and st.candidate:
            self.actions.append(
                Notify(
                    "model_promoted",
                    f"Model Promoted: {c.key}",
                    f"{st.candidate} beat {st.champion or 'the baseline'}: "
                    f"win rate {float(win_rate):.2f}, Elo {delta:+.1f}",
                    details=details,
                    key=f"model_promoted:{c.key}:g{st.generation}",
                )
            )
            promoted = st.but(
                champion=st.candidate, champion_elo=round(elo, 1), promotions=st.promotions + 1
            )
            self.finish(c, promoted)
            self.distribute(c, promoted)
        else:
            self.actions.append(
                Notify(
                    "candidate_rejected",
                    f"Candidate Rejected: {c.key}",
                    f"win rate {float(win_rate):.2f} is below "
                    f"{0.5 + self.policy.promotion_margin:.2f}",
                    details=details,
                    key=f"candidate_rejected:{c.key}:g{st.generation}",
                )
            )
            self.finish(c, st)

    def finish(self, c: BoardConfig, st: ConfigState) -> None:
        self.set_state(
            c.key,
            st.but(
                stage=Stage.IDLE,
                target_node=None,
                candidate=None,
                games_at_last_training=st.games_at_trigger,
                last_training_at=self.snap.now,
            ),
        )

    def distribute(self, c: BoardConfig, st: ConfigState) -> None:
        """A sync job per other healthy host, so every host plays with the new champion."""
        for host in sorted(self.healthy.values(), key=lambda h: h.node_id):
            if host.node_id == st.target_node:
                continue
            self.actions.append(
                Enqueue(
                    f"distribute:{c.key}:g{st.generation}:{host.node_id}",
                    JobType.SYNC,
                    c.key,
                    host.node_id,
                    host.pinned_queue,
                    {
                        **_config_kwargs(c),
                        "kind": "model",
                        "model": st.champion,
                        "source": st.target_node,
                        "target": host.node_id,
                    },
                    max_attempts=self.policy.ledger_attempts,
                    hard_limit_s=self.policy.hard_limit("sync"),
                )
            )
            self.place(host.node_id)

    def end_cycle(self, c: BoardConfig, st: ConfigState, reason: str, *, failed: bool) -> None:
        if failed:
            self.actions.append(
                Notify(
                    "training_failed",
                    f"Training cycle failed: {c.key}",
                    reason,
                    severity="error",
                    details={"config": c.key, "generation": st.generation, "stage": st.stage.value},
                    key=f"training_failed:{c.key}:g{st.generation}",
                )
            )
        self.set_state(
            c.key,
            st.but(
                stage=Stage.IDLE,
                target_node=None,
                candidate=None,
                retry_after=self.snap.now + self.policy.retry_backoff_s,
            ),
        )

    # -- 3. self-play -------------------------------------------------------------------------

    def feed_selfplay(self) -> None:
        slots: list[Host] = []
        for host in sorted(self.healthy.values(), key=lambda h: (-h.gpu_power, h.node_id)):
            slots.extend([host] * max(0, self.free(host.node_id)))
        if not slots:
            return
        policy = self.policy
        est = {
            c.key: self.snap.job_seconds.get(c.key) or policy.expected_job_seconds(c)
            for c in self.snap.configs
        }
        charge = dict(self.snap.usage)
        for job in self.jobs.values():
            if job.job_type is not JobType.SELFPLAY:
                continue
            e = est.get(job.config_key, 0.0)
            if job.status is JobStatus.RUNNING and job.started_at is not None:
                runner = self.alive.get(job.node_id or "")
                power = runner.gpu_power if runner else 1.0
                # a long run is charged for what it used, up to twice the norm:
                # a hung job must not starve its config until it is reaped
                e = min(max(e, (self.snap.now - job.started_at) * power), 2 * e)
            charge[job.config_key] = charge.get(job.config_key, 0.0) + e
        picks = pick_configs(self.snap.configs, charge, est, len(slots))
        seqs = {c.key: self.states[c.key].selfplay_seq for c in self.snap.configs}
        new: list[Enqueue] = []
        for host, key in zip(slots, picks, strict=False):
            c = policy.config(key)
            assert c is not None
            seqs[key] += 1
            self.place(host.node_id)
            kwargs: dict[str, object] = {**_config_kwargs(c), "num_games": policy.games_for(c)}
            champion = self.states[key].champion
            if champion and host.node_id in self.snap.champion_hosts.get(key, frozenset()):
                kwargs["model"] = champion  # play the champion where it is on disk
            new.append(
                Enqueue(
                    selfplay_id(key, seqs[key]),
                    JobType.SELFPLAY,
                    key,
                    host.node_id,
                    host.pinned_queue,
                    kwargs,
                    max_attempts=policy.ledger_attempts,
                    hard_limit_s=policy.hard_limit("selfplay"),
                )
            )
        for key, seq in seqs.items():
            if seq != self.states[key].selfplay_seq:
                self.set_state(key, self.states[key].but(selfplay_seq=seq))
        self.flush_states()
        self.actions.extend(new)

    def flush_states(self) -> None:
        """Cursor writes go before the jobs they name (see ``plan``)."""
        for key in sorted(self.changed):
            self.actions.append(SetState(key, self.states[key]))
        self.changed.clear()


def _summary(h: Host) -> NodeSummary:
    return NodeSummary(
        node_id=h.node_id,
        gpu_type=h.gpu_type,
        gpu_count=h.slots,
        gpu_vram_gb=h.gpu_vram_gb,
        gpu_power=h.gpu_power,
        metrics=h.metrics,
    )


def plan(snapshot: Snapshot) -> list[Action]:
    """What the leader should do now, in the order to do it.

    Cursor writes (SetState) come before the jobs they name, so a leader that
    dies between them leaves a cursor pointing at a job that does not exist
    yet — which the next plan re-derives and sends under the same slot —
    never a job the cursor has forgotten.
    """
    p = _Planner(snapshot)
    p.recover_lost()
    if not snapshot.policy.place_work:  # consensus only: lost work released, nothing placed
        return p.actions
    cycle_start = len(p.actions)
    p.advance_cycles()
    # SetState for the cycles goes first among the cycle actions
    cycle_actions = p.actions[cycle_start:]
    del p.actions[cycle_start:]
    p.flush_states()
    p.actions.extend(cycle_actions)
    p.redispatch_pending()
    p.feed_selfplay()
    return p.actions


def count_by_type(actions: list[Action]) -> Mapping[str, int]:
    """Action counts by class name (status pages, logs)."""
    return dict(Counter(type(a).__name__ for a in actions))
