"""The one interpreter of the scheduler's effects: ``plan``'s actions and the broker's
task states, applied through typed ports (:mod:`ringrift_fleet.scheduler.ports`).

Production runs it inside :class:`~ringrift_fleet.scheduler.beat.Beat` on Redis,
Celery and the replicated ledger; the fleet simulation runs the same class on
in-memory ports.  It does two things:

* :meth:`Interpreter.apply` — the actions of one ``plan``, in order, stopping at
  the first ledger write that is refused (a deposed leader's writes are refused
  by term, so it stops there); a run of new jobs is added in one ledger commit
  and placed in a second, then sent one by one;
* :meth:`Interpreter.collect` — task states of live attempts into the ledger
  (results count only through ``accept_result``, which refuses any attempt but
  the live one), and placed attempts no send reached the broker sent (again).

Sending an attempt is fenced twice: its send slot (``SET NX`` on
``<job>#<attempt>``: two leaders that both think they lead cannot both send it;
the slot moves from ``<leader fence>|claimed`` to ``|sent`` once the send
returned) and the attempt's fence token published before the send (a worker
refuses every other attempt of the job).  Slot and fence are one step
(``Slots.claim_and_fence``: one script, so a refused slot writes no fence), which
also carries the previous send's ``|sent`` mark; the tick's last mark goes out at
its end (:meth:`Interpreter.flush`), followed by the tick's one ``WAIT 1``.  Until
its mark is written a sent attempt is remembered as such and never sent again by
this leader; a leader that died before writing it leaves a slot another leader
voids (a new attempt, a new fence), as it does for a leader that died between slot
and send.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ringrift_fleet.consensus.api import NewJob
from ringrift_fleet.execution.broker import BROKER_ERRORS, BrokerHealth
from ringrift_fleet.execution.dispatch import task_id_for
from ringrift_fleet.jsontypes import RESULT_LIST_MAX, JSONMapping, capped_lists
from ringrift_fleet.models import JobAssignment, JobStatus, JobType, WorkItem
from ringrift_fleet.scheduler.actions import (
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
from ringrift_fleet.scheduler.ports import (
    Leadership,
    Ledger,
    LostMessageFinder,
    Notifier,
    Results,
    ResultsMany,
    Sender,
    Slots,
)
from ringrift_fleet.scheduler.readmodel import (
    LOST_KEY,
    LOST_KIND,
    RECORD_KIND,
    LedgerView,
    task_kwargs,
)
from ringrift_fleet.scheduler.snapshot import Stage

log = logging.getLogger("ringrift_fleet.scheduler.beat")

FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})  # Celery's: the attempt ended
NOTIFIED_TTL_S = 7 * 86400


@dataclass(frozen=True)
class _Write:
    """One ledger operation of a tick, and what follows once the ledger answered
    (its answer in; how many ledger entries it changed out)."""

    op: str
    args: JSONMapping
    then: Callable[[bool], int]


@dataclass
class TickReport:
    leader: bool
    actions: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    recorded: int = 0
    pruned: int = 0
    error: str | None = None


class Interpreter:
    """Applies the scheduler's effects through its ports; holds the counts they leave.

    ``fence`` is the leader fence this coordinator leads under (set by the beat
    each tick); ``broker_failed`` is set by the first broker error of a tick, after
    which nothing more is sent in it (the next tick sends it).
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        leadership: Leadership,
        slots: Slots | None,
        send: Sender,
        results: Results,
        view: LedgerView,
        results_many: ResultsMany | None = None,
        broker: BrokerHealth,
        is_dead: Callable[[str], bool],
        event: Callable[[str], None],
        address: Callable[[str], str | None] = lambda node: None,
        notify: Notifier | None = None,
        fence_ttl_s: float = 3600.0,
    ) -> None:
        self.ledger = ledger
        self.leadership = leadership
        self.slots = slots
        self.send = send
        self.results = results
        self.results_many = results_many
        self.view = view
        self.broker = broker
        self.is_dead = is_dead
        self.event = event
        self.address = address
        self.notify = notify
        self.fence_ttl_s = fence_ttl_s
        self.fence: str | None = None
        self.broker_failed = False
        # config -> (stage, host) last announced: a state write that only moves a
        # cursor (each tick's self-play) is no new stage to announce
        self._announced: dict[str, tuple[str, str | None]] = {}
        # WAIT 1 <ms> after fence/slot writes when the broker has replicas (Sentinel
        # set; redis_clients.ReplicaWait): an acknowledged fence survives a failover.
        self.replicate: Callable[[], object] = lambda: True
        self.unreplicated = False  # sends this tick not yet covered by a WAIT
        # Sent attempts whose message a broker failover forgot (broker.LostMessages):
        # sent again under the same attempt and fence.  None: not looked for.
        self.lost_messages: LostMessageFinder | None = None
        # attempts lost since the ledger's LOST_KIND record was last written
        self._losses: dict[str, int] = {}
        self._sent_unmarked: set[tuple[str, int]] = set()  # sent, "|sent" mark not written
        self._unreadable: set[str] = set()  # live attempts whose task state would not decode
        self.slots_refused = 0  # sends another leader had already made
        self.ledger_refusals = 0  # results the ledger would not take from us (fence, term)
        self.worker_refusals = 0  # results in which the worker refused the attempt
        self.term_refusals = 0  # our ledger writes refused (deposed, no quorum)
        self.lease_lost_total = 0  # attempts re-placed because their run lease vanished
        self.sends_deferred = 0  # sends the broker failed (each sent again in a later tick)
        self.results_from_store = 0  # results read from the run store: Celery's was lost
        # attempts found finished when the leader came to void them (host declared
        # dead, lease lost, given up): their results taken, nothing placed again
        self.finished_before_release = 0
        # attempts placed again, by (job type, cause)
        self.replaced: Counter[tuple[str, str]] = Counter()

    @property
    def _ttl(self) -> int:
        return int(self.fence_ttl_s)

    def flush(self) -> None:
        """End of a tick: the ``|sent`` marks not yet written (its last send's) in one
        round trip, then one WAIT 1 covering every slot, fence, message and mark of it."""
        self._mark_sent_all()
        if self.unreplicated:
            self.unreplicated = False
            self.replicate()

    def _mark_sent_all(self) -> None:
        if not self._sent_unmarked or self.broker_failed or self.slots is None:
            return  # a failed broker: remembered in _sent_unmarked, marked by a later tick
        marks = sorted(self._sent_unmarked)
        try:
            self.slots.mark_sent_many(marks, str(self.fence), self._ttl)
        except BROKER_ERRORS as exc:
            self.broker.failed("mark sent", exc)
            self.broker_failed = True
            return  # still in _sent_unmarked: marked by a later tick, never re-sent
        self._sent_unmarked.difference_update(marks)
        self.unreplicated = True

    # -- broker -> ledger ------------------------------------------------------------------------

    def collect(self) -> int:
        """Fold task states of live attempts into the ledger, and send placed attempts
        no send reached the broker; returns how many ledger entries changed."""
        changed = 0
        if self.slots is None:  # no broker (consensus only): nothing was sent to read back
            return changed
        placed = self._live_attempts()  # one ledger read per job and tick
        stored = self._stored_results(placed)
        if stored is None:
            return changed
        batch: Mapping[str, tuple[str, object]] = {}
        if self.results_many is not None:
            ids = [
                task_id_for(w.work_id, current.attempt)
                for w in self.view.active.values()
                if (current := placed.get(w.work_id)) is not None and w.claimed_by
            ]
            try:
                batch = self.results_many(ids) if ids else {}
            except BROKER_ERRORS as exc:
                self.broker.failed("read task results", exc)
                self.broker_failed = True
                return changed
        writes: list[_Write] = []
        live, changed = self._fold_states(placed, stored, batch, writes)
        # The tick's ledger writes in one go: Raft commits them as one log entry
        # (sixty results one after another took ~6 s on a loaded fleet, hosts idle)
        oks = self.ledger.write_many([(w.op, w.args) for w in writes]) if writes else []
        for write, ok in zip(writes, oks, strict=True):
            changed += write.then(ok)
        self._record_losses()
        if live is None:  # a broker error stopped the fold: the next tick goes on
            return changed
        self._unreadable &= live
        if self.lost_messages is not None:
            # what it noted about attempts that started or ended since (a worker had
            # taken the message, its run lease not yet there) would stay forever: one
            # entry per such job, for as long as the coordinator runs
            self.lost_messages.forget(live)
        return changed

    def _fold_states(
        self,
        placed: dict[str, JobAssignment],
        stored: dict[str, dict[str, object]],
        batch: Mapping[str, tuple[str, object]],
        writes: list[_Write],
    ) -> tuple[set[str] | None, int]:
        """Each live attempt's task state into ``writes`` (what to tell the ledger, and
        what to do once it answered); the task ids seen (None: the broker failed) and
        the ledger entries changed on the way (an unsent attempt reconciled)."""
        changed = 0
        live: set[str] = set()  # task ids of the live attempts
        for w in list(self.view.active.values()):
            current = placed.get(w.work_id)
            if current is None or not w.claimed_by:
                continue
            task_id = task_id_for(w.work_id, current.attempt)
            live.add(task_id)
            try:
                state, value = batch[task_id] if task_id in batch else self.results(task_id)
            except BROKER_ERRORS as exc:
                self.broker.failed("read task results", exc)
                self.broker_failed = True
                return None, changed
            except Exception as exc:
                # a result key that is not Celery's (written by hand, or by another
                # program): only this attempt waits (its worker's result overwrites
                # the key; a started one is re-placed once its run lease is gone)
                if task_id not in self._unreadable:  # said once, not every tick
                    log.warning("cannot read the task state of %s: %s", task_id, exc)
                self._unreadable.add(task_id)
                continue
            if state not in FINAL_STATES and w.work_id in stored:
                # a failover kept the run store's result and lost Celery's SUCCESS
                # (written just after it, or never: Celery gave up on the dead
                # primary): nothing would ever report it otherwise
                state, value = "SUCCESS", stored[w.work_id]
                self.results_from_store += 1
            if state == "PENDING":
                if w.status is JobStatus.CLAIMED:
                    changed += self._reconcile_unsent(w, current.attempt, current.fence_token)
                continue
            start = ("start_work.v1", {"work_id": w.work_id, "node": w.claimed_by})
            if state in ("STARTED", "PROGRESS", "RETRY") and w.status is JobStatus.CLAIMED:
                writes.append(_Write(*start, then=int))
            elif state == "SUCCESS":
                writes.extend(self._success(w, current, value, start))
            elif state in ("FAILURE", "REVOKED"):
                error = f"{type(value).__name__}: {value}" if value else state.lower()
                fail = {"work_id": w.work_id, "error": error, "fence": current.fence_token}
                writes.append(_Write("fail_work.v1", fail, then=self._on_failed(w, error)))
        return live, changed

    def _success(
        self,
        w: WorkItem,
        current: JobAssignment,
        value: object,
        start: tuple[str, JSONMapping],
    ) -> list[_Write]:
        """The writes a finished attempt's result makes."""
        result = value if isinstance(value, dict) else {"value": value}
        if result.get("status") == "refused":
            reason = str(result.get("reason", "refused by the worker"))
            fail = {"work_id": w.work_id, "error": reason, "fence": current.fence_token}

            def refused(ok: bool) -> int:
                self.worker_refusals += 1
                if ok:
                    self._replaced(w, "worker_refused")
                return int(ok)

            return [_Write("fail_work.v1", fail, then=refused)]
        out = [_Write(*start, then=lambda ok: 0)] if w.status is JobStatus.CLAIMED else []
        # the token the attempt ran under, not ours: a result sent by another
        # leader's assignment is refused by this ledger's fence
        fence = result.get("fence")
        token = fence.get("token") if isinstance(fence, dict) else None
        accept = {
            "job_id": w.work_id,
            "fence": str(token or current.fence_token),
            "result": ledger_result(result),
        }

        def accepted(ok: bool) -> int:
            self.ledger_refusals += not ok
            if ok and w.work_type is JobType.SELFPLAY:
                # dozens a second with short jobs: in the events /status shows
                # they would push out what an operator looks for there
                log.debug("selfplay %s completed on %s", w.work_id, w.claimed_by)
            elif ok:
                self.event(f"{w.work_type.value} {w.work_id} completed on {w.claimed_by}")
            return int(ok)

        return [*out, _Write("accept_result.v1", accept, then=accepted)]

    def _on_failed(self, w: WorkItem, error: str) -> Callable[[bool], int]:
        def failed(ok: bool) -> int:
            failures = w.attempts - self.view.lost.get(w.work_id, 0)
            if ok and w.attempts < w.max_attempts and failures < self.view.policy.max_attempts:
                self._replaced(w, "job_failed")  # back to pending: tried again
            self.event(f"{w.work_type.value} {w.work_id} failed: {error}")
            return int(ok)

        return failed

    def _live_attempts(self) -> dict[str, JobAssignment]:
        """The ledger's live attempt of every active job the view has placed on a host
        (the job's current assignment, when it is still on that host)."""
        out = {}
        for w in self.view.active.values():
            if w.status.is_active and w.claimed_by:
                current = self.ledger.current(w.work_id)
                if current is not None and current.node_id == w.claimed_by:
                    out[w.work_id] = current
        return out

    def _stored_results(
        self, placed: dict[str, JobAssignment]
    ) -> dict[str, dict[str, object]] | None:
        """Results the live attempts stored in the run store (fencing ``done`` keys),
        in one round trip; None when the broker failed."""
        assert self.slots is not None
        tokens = {job: current.fence_token for job, current in placed.items()}
        try:
            return self.slots.stored_results(tokens)
        except BROKER_ERRORS as exc:
            self.broker.failed("read stored results", exc)
            self.broker_failed = True
            return None

    # -- actions -----------------------------------------------------------------------------------

    def apply(self, actions: list[Action], report: TickReport) -> None:
        try:
            self._apply(actions, report)
        finally:
            self._record_losses()

    def _record_losses(self) -> None:
        """The LOST_KIND record, rewritten when attempts were lost since the last write:
        the live jobs' counts only, so it never grows past the live jobs."""
        if not self._losses:
            return
        counts = {j: n for j, n in self.view.lost.items() if j in self.view.active}
        counts.update(self._losses)
        self._losses = {}
        if self.ledger.put_record(LOST_KIND, LOST_KEY, counts):
            self.view.lost = counts

    def _lost(self, job_id: str) -> None:
        """An attempt of ``job_id`` ended with its worker, host or sender: not the job's
        failure (see SchedulerPolicy.max_lost)."""
        self._losses[job_id] = self._losses.get(job_id, self.view.lost.get(job_id, 0)) + 1

    def _announce_stage(self, config: str, stage: Stage, node: str | None) -> None:
        now = (stage.value, node)
        if self._announced.get(config) == now:
            return
        self._announced[config] = now
        if stage is not Stage.IDLE:
            self.event(f"{config}: {stage.value} on {node}")

    def _apply(self, actions: list[Action], report: TickReport) -> None:
        released_nodes: set[str] = set()
        i = 0
        while i < len(actions):
            a = actions[i]
            i += 1
            ok = True
            if isinstance(a, Enqueue):
                # a run of new jobs (a tick's self-play, a promotion's distribute
                # jobs) goes to the ledger in two commits, not two per job
                run = [a]
                while i < len(actions) and isinstance(nxt := actions[i], Enqueue):
                    run.append(nxt)
                    i += 1
                ok = self._enqueue_run(run, report)
            elif isinstance(a, SetState):
                ok = self.ledger.put_record(RECORD_KIND, a.config_key, a.state.to_dict())
                if ok:
                    self._announce_stage(a.config_key, a.state.stage, a.state.target_node)
            elif isinstance(a, Dispatch):
                self._dispatch(a)
            elif isinstance(a, Release):
                if self.is_dead(a.node_id):
                    if a.node_id not in released_nodes:
                        released_nodes.add(a.node_id)
                        # Every attempt on the host voided first (or, if it finished
                        # meanwhile, its result taken), so the ledger step re-enqueues
                        # only what can no longer report.  The ledger's list, not the
                        # view's: a view a tick old after a leader change may miss one.
                        for held in self.ledger.jobs_of(a.node_id):
                            self._withdraw(held.job_id, wait=False)
                        self.replicate()  # one WAIT 1 for all of them
                        jobs = self.ledger.reassign_jobs_of(a.node_id)
                        for job in jobs:
                            self.replaced[(self.view.type_of(job), "host_death")] += 1
                            self._lost(job)
                        self.event(f"host {a.node_id} dead: {len(jobs)} job(s) re-enqueued")
                elif not self._withdraw(a.job_id):
                    current = self.ledger.current(a.job_id)
                    token = current.fence_token if current else None
                    if self.ledger.fail_work(a.job_id, a.reason, token):
                        cause = "host_death" if a.cause == HOST_DEAD else a.cause
                        self.replaced[(self.view.type_of(a.job_id), cause)] += 1
                        if a.cause in LOSSES:
                            self._lost(a.job_id)
                    if a.cause == LEASE_LOST:
                        self._drop_lost_delivery(a)
                    else:
                        self.event(f"{a.job_id} reaped: {a.reason}")
            elif isinstance(a, FailJob):
                if not self._withdraw(a.job_id):
                    self.ledger.cancel_work(a.job_id)
                    self.event(f"{a.job_id} given up: {a.reason}")
            elif isinstance(a, Notify):
                self._notify(a)
            if not isinstance(a, Enqueue):  # a run counts its own
                report.actions[type(a).__name__] += 1
            if not ok:
                # refused (deposed, or no quorum): nothing after it may go out
                report.refused.append(f"{type(a).__name__}: {self.ledger.last_error}")
                self.term_refusals += 1
                log.info("scheduler stopped applying: %s", report.refused[-1])
                return

    def _enqueue_run(self, run: list[Enqueue], report: TickReport) -> bool:
        """Add and place ``run`` in order, then send each placed job; False at the first
        job the ledger refused to add (deposed, or no quorum: nothing after it goes
        out), after sending the ones before it."""
        jobs = [
            NewJob(
                a.job_id,
                {"config": a.config_key, "kwargs": dict(a.kwargs), "hard_limit_s": a.hard_limit_s},
                a.job_type.value,
                a.node_id,
                max_attempts=a.max_attempts,
            )
            for a in run
        ]
        answers = self.ledger.add_and_assign(jobs)
        for a, (added, assignment) in zip(run, answers, strict=True):
            if not added:
                return False
            report.actions[type(a).__name__] += 1
            if assignment is not None:
                self._placed(a, assignment)
        return True

    def _dispatch(self, a: Dispatch) -> None:
        assignment = self.ledger.assign(a.job_id, a.node_id, a.job_type.value)
        if assignment is not None:
            self._placed(a, assignment)

    def _placed(self, a: Enqueue | Dispatch, assignment: JobAssignment) -> None:
        """Send a job the ledger just placed (or, with nothing to move, finish it)."""
        w = self.ledger.get(a.job_id)
        if w is None:
            return
        kwargs = task_kwargs(a, self.view, self.address)
        if kwargs is None:
            # nothing to move (every game is already on the training host): done as is
            self.ledger.start_work(a.job_id, a.node_id)
            self.ledger.accept_result(
                a.job_id,
                assignment.fence_token,
                {"status": "completed", "skipped": "nothing to do"},
            )
            return
        w.payload = {**w.payload, "task_kwargs": kwargs, "queue": a.queue}
        self._send(w, assignment.attempt, assignment.fence_token)

    def _send(self, w: WorkItem, attempt: int, token: str) -> None:
        kwargs = w.payload.get("task_kwargs")
        queue = w.payload.get("queue") or f"node.{w.claimed_by}"
        if kwargs is None:
            # re-sent by a new leader: rebuild the arguments as the first leader did
            logical = Enqueue(
                w.work_id,
                w.work_type,
                str(w.payload.get("config", "")),
                str(w.claimed_by),
                queue,
                dict(w.payload.get("kwargs", {})),
            )
            kwargs = task_kwargs(logical, self.view, self.address)
            if kwargs is None:
                return
        if self.broker_failed:
            self.sends_deferred += 1
            return  # the broker failed earlier in this tick: the next tick sends it
        if self.slots is None:  # no broker (consensus only): nothing can be sent
            return
        leader = str(self.fence)
        try:
            # the slot, and only if it is ours the fence, with the "|sent" marks of the
            # sends before it: one step
            marks = sorted(self._sent_unmarked)
            took = self.slots.claim_and_fence(
                w.work_id, attempt, leader, self._ttl, token, self.fence_ttl_s, marks
            )
            self._sent_unmarked.difference_update(marks)
            if not took:
                log.info("slot %s#%s already taken: not sending it again", w.work_id, attempt)
                self.slots_refused += 1
                return
            term = int(self.leadership.term())
            self.send(
                w.work_type,
                kwargs,
                queue=str(queue),
                job_id=w.work_id,
                fence={"token": token, "attempt": attempt, "term": term},
            )
        except BROKER_ERRORS as exc:
            # Nothing reached the broker.  The attempt stays placed and its slot (if
            # taken) stays ours: the next tick's reconcile sends it again, under the
            # same attempt, as soon as the broker answers.
            self.broker.failed("send", exc)
            self.broker_failed = True
            self.sends_deferred += 1
            return
        except Exception as exc:  # the job itself cannot be sent: give the attempt back
            self.slots.release(w.work_id, attempt)
            self._withdraw(w.work_id)
            if self.ledger.fail_work(w.work_id, f"send failed: {exc}", token):
                self._replaced(w, "send_failed")
            self.event(f"{w.work_id}: send failed ({exc}); will place it again")
            return
        # marked "|sent" with the next send's slot, or at the end of the tick (flush);
        # WAIT 1 then puts the slots, fences, messages and marks (replicated in order)
        # on a replica too (docs/deploy.md)
        self._sent_unmarked.add((w.work_id, attempt))
        self.unreplicated = True

    def _reconcile_unsent(self, w: WorkItem, attempt: int, token: str) -> int:
        """A placed attempt with no task state yet (every tick).

        No slot: no leader ever sent it — send it now.  Slot ours and not marked
        sent: our own send failed (broker error) — send it again, same attempt.
        Another leader's slot never marked sent: it died between taking the slot
        and the send, so nobody knows if a copy is on the broker — void the
        attempt; the next attempt has a new fence, which any lost copy fails.
        """
        if self.broker_failed or self.slots is None:
            return 0
        if (w.work_id, attempt) in self._sent_unmarked:
            return 0  # sent by us, its mark not yet written: the next write carries it
        slot = self.slots.holder(w.work_id, attempt)
        if slot is not None and slot.sent:
            return self._resend_if_lost(w, attempt, token)
        if slot is None or slot.leader == str(self.fence):
            self._send(w, attempt, token)
            return 0
        if self._withdraw(w.work_id):
            return 1  # it ran after all (its result was stored): taken, not placed again
        reason = "its leader died while sending it"
        ok = bool(self.ledger.fail_work(w.work_id, reason, token))
        if ok:
            self._replaced(w, "sender_died")
            self._lost(w.work_id)  # the leader's death, not the job's doing
            self.event(f"{w.work_id} attempt {attempt}: {reason}; placed again")
        return int(ok)

    def _resend_if_lost(self, w: WorkItem, attempt: int, token: str) -> int:
        """Sent, no task state, and its message nowhere on the broker for a while (a
        failover forgot it): send it again, same attempt and fence (docs/deploy.md)."""
        if self.lost_messages is None or self.slots is None:
            return 0
        queue = str(w.payload.get("queue") or f"node.{w.claimed_by}")
        task_id = task_id_for(w.work_id, attempt)
        if not self.lost_messages.lost(queue, task_id, w.work_id):
            return 0
        dropped = self.slots.discard_unacked([task_id])  # an orphaned copy, if any
        self.event(
            f"{w.work_id} attempt {attempt}: message lost by the broker; sent again"
            + (f" ({dropped} orphaned unacknowledged copy discarded)" if dropped else "")
        )
        self.slots.reclaim(w.work_id, attempt, str(self.fence), self._ttl)
        self._send(w, attempt, token)
        return 0

    def _withdraw(self, job_id: str, *, wait: bool = True) -> bool:
        """Void the job's live attempt on the broker: fence gone, revocation published
        (a worker still running it stops within a second).

        True when that attempt had already finished (its result stored before the
        fence went): the result is taken into the ledger instead, and the caller
        must not place the job again -- it ran, once."""
        if self.slots is None:  # no broker (consensus only): no fence was published
            return False
        current = self.ledger.current(job_id)
        token = current.fence_token if current else None
        stored = self.slots.withdraw_fence(job_id, token)
        if wait:
            self.replicate()
        if stored is None or token is None:
            return False
        self.finished_before_release += 1
        if self.ledger.accept_result(job_id, token, ledger_result(stored)):
            self.event(f"{job_id} finished before its release: result taken, not run again")
        return True

    def _drop_lost_delivery(self, a: Release) -> None:
        """The dead worker's unacknowledged message of the voided attempt: discarded
        now instead of handed out again after the visibility timeout (hours)."""
        dropped = (
            self.slots.discard_unacked([task_id_for(a.job_id, a.attempt)])
            if self.slots is not None
            else 0
        )
        self.lease_lost_total += 1
        self.event(
            f"{a.job_id} re-placed: {a.reason}; {dropped} unacknowledged message(s) discarded"
        )

    def _notify(self, n: Notify) -> None:
        if self.slots is not None and not self.slots.notify_once(
            n.slot, self.fence or "", NOTIFIED_TTL_S
        ):
            return
        self.event(f"notify {n.event_type}: {n.title}")
        if self.notify is not None:
            self.notify(
                event_type=n.event_type,
                title=n.title,
                message=n.message,
                severity=n.severity,
                details=dict(n.details),
            )

    def _replaced(self, w: WorkItem, cause: str) -> None:
        self.replaced[(w.work_type.value, cause)] += 1


# Items of one list a result keeps in the ledger.  A games sync's result listed every
# file it fetched, skipped and installed: 560 kB a sync, and in a 60-minute soak 32
# syncs held as much of the ledger as 20,460 self-play jobs -- in every replica, every
# Raft dump and every copy a non-voter takes.  Workers now store results cut the same
# way (jsontypes.capped_lists); this cuts what an older worker stored whole.
LEDGER_LIST_MAX = RESULT_LIST_MAX


def ledger_result(value: Mapping[str, object] | Mapping[object, object]) -> dict[str, object]:
    """:func:`plain_dict` of a result, each list of it cut to LEDGER_LIST_MAX items with
    its length beside it (``<key>_count``): a result an older worker stored whole."""
    return capped_lists(plain_dict(value), LEDGER_LIST_MAX)


def plain_dict(value: Mapping[str, object] | Mapping[object, object]) -> dict[str, object]:
    """:func:`plain` of a result dict."""
    return {str(k): plain(v) for k, v in value.items()}


def plain(value: object) -> object:
    """JSON-shaped copy (the ledger holds plain data only)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    return str(value)


__all__ = ["FINAL_STATES", "RECORD_KIND", "Interpreter", "TickReport", "ledger_result", "plain"]
