"""The scheduler loop: runs on every coordinator, acts only while leader, fences every effect.

Each tick every coordinator re-reads the ledger into its read model, a
:class:`~ringrift_fleet.scheduler.readmodel.LedgerView` (followers too, so a new
leader plans within one tick of winning).  The leader then

1. marks its leadership in the ledger (the first write of a new term, so a
   deposed leader's writes are refused from there on);
2. has the :class:`~ringrift_fleet.scheduler.interpreter.Interpreter` record what
   the broker says about live attempts (started, finished, failed) into the
   ledger and send attempts the ledger placed but no send reached the broker (a
   predecessor died between the two, or the broker failed the send);
3. reads which started attempts still have a run lease (or a stored result):
   one that has neither was run by a worker that died, and ``plan`` re-places
   it under a new attempt;
4. builds a :class:`Snapshot`, calls the pure ``plan`` and has the interpreter
   apply the actions in order, stopping at the first ledger write that is
   refused.

Every effect goes through the interpreter's typed ports
(:mod:`ringrift_fleet.scheduler.ports`): the ledger, the broker-side fence store
(:mod:`ringrift_fleet.scheduler.slots`), the sender, the result backend, the
notifier and the clock.  The fleet simulation runs this same class on in-memory
ports.

Every coordinator pings the broker each tick: while it is down the tick stops
after reading the ledger (nothing can move without it), and failures are logged
once per kind per minute with a count (:class:`BrokerHealth`), not per tick.
Deaths from membership are picked up by the next tick, well within the 2 s the
lost-job promise allows.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import redis

from ringrift_fleet.consensus.api import Leadership, Ledger
from ringrift_fleet.execution.broker import BROKER_ERRORS, BrokerHealth, url_of
from ringrift_fleet.execution.fencing import SLOT_PREFIX as SLOT_PREFIX  # re-exported
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.metrics import SchedulerCounts
from ringrift_fleet.models import JobStatus
from ringrift_fleet.scheduler.actions import Action
from ringrift_fleet.scheduler.history import SUMMARY_KIND, fold
from ringrift_fleet.scheduler.interpreter import FINAL_STATES as FINAL_STATES
from ringrift_fleet.scheduler.interpreter import Interpreter, TickReport
from ringrift_fleet.scheduler.policy import plan
from ringrift_fleet.scheduler.ports import (
    Clock,
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
    model_sources,
    run_seconds,
    task_kwargs,
)
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.slots import RedisSlots
from ringrift_fleet.scheduler.snapshot import Host, Snapshot

log = logging.getLogger(__name__)

LEADER_KIND = "scheduler.leader"
FULL_READ_EVERY_S = 300.0  # the view re-reads the whole ledger this often anyway
# ... give or take this fraction, drawn each time: coordinators started together
# read in step otherwise, every one copying its replica in the same second
# (on the soak's shared cores, 30 at once stalled voters for seconds)
FULL_READ_JITTER = 0.25
# a death a follower saw this recently is announced by it if it becomes leader (the
# leader then may have been the one that died, or died before its next tick)
NOTIFY_HANDOFF_S = 10.0

ResultReader = Results  # the older name
T = TypeVar("T")

__all__ = [
    "FULL_READ_EVERY_S",
    "LEADER_KIND",
    "RECORD_KIND",
    "SLOT_PREFIX",
    "Beat",
    "LedgerView",
    "ResultReader",
    "Sender",
    "TickReport",
    "model_sources",
    "run_seconds",
    "task_kwargs",
]


class _Effect(Generic[T]):
    """One of the interpreter's ports or counts, read and set as an attribute of the Beat."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, beat: Beat, owner: type | None = None) -> T:
        return cast(T, getattr(beat.effects, self.name))

    def __set__(self, beat: Beat, value: T) -> None:
        setattr(beat.effects, self.name, value)


class Beat:
    """One coordinator's scheduler.  ``tick()`` is synchronous; run it off the event loop.

    ``redis``: the broker's client (its fence store becomes a :class:`RedisSlots`);
    ``slots``: a fence store given directly (the simulation's in-memory one).
    Neither: no broker (consensus only): nothing is sent or read back.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        leadership: Leadership,
        policy: SchedulerPolicy,
        hosts: Callable[[], list[Host]],
        send: Sender,
        read_result: Results,
        read_results: ResultsMany | None = None,
        redis: redis.Redis | None = None,
        slots: Slots | None = None,
        address: Callable[[str], str | None] = lambda node: None,
        notify: Notifier | None = None,
        clock: Clock = time.time,
        fence_ttl_s: float | None = None,
        planner: Callable[[Snapshot], list[Action]] = plan,
    ) -> None:
        if slots is None and redis is not None:
            slots = RedisSlots(redis)
        self.ledger = ledger
        self.leadership = leadership
        self.slots = slots
        self.policy = policy
        self.hosts = hosts
        self.clock = clock
        self.planner = planner  # the pure decision: policy.plan (the simulation times it)
        self.view = LedgerView(policy)
        self._lock = threading.Lock()
        self._dead: dict[str, float] = {}
        self._newly_dead: set[str] = set()
        self._power: dict[str, float] = {}
        self.last: TickReport = TickReport(leader=False)
        self.events: list[tuple[float, str]] = []  # recent notable events, newest last
        self.pruned_total = 0  # finished jobs this coordinator folded away as leader
        self._rev = -1  # the replica revision the view has taken in
        self._pruned = 0  # the ledger's count of forgotten jobs at that revision
        self.full_read_every_s = FULL_READ_EVERY_S
        self.full_read_jitter = FULL_READ_JITTER
        self._rng = random.Random()
        self._next_full_read = 0.0
        self._next_prune = 0.0
        self.broker = BrokerHealth(slots.url if slots is not None else url_of(None))
        self._lease_gone: dict[str, tuple[int, float]] = {}  # job -> (attempt, first seen)
        self.effects = Interpreter(
            ledger=ledger,
            leadership=leadership,
            slots=slots,
            send=send,
            results=read_result,
            results_many=read_results,
            view=self.view,
            broker=self.broker,
            is_dead=self._dead.__contains__,
            event=self._event,
            address=address,
            notify=notify,
            fence_ttl_s=fence_ttl_s or 2 * max(policy.time_limits.values()) + 600,
        )

    # what the interpreter counts, under the names /status, /metrics and tests read

    @property
    def fence_ttl_s(self) -> float:
        return self.effects.fence_ttl_s

    @property
    def replicate(self) -> Callable[[], object]:
        """WAIT 1 <ms> after fence/slot writes when the broker has replicas."""
        return self.effects.replicate

    @replicate.setter
    def replicate(self, wait: Callable[[], object]) -> None:
        self.effects.replicate = wait

    @property
    def lost_messages(self) -> LostMessageFinder | None:
        """Finds sent attempts whose message a broker failover forgot (None: not looked for)."""
        return self.effects.lost_messages

    @lost_messages.setter
    def lost_messages(self, finder: LostMessageFinder | None) -> None:
        self.effects.lost_messages = finder

    send = _Effect[Sender]()  # the Sender port (a test may wrap it)
    address = _Effect[Callable[[str], "str | None"]]()  # host -> its artifact server URL
    notify = _Effect["Notifier | None"]()  # the Notifier port
    slots_refused = _Effect[int]()  # sends another leader had already made
    ledger_refusals = _Effect[int]()  # results the ledger would not take from us
    worker_refusals = _Effect[int]()  # results in which the worker refused the attempt
    term_refusals = _Effect[int]()  # our ledger writes refused (deposed, no quorum)
    lease_lost_total = _Effect[int]()  # attempts re-placed: their run lease vanished
    sends_deferred = _Effect[int]()  # sends the broker failed (sent again later)
    results_from_store = _Effect[int]()  # results read from the run store
    finished_before_release = _Effect[int]()  # voided too late: finished, result taken
    replaced = _Effect[Counter[tuple[str, str]]]()  # attempts placed again, by cause

    # -- membership ------------------------------------------------------------------------

    def on_membership(self, event: MembershipEvent) -> None:
        """A Membership listener: deaths release work at the next tick."""
        kind, node = event.kind, event.node
        with self._lock:
            # "left" (a coordinator stopped gracefully, e.g. a rolling restart) is not
            # "dead": its workers may still be running; if they are gone, their run
            # leases lapse and the policy re-places the jobs (LEASE_LOST)
            if kind == "dead":
                self._dead[node] = event.at or self.clock()
                self._newly_dead.add(node)
            elif kind in ("alive", "join"):
                self._dead.pop(node, None)
                self._newly_dead.discard(node)  # back before we said it: nothing to say

    def _forget_told_deaths(self) -> None:
        """On a follower's tick: deaths older than NOTIFY_HANDOFF_S were the leader's
        to announce.  Kept, they made every new leader announce, on its first tick,
        each host that had died (and come back) while it followed: in the 30-host
        soak a leader change sent "Host offline" for five hosts that were all up."""
        with self._lock:
            now = self.clock()
            self._newly_dead = {
                n
                for n in self._newly_dead
                if n in self._dead and now - self._dead[n] < NOTIFY_HANDOFF_S
            }

    # -- one tick ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the view up to the local replica: only what changed, except for a
        full read now and then (and whenever the replica's revision went back,
        i.e. it was replaced by a snapshot), so nothing can drift for long."""
        now = self.clock()
        since = self._rev
        if now >= self._next_full_read:
            since = -1
            spread = self._rng.uniform(-1.0, 1.0) * self.full_read_jitter
            self._next_full_read = now + self.full_read_every_s * (1.0 + spread)
        kinds = (RECORD_KIND, SUMMARY_KIND, LOST_KIND)
        c = self.ledger.read_since(kinds, since)
        if c.rev < self._rev:
            c, since = self.ledger.read_since(kinds, -1), -1
        power = lambda n: self._power.get(n, 1.0)  # noqa: E731
        recs, hist = c.records[RECORD_KIND], c.records[SUMMARY_KIND]
        if since < 0:
            self.view.refresh(c.items, recs, now, power, hist)
        else:
            forgot = c.pruned != self._pruned  # a forgotten id may even be back already
            gone = c.vanished(self.view.items)
            self.view.update(c.items, gone, recs, now, power, hist, forgot=forgot)
        self.view.take_lost(c.records.get(LOST_KIND, {}).get(LOST_KEY))
        self._pruned = c.pruned
        self._rev = c.rev

    def _broker_up(self) -> bool:
        """One PING per tick: broker up/down for /status, and whether to go on."""
        if self.slots is None:
            return True
        try:
            self.slots.ping()
        except BROKER_ERRORS as exc:
            self.broker.failed("ping", exc)
            return False
        self.broker.ok()
        return True

    def tick(self) -> TickReport:
        report = TickReport(leader=False)
        self.effects.broker_failed = False
        try:
            self.refresh()
            up = self._broker_up()
            if not self.leadership.is_leader():
                self.effects.fence = None
                self._forget_told_deaths()
                self.last = report
                return report
            report.leader = True
            if not up:
                report.error = f"broker down: {self.broker.last_error}"
                self.last = report
                return report
            fence = self.leadership.fence_token()
            newly_leader = fence != self.effects.fence
            if newly_leader:
                # like Raft's no-op entry: the first write of a new term, so a
                # deposed leader's writes are refused from here on
                mark = {"node": self.ledger.node_id, "fence": fence}
                if not self.ledger.put_record(
                    LEADER_KIND, "current", {**mark, "since": self.clock()}
                ):
                    report.refused.append(f"leader record: {self.ledger.last_error}")
                    self.effects.term_refusals += 1
                    self.last = report
                    return report
                self._event(f"leading with fence {fence}")
            self.effects.fence = fence
            hosts = self.hosts()
            self._power.update({h.node_id: h.gpu_power for h in hosts})
            report.recorded = self.collect()
            if report.recorded or newly_leader:
                self.refresh()
            with self._lock:
                dead = frozenset(self._dead)
                newly = frozenset(self._newly_dead)
                self._newly_dead.clear()
            lease_gone = self.read_leases(dead)
            snap = Snapshot(
                now=self.clock(),
                hosts=tuple(h for h in hosts if h.node_id not in dead),
                dead=dead,
                jobs=tuple(self.view.live_jobs()),
                outcomes=self.view.outcomes(),
                games=dict(self.view.games),
                states=dict(self.view.states),
                usage=self.view.usage.totals(self.clock()),
                job_seconds=dict(self.view.job_seconds),
                newly_dead=newly,
                lease_gone=lease_gone,
                policy=self.policy,
                champion_hosts={
                    k: self.view.model_hosts(k, st.champion)
                    for k, st in self.view.states.items()
                    if st.champion
                },
            )
            self.apply(self.planner(snap), report)
            self.effects.flush()  # one WAIT 1 covers every send of the tick
            if self.clock() >= self._next_prune:
                self._next_prune = self.clock() + self.policy.prune_interval_s
                report.pruned = self.prune()
                if report.pruned >= self.policy.prune_batch:
                    # a full batch: more may be waiting, so the next batch on the next
                    # tick, not an interval later.  One batch a minute (512) fell behind
                    # a 30-host soak's 780 jobs a minute, and the count cap stopped
                    # bounding the ledger (27,062 jobs held against a cap of 20,000).
                    self._next_prune = self.clock()
        except BROKER_ERRORS as exc:  # logged once a minute per kind, not per tick
            self.broker.failed("scheduler tick", exc)
            report.error = f"broker: {type(exc).__name__}: {exc}"
        except Exception as exc:  # a bad tick must not stop the coordinator
            log.exception("scheduler tick failed")
            report.error = f"{type(exc).__name__}: {exc}"
        self.last = report
        return report

    # -- run leases: a worker that died on a live host ------------------------------------

    def read_leases(self, dead: frozenset[str]) -> dict[str, float]:
        """Running attempts (on hosts not declared dead) that have neither a run lease
        nor a stored result, with when this leader first saw that.  A broker error
        leaves the picture as it was (unknown is not gone)."""
        running = {
            w.work_id: w.attempts
            for w in self.view.active.values()
            if w.status is JobStatus.RUNNING and w.claimed_by and w.claimed_by not in dead
        }
        for job in [j for j in self._lease_gone if j not in running]:
            del self._lease_gone[job]
        if self.slots is None or not running:
            return {}
        try:
            held = self.slots.lease_states(sorted(running))
        except BROKER_ERRORS as exc:
            self.broker.failed("read run leases", exc)
            return {}
        now = self.clock()
        for job, attempt in running.items():
            if held.get(job, True):
                self._lease_gone.pop(job, None)
                continue
            seen = self._lease_gone.get(job)
            if seen is None or seen[0] != attempt:
                self._lease_gone[job] = (attempt, now)
        return {job: since for job, (_, since) in self._lease_gone.items()}

    # -- forgetting finished jobs --------------------------------------------------------------

    def prune(self) -> int:
        """Fold jobs finished over ``ledger_retention_s`` ago, and the oldest beyond
        ``ledger_max_finished`` finished jobs, into the history records and forget
        them, one bounded batch at a time (leader only; see history.py).

        Jobs a config's training cycle still points at are kept whatever their age.
        """
        before = self.clock() - self.policy.ledger_retention_s
        keep = frozenset(
            j for k, st in self.view.states.items() if (j := st.stage_job_id(k)) is not None
        )
        cap = self.policy.ledger_max_finished
        ids = self.ledger.prunable(before, keep, cap, self.policy.prune_batch)
        if not ids:
            return 0
        forgotten, recs = self.ledger.read_items(ids, (SUMMARY_KIND,))
        champions = {k: st.champion for k, st in self.view.states.items()}
        pruned = self.ledger.prune_work(ids, fold(recs[SUMMARY_KIND], forgotten, champions))
        if pruned is None:
            log.warning("pruning %d finished jobs refused: %s", len(ids), self.ledger.last_error)
            return 0
        self.pruned_total += int(pruned)
        return int(pruned)

    # -- broker -> ledger ------------------------------------------------------------------------

    def collect(self) -> int:
        """Task states of live attempts into the ledger, unsent attempts sent
        (:meth:`Interpreter.collect`); returns how many ledger entries changed."""
        return self.effects.collect()

    def apply(self, actions: list[Action], report: TickReport) -> None:
        """Apply ``plan``'s actions in order (:meth:`Interpreter.apply`)."""
        self.effects.apply(actions, report)

    def counts(self) -> SchedulerCounts:
        """What /metrics shows of this scheduler (read from the scrape's thread)."""
        return SchedulerCounts(
            durations=self.view.durations.snapshot(),
            buckets=self.view.durations.buckets,
            replacements=dict(self.replaced),
            fence_refusals={
                "send_slot": self.slots_refused,
                "ledger_result": self.ledger_refusals,
                "worker": self.worker_refusals,
                "leader_term": self.term_refusals,
            },
        )

    def _event(self, text: str) -> None:
        self.events.append((self.clock(), text))
        del self.events[:-200]
        log.info("%s", text)

    # -- /status --------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "leader": self.last.leader,
            "last_tick": {
                "actions": dict(self.last.actions),
                "refused": self.last.refused,
                "recorded": self.last.recorded,
                "pruned": self.last.pruned,
                "error": self.last.error,
            },
            "games": dict(self.view.games),
            "pruned_jobs": self.pruned_total,
            "configs": {k: s.to_dict() for k, s in self.view.states.items()},
            "dead_hosts": sorted(self._dead),
            "lease_lost_replaced": self.lease_lost_total,
            "results_from_store": self.results_from_store,
            "finished_before_release": self.finished_before_release,
            "sends_deferred": self.sends_deferred,
            "events": [{"at": t, "text": s} for t, s in self.events[-20:]],
        }

    def broker_status(self) -> dict[str, object]:
        """The ``broker`` section of /status: up/down as this coordinator last saw it."""
        return self.broker.status()
