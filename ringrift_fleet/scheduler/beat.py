"""The scheduler loop: runs on every coordinator, acts only while leader, fences every effect.

Each tick every coordinator re-reads the ledger into a :class:`LedgerView`
(followers too, so a new leader plans within one tick of winning).  The leader
then

1. records what the broker says about live attempts (started, finished,
   failed) into the ledger — results count only through ``accept_result``,
   which refuses any attempt but the live one;
2. every tick, sends attempts the ledger placed but no send reached the broker
   (a predecessor died between the two, or the broker failed the send), so a
   broker error delays a send by at most one tick after the broker is back;
3. reads which started attempts still have a run lease (or a stored result):
   one that has neither was run by a worker that died, and ``plan`` re-places
   it under a new attempt (its unacknowledged message is discarded, not left
   to the visibility timeout);
4. builds a :class:`Snapshot`, calls the pure ``plan`` and applies the actions
   in order, stopping at the first ledger write that is refused (a deposed
   leader's writes are refused by term, so it stops there).

Every coordinator pings the broker each tick: while it is down the tick stops
after reading the ledger (nothing can move without it), and failures are logged
once per kind per minute with a count (:class:`BrokerHealth`), not per tick.

Sending an attempt is fenced twice: ``SET NX ringrift:slot:<job>#<attempt>``
(two leaders that both think they lead cannot both send it; the value moves
from ``<leader fence>|claimed`` to ``|sent`` once the send returned) and the
attempt's fence token published before the send (a worker refuses every other
attempt of the job).  Deaths from membership are picked up by the next tick,
well within the 2 s the lost-job promise allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ringrift_fleet.execution.broker import BROKER_ERRORS, BrokerHealth, discard_unacked, url_of
from ringrift_fleet.execution.fencing import SLOT_PREFIX as SLOT_PREFIX  # re-exported
from ringrift_fleet.execution.fencing import notified_key, slot_key
from ringrift_fleet.execution.jobs import MAX_SOURCES
from ringrift_fleet.metrics import JobDurations, SchedulerCounts
from ringrift_fleet.models import JobStatus, JobType, WorkItem, games_prefix
from ringrift_fleet.scheduler.actions import (
    HOST_DEAD,
    LEASE_LOST,
    Action,
    Dispatch,
    Enqueue,
    FailJob,
    Notify,
    Release,
    SetState,
)
from ringrift_fleet.scheduler.fairshare import UsageWindow
from ringrift_fleet.scheduler.history import SUMMARY_KIND, History, config_of, fold, summarise
from ringrift_fleet.scheduler.policy import plan
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import ConfigState, Host, Job, Outcome, Snapshot, Stage

log = logging.getLogger(__name__)

RECORD_KIND = "scheduler.config"
LEADER_KIND = "scheduler.leader"
FULL_READ_EVERY_S = 300.0  # the view re-reads the whole ledger this often anyway
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})  # Celery's: the attempt ended


class Sender(Protocol):
    """How an attempt reaches the broker (the execution layer's send_job)."""

    def __call__(
        self,
        job_type: JobType,
        kwargs: Mapping[str, Any],
        *,
        queue: str,
        job_id: str,
        fence: Mapping[str, Any],
    ) -> str: ...


ResultReader = Callable[[str], "tuple[str, Any]"]  # task id -> (Celery state, result)


# --- the ledger, parsed -----------------------------------------------------------------


class LedgerView:
    """The ledger as the planner needs it, kept warm on every coordinator.

    Counts that outlive a job (games, hosts holding games and models, self-play
    ids) come from the history records plus the jobs the ledger still holds;
    fair-share usage and observed job lengths are folded in once per completed
    job.  A tick reads only the items changed since the last one (plus the ids
    held) and adds each newly finished job's part once; only a prune (jobs
    leaving for the records) costs a pass over every item.
    """

    def __init__(self, policy: SchedulerPolicy) -> None:
        self.policy = policy
        self.started: dict[str, float] = {}  # job id -> when first seen running
        self.counted: set[str] = set()
        self.games: Counter[str] = Counter()
        self.usage = UsageWindow(policy.fairshare_window_s)
        self.job_seconds: dict[str, float] = {}
        self.items: dict[str, WorkItem] = {}
        self.states: dict[str, ConfigState] = {}
        self.history: dict[str, History] = {}
        self._recorded: dict[str, Any] = {}
        self._live: dict[str, History] = {}  # what the held jobs add up to, per config
        # run time of each job seen completing (ringrift_job_duration_seconds); jobs
        # already complete at the first read are not counted again after a restart
        self.durations = JobDurations()
        self._primed = False

    def refresh(
        self,
        items: Iterable[WorkItem],
        records: Mapping[str, Mapping[str, Any]],
        now: float,
        power_of: Callable[[str], float],
        history: Mapping[str, Any] | None = None,
    ) -> None:
        """Read the whole ledger afresh."""
        items = list(items)
        ids = frozenset(w.work_id for w in items)
        self.counted &= ids
        for gone in [k for k in self.started if k not in ids]:
            del self.started[gone]
        self.items = {}
        self._live = {}
        self.update(items, ids, records, now, power_of, history)

    def update(
        self,
        changed: Iterable[WorkItem],
        ids: frozenset[str],
        records: Mapping[str, Mapping[str, Any]],
        now: float,
        power_of: Callable[[str], float],
        history: Mapping[str, Any] | None = None,
        *,
        forgot: bool = False,
    ) -> None:
        """Take in what changed: ``changed`` items, ``ids`` of every item the ledger
        holds now (the others were forgotten: their history records count them).
        ``forgot``: the ledger forgot jobs since the last update, whether or not
        their ids are gone (one may have been added anew already)."""
        dirty = False
        if not ids.issuperset(self.items):
            for gone in [k for k in self.items if k not in ids]:
                del self.items[gone]
                self.counted.discard(gone)
                self.started.pop(gone, None)
            forgot = True
        for w in changed:
            dirty = True
            old = self.items.get(w.work_id)
            self.items[w.work_id] = w
            if w.status is not JobStatus.COMPLETED:
                self.counted.discard(w.work_id)  # a new job under a forgotten job's id
            if not forgot and (old is None or not old.status.is_terminal):
                # a finished job never changes again: its part is added once
                self._live.setdefault(config_of(w), History()).add(w)
            if w.status is JobStatus.RUNNING:
                self.started.setdefault(w.work_id, w.updated_at or now)
            elif w.status is JobStatus.COMPLETED and w.work_id not in self.counted:
                self.counted.add(w.work_id)
                if self._primed:
                    self.durations.observe(w.work_type.value, run_seconds(w, self.started, now))
                self._count(w, power_of)
        self._primed = True
        if forgot:
            # jobs left for the history records: the one pass over every item,
            # once per prune rather than once per tick
            self._live = summarise(self.items.values())
            dirty = True
        recorded = dict(history or {})
        if dirty or recorded != self._recorded:
            self.history = {
                k: History.from_dict(recorded.get(k)).merged(self._live.get(k, History()))
                for k in sorted(set(recorded) | set(self._live))
            }
            self.games = Counter({k: h.games for k, h in self.history.items() if h.games})
            self._recorded = recorded
        states = {}
        for key, raw in records.items():
            try:
                states[key] = ConfigState.from_dict(raw, f"{RECORD_KIND}.{key}")
            except Exception as exc:  # a bad record must not stop scheduling
                log.warning("ignoring malformed scheduler record %s: %s", key, exc)
        for c in self.policy.configs:
            st = states.get(c.key, ConfigState())
            seq = self.history[c.key].selfplay_seq if c.key in self.history else 0
            if seq > st.selfplay_seq:
                # ids the ledger has seen are never reused, whatever the record says
                st = st.but(selfplay_seq=seq)
            states[c.key] = st
        self.states = states

    def _count(self, w: WorkItem, power_of: Callable[[str], float]) -> None:
        if w.work_type is not JobType.SELFPLAY:
            return
        result = w.result or {}
        key = str(w.payload.get("config", ""))
        end = w.updated_at or time.time()
        start = self.started.pop(w.work_id, w.created_at)
        node = str(result.get("node") or w.claimed_by or "")
        power = power_of(node)
        self.usage.add(key, start, end, power)
        d = max(0.0, end - start) * power
        prev = self.job_seconds.get(key)
        self.job_seconds[key] = d if prev is None else 0.9 * prev + 0.1 * d

    def type_of(self, job_id: str) -> str:
        w = self.items.get(job_id)
        return w.work_type.value if w is not None else "unknown"

    def live_jobs(self) -> list[Job]:
        out = []
        for w in self.items.values():
            if w.status.is_terminal:
                continue
            p = w.payload
            out.append(
                Job(
                    job_id=w.work_id,
                    job_type=w.work_type,
                    config_key=str(p.get("config", "")),
                    status=w.status,
                    attempt=w.attempts,
                    max_attempts=w.max_attempts,
                    node_id=w.claimed_by,
                    enqueued_at=w.created_at,
                    started_at=self.started.get(w.work_id)
                    if w.status is JobStatus.RUNNING
                    else None,
                    hard_limit_s=float(p.get("hard_limit_s", 7200.0)),
                    kwargs=dict(p.get("kwargs", {})),
                )
            )
        return out

    def outcomes(self) -> dict[str, Outcome]:
        out = {}
        for c in self.policy.configs:
            job_id = self.states.get(c.key, ConfigState()).stage_job_id(c.key)
            w = self.items.get(job_id or "")
            if w is None or not w.status.is_terminal:
                continue
            out[w.work_id] = Outcome(
                w.work_id,
                w.status is JobStatus.COMPLETED,
                dict(w.result or {}),
                error=w.error or w.status.value,
                node_id=w.claimed_by,
            )
        return out

    def model_hosts(self, key: str, model: str | None) -> frozenset[str]:
        """Hosts that hold ``model``: where it was trained, and where a sync delivered it."""
        h = self.history.get(key)
        if not model or h is None:
            return frozenset()
        return frozenset(h.models.get(model, ()))

    def game_sources(self, key: str) -> dict[str, int]:
        """Hosts that made games files of a config, with how many each made."""
        h = self.history.get(key)
        return dict(h.game_nodes) if h else {}


# --- logical jobs -> task arguments --------------------------------------------------------


def task_kwargs(
    a: Enqueue | Dispatch,
    view: LedgerView,
    address: Callable[[str], str | None],
) -> dict[str, Any] | None:
    """The execution layer's arguments for a planned job; None when there is nothing to do."""
    k = dict(a.kwargs)
    base = {"board_type": k.get("board_type"), "num_players": k.get("num_players")}
    if a.job_type is JobType.SELFPLAY:
        out = {**base, "num_games": k.get("num_games", 1)}
        if k.get("model"):
            out["model"] = k["model"]
        return out
    if a.job_type is JobType.TRAINING:
        return {**base, "version": int(k.get("generation", 1)), "min_games": 1}
    if a.job_type is JobType.EVALUATION:
        out = {
            **base,
            "candidate": k.get("candidate"),
            "champion": k.get("champion") or "random",
            "games": int(k.get("games", 20)),
        }
        sources = model_sources(a, view, address, (out["candidate"], out["champion"]))
        if sources:
            out["model_sources"] = sources
        return out
    if k.get("kind") == "model":
        src = address(str(k.get("source")))
        if not src or not k.get("model"):
            return None
        return {"artifacts": [k["model"]], "source": src}
    # games of this config made elsewhere: every games file each host that made
    # some holds, the host that made most first (each adds what the others lacked)
    target = str(k.get("target", a.node_id))
    made = {n: c for n, c in view.game_sources(a.config_key).items() if n != target}
    urls = [u for n in sorted(made, key=lambda n: (-made[n], n)) if (u := address(n))]
    if not urls:
        return None
    return {"prefix": games_prefix(a.config_key), "source": urls[:MAX_SOURCES]}


def model_sources(
    a: Enqueue | Dispatch,
    view: LedgerView,
    address: Callable[[str], str | None],
    models: Iterable[object],
) -> list[str]:
    """Where the evaluation host fetches the models it is not known to hold: the
    URLs of the hosts known to hold them (see workloads/evaluation.py); [] when
    it holds them all, so the task stays what older workers accept."""
    urls: list[str] = []
    for m in models:
        if not isinstance(m, str) or not m or m == "random":
            continue
        holders = view.model_hosts(a.config_key, m)
        if a.node_id in holders:
            continue
        for node in sorted(holders):
            url = address(node)
            if url and url not in urls:
                urls.append(url)
    return urls[:MAX_SOURCES]


def run_seconds(w: WorkItem, started: Mapping[str, float], now: float) -> float:
    """How long a completed job ran: as its worker measured it (``run_seconds`` in the
    result), else from when this node first saw it running (or was created) to its end."""
    measured = (w.result or {}).get("run_seconds")
    if isinstance(measured, (int, float)) and not isinstance(measured, bool) and measured >= 0:
        return float(measured)
    end = w.updated_at or now
    return max(0.0, end - started.get(w.work_id, w.created_at))


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class TickReport:
    leader: bool
    actions: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    recorded: int = 0
    pruned: int = 0
    error: str | None = None


class Beat:
    """One coordinator's scheduler.  ``tick()`` is synchronous; run it off the event loop."""

    def __init__(
        self,
        *,
        ledger: Any,
        leadership: Any,
        redis: Any,
        policy: SchedulerPolicy,
        hosts: Callable[[], list[Host]],
        send: Sender,
        read_result: ResultReader,
        address: Callable[[str], str | None] = lambda node: None,
        notify: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.time,
        fence_ttl_s: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.leadership = leadership
        self.redis = redis
        self.policy = policy
        self.hosts = hosts
        self.send = send
        self.read_result = read_result
        self.address = address
        self.notify = notify
        self.clock = clock
        self.fence_ttl_s = fence_ttl_s or 2 * max(policy.time_limits.values()) + 600
        self.view = LedgerView(policy)
        self._lock = threading.Lock()
        self._dead: dict[str, float] = {}
        self._newly_dead: set[str] = set()
        self._fence: str | None = None
        self._power: dict[str, float] = {}
        self.last: TickReport = TickReport(leader=False)
        self.events: list[tuple[float, str]] = []  # recent notable events, newest last
        self.slots_refused = 0  # sends another leader had already made
        self.ledger_refusals = 0  # results the ledger would not take from us (fence, term)
        self.pruned_total = 0  # finished jobs this coordinator folded away as leader
        self._rev = -1  # the replica revision the view has taken in
        self._pruned = 0  # the ledger's count of forgotten jobs at that revision
        self.full_read_every_s = FULL_READ_EVERY_S
        # WAIT 1 <ms> after fence/slot writes when the broker has replicas (Sentinel
        # set; redis_clients.ReplicaWait): an acknowledged fence survives a failover.
        self.replicate: Callable[[], Any] = lambda: True
        self._unreplicated = False  # sends this tick not yet covered by a WAIT
        # Sent attempts whose message a broker failover forgot (broker.LostMessages):
        # sent again under the same attempt and fence.  None: not looked for.
        self.lost_messages: Any = None
        self._next_full_read = 0.0
        self._next_prune = 0.0
        self.broker = BrokerHealth(url_of(redis))
        self._broker_failed = False  # a broker operation failed in this tick: send no more
        self._lease_gone: dict[str, tuple[int, float]] = {}  # job -> (attempt, first seen)
        self._sent_unmarked: set[tuple[str, int]] = set()  # sent, "|sent" mark not written
        self.lease_lost_total = 0  # attempts re-placed because their run lease vanished
        self.sends_deferred = 0  # sends the broker failed (each sent again in a later tick)
        self.results_from_store = 0  # results read from the run store: Celery's was lost
        # for /metrics (ringrift_fleet.metrics.SchedulerCollector): attempts placed again,
        # by (job type, cause), and effects a fence refused, by where
        self.replaced: Counter[tuple[str, str]] = Counter()
        self.worker_refusals = 0  # results in which the worker refused the attempt
        self.term_refusals = 0  # our ledger writes refused (deposed, no quorum)

    # -- membership ------------------------------------------------------------------------

    def on_membership(self, event: Any) -> None:
        """A Membership listener: deaths release work at the next tick."""
        kind, node = getattr(event, "kind", ""), getattr(event, "node", "")
        with self._lock:
            # "left" (a coordinator stopped gracefully, e.g. a rolling restart) is not
            # "dead": its workers may still be running; if they are gone, their run
            # leases lapse and the policy re-places the jobs (LEASE_LOST)
            if kind == "dead":
                self._dead[node] = getattr(event, "at", 0.0) or self.clock()
                self._newly_dead.add(node)
            elif kind in ("alive", "join"):
                self._dead.pop(node, None)

    # -- one tick ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the view up to the local replica: only what changed, except for a
        full read now and then (and whenever the replica's revision went back,
        i.e. it was replaced by a snapshot), so nothing can drift for long."""
        now = self.clock()
        since = self._rev
        if now >= self._next_full_read:
            since = -1
            self._next_full_read = now + self.full_read_every_s
        kinds = (RECORD_KIND, SUMMARY_KIND)
        c = self.ledger.read_since(kinds, since)
        if c.rev < self._rev:
            c, since = self.ledger.read_since(kinds, -1), -1
        power = lambda n: self._power.get(n, 1.0)  # noqa: E731
        recs, hist = c.records[RECORD_KIND], c.records[SUMMARY_KIND]
        if since < 0:
            self.view.refresh(c.items, recs, now, power, hist)
        else:
            forgot = c.pruned != self._pruned  # a forgotten id may even be back already
            self.view.update(c.items, c.ids, recs, now, power, hist, forgot=forgot)
        self._pruned = c.pruned
        self._rev = c.rev

    def _broker_up(self) -> bool:
        """One PING per tick: broker up/down for /status, and whether to go on."""
        if self.redis is None:
            return True
        try:
            self.redis.ping()
        except BROKER_ERRORS as exc:
            self.broker.failed("ping", exc)
            return False
        self.broker.ok()
        return True

    def tick(self) -> TickReport:
        report = TickReport(leader=False)
        self._broker_failed = False
        try:
            self.refresh()
            up = self._broker_up()
            if not self.leadership.is_leader():
                self._fence = None
                self.last = report
                return report
            report.leader = True
            if not up:
                report.error = f"broker down: {self.broker.last_error}"
                self.last = report
                return report
            fence = self.leadership.fence_token()
            newly_leader = fence != self._fence
            if newly_leader:
                # like Raft's no-op entry: the first write of a new term, so a
                # deposed leader's writes are refused from here on
                mark = {"node": getattr(self.ledger, "node_id", ""), "fence": fence}
                if not self.ledger.put_record(
                    LEADER_KIND, "current", {**mark, "since": self.clock()}
                ):
                    report.refused.append(f"leader record: {self.ledger.last_error}")
                    self.term_refusals += 1
                    self.last = report
                    return report
                self._event(f"leading with fence {fence}")
            self._fence = fence
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
            self.apply(plan(snap), report)
            if self._unreplicated:  # one WAIT 1 covers every send of the tick
                self._unreplicated = False
                self.replicate()
            if self.clock() >= self._next_prune:
                self._next_prune = self.clock() + self.policy.prune_interval_s
                report.pruned = self.prune()
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
        from ringrift_fleet.execution.fencing import lease_states

        running = {
            w.work_id: w.attempts
            for w in self.view.items.values()
            if w.status is JobStatus.RUNNING and w.claimed_by and w.claimed_by not in dead
        }
        for job in [j for j in self._lease_gone if j not in running]:
            del self._lease_gone[job]
        if self.redis is None or not running:
            return {}
        try:
            held = lease_states(self.redis, sorted(running))
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
        ids = self.ledger.prunable(before, keep, cap)[: self.policy.prune_batch]
        if not ids:
            return 0
        forgotten, recs = self.ledger.read_items(ids, (SUMMARY_KIND,))
        pruned = self.ledger.prune_work(ids, fold(recs[SUMMARY_KIND], forgotten))
        if pruned is None:
            log.warning("pruning %d finished jobs refused: %s", len(ids), self.ledger.last_error)
            return 0
        self.pruned_total += int(pruned)
        return int(pruned)

    # -- broker -> ledger ------------------------------------------------------------------------

    def collect(self) -> int:
        """Fold task states of live attempts into the ledger, and send placed attempts
        no send reached the broker; returns how many ledger entries changed."""
        changed = 0
        if self.redis is None:  # no broker (consensus only): nothing was sent to read back
            return changed
        from ringrift_fleet.execution.dispatch import task_id_for

        stored = self._stored_results()
        if stored is None:
            return changed
        live: set[str] = set()  # task ids of the live attempts
        for w in list(self.view.items.values()):
            if not w.status.is_active or not w.claimed_by:
                continue
            current = self.ledger.current(w.work_id)
            if current is None or current.node_id != w.claimed_by:
                continue
            task_id = task_id_for(w.work_id, current.attempt)
            live.add(task_id)
            try:
                state, value = self.read_result(task_id)
            except BROKER_ERRORS as exc:
                self.broker.failed("read task results", exc)
                self._broker_failed = True
                return changed
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
            if state in ("STARTED", "PROGRESS", "RETRY") and w.status is JobStatus.CLAIMED:
                changed += bool(self.ledger.start_work(w.work_id, w.claimed_by))
                continue
            if state == "SUCCESS":
                result = value if isinstance(value, dict) else {"value": value}
                if result.get("status") == "refused":
                    reason = str(result.get("reason", "refused by the worker"))
                    ok = self.ledger.fail_work(w.work_id, reason, current.fence_token)
                    changed += bool(ok)
                    self.worker_refusals += 1
                    if ok:
                        self._replaced(w, "worker_refused")
                    continue
                if w.status is JobStatus.CLAIMED:
                    self.ledger.start_work(w.work_id, w.claimed_by)
                # the token the attempt ran under, not ours: a result sent by another
                # leader's assignment is refused by this ledger's fence
                fence = result.get("fence")
                token = fence.get("token") if isinstance(fence, dict) else None
                ok = self.ledger.accept_result(
                    w.work_id, str(token or current.fence_token), _plain(result)
                )
                changed += bool(ok)
                self.ledger_refusals += not ok
                if ok:
                    self._event(f"{w.work_type.value} {w.work_id} completed on {w.claimed_by}")
            elif state in ("FAILURE", "REVOKED"):
                error = f"{type(value).__name__}: {value}" if value else state.lower()
                ok = self.ledger.fail_work(w.work_id, error, current.fence_token)
                changed += bool(ok)
                if ok and w.attempts < w.max_attempts:  # back to pending: tried again
                    self._replaced(w, "job_failed")
                self._event(f"{w.work_type.value} {w.work_id} failed: {error}")
        if self.lost_messages is not None:
            # what it noted about attempts that started or ended since (a worker had
            # taken the message, its run lease not yet there) would stay forever: one
            # entry per such job, for as long as the coordinator runs
            self.lost_messages.forget(live)
        return changed

    def _stored_results(self) -> dict[str, dict[str, Any]] | None:
        """Results the live attempts stored in the run store (fencing ``done`` keys),
        in one round trip; None when the broker failed."""
        from ringrift_fleet.execution.fencing import stored_results

        tokens = {}
        for w in self.view.items.values():
            if w.status.is_active and w.claimed_by:
                current = self.ledger.current(w.work_id)
                if current is not None and current.node_id == w.claimed_by:
                    tokens[w.work_id] = current.fence_token
        try:
            return stored_results(self.redis, tokens)
        except BROKER_ERRORS as exc:
            self.broker.failed("read stored results", exc)
            self._broker_failed = True
            return None

    # -- actions -----------------------------------------------------------------------------------

    def apply(self, actions: list[Action], report: TickReport) -> None:
        released_nodes: set[str] = set()
        for a in actions:
            ok = True
            if isinstance(a, SetState):
                ok = self.ledger.put_record(RECORD_KIND, a.config_key, a.state.to_dict())
                if ok and a.state.stage is not Stage.IDLE:
                    self._event(f"{a.config_key}: {a.state.stage.value} on {a.state.target_node}")
            elif isinstance(a, Enqueue):
                payload = {
                    "config": a.config_key,
                    "kwargs": dict(a.kwargs),
                    "hard_limit_s": a.hard_limit_s,
                }
                ok = self.ledger.add_work(
                    a.job_id, payload, work_type=a.job_type.value, max_attempts=a.max_attempts
                )
                if ok:
                    self._dispatch(a)
            elif isinstance(a, Dispatch):
                self._dispatch(a)
            elif isinstance(a, Release):
                self._withdraw(a.job_id)
                if a.node_id in self._dead:
                    if a.node_id not in released_nodes:
                        released_nodes.add(a.node_id)
                        jobs = self.ledger.reassign_jobs_of(a.node_id)
                        for job in jobs:
                            self.replaced[(self.view.type_of(job), "host_death")] += 1
                        self._event(f"host {a.node_id} dead: {len(jobs)} job(s) re-enqueued")
                else:
                    current = self.ledger.current(a.job_id)
                    token = current.fence_token if current else None
                    if self.ledger.fail_work(a.job_id, a.reason, token):
                        cause = "host_death" if a.cause == HOST_DEAD else a.cause
                        self.replaced[(self.view.type_of(a.job_id), cause)] += 1
                    if a.cause == LEASE_LOST:
                        self._drop_lost_delivery(a)
                    else:
                        self._event(f"{a.job_id} reaped: {a.reason}")
            elif isinstance(a, FailJob):
                self._withdraw(a.job_id)
                self.ledger.cancel_work(a.job_id)
                self._event(f"{a.job_id} given up: {a.reason}")
            elif isinstance(a, Notify):
                self._notify(a)
            report.actions[type(a).__name__] += 1
            if not ok:
                # refused (deposed, or no quorum): nothing after it may go out
                report.refused.append(f"{type(a).__name__}: {self.ledger.last_error}")
                self.term_refusals += 1
                log.info("scheduler stopped applying: %s", report.refused[-1])
                return

    def _dispatch(self, a: Enqueue | Dispatch) -> None:
        assignment = self.ledger.assign(a.job_id, a.node_id, a.job_type.value)
        if assignment is None:
            return
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
        from ringrift_fleet.execution.fencing import publish_fence

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
        if self._broker_failed:
            self.sends_deferred += 1
            return  # the broker failed earlier in this tick: the next tick sends it
        slot = slot_key(w.work_id, attempt)
        ttl = int(self.fence_ttl_s)
        mine = f"{self._fence}|claimed"
        try:
            if not self._take_slot(slot, mine, ttl):
                log.info("slot %s#%s already taken: not sending it again", w.work_id, attempt)
                self.slots_refused += 1
                return
            publish_fence(self.redis, w.work_id, token, self.fence_ttl_s)
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
            self._broker_failed = True
            self.sends_deferred += 1
            return
        except Exception as exc:  # the job itself cannot be sent: give the attempt back
            self.redis.delete(slot)
            self._withdraw(w.work_id)
            if self.ledger.fail_work(w.work_id, f"send failed: {exc}", token):
                self._replaced(w, "send_failed")
            self._event(f"{w.work_id}: send failed ({exc}); will place it again")
            return
        self._sent_unmarked.add((w.work_id, attempt))
        self._mark_sent(w.work_id, attempt)

    def _take_slot(self, slot: str, mine: str, ttl: int) -> bool:
        """Take the send slot, or find it already ours (our own send that failed)."""
        if self.redis.set(slot, mine, nx=True, ex=ttl):
            return True
        held = self.redis.get(slot)
        held = held.decode() if isinstance(held, bytes) else held
        return bool(held == mine)

    def _mark_sent(self, job_id: str, attempt: int) -> None:
        slot = slot_key(job_id, attempt)
        try:
            self.redis.set(slot, f"{self._fence}|sent", xx=True, ex=int(self.fence_ttl_s))
            # WAIT 1 at the end of the tick: the slots, fences and messages (replicated
            # in order) are then on a replica too (docs/deploy.md)
            self._unreplicated = True
        except BROKER_ERRORS as exc:
            self.broker.failed("mark sent", exc)
            self._broker_failed = True
            return  # remembered in _sent_unmarked: marked by a later tick, never re-sent
        self._sent_unmarked.discard((job_id, attempt))

    def _slot(self, job_id: str, attempt: int) -> str | None:
        raw = self.redis.get(slot_key(job_id, attempt))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def _reconcile_unsent(self, w: WorkItem, attempt: int, token: str) -> int:
        """A placed attempt with no task state yet (every tick).

        No slot: no leader ever sent it — send it now.  Slot ours and not marked
        sent: our own send failed (broker error) — send it again, same attempt.
        Another leader's slot never marked sent: it died between taking the slot
        and the send, so nobody knows if a copy is on the broker — void the
        attempt; the next attempt has a new fence, which any lost copy fails.
        """
        if self._broker_failed:
            return 0
        if (w.work_id, attempt) in self._sent_unmarked:
            self._mark_sent(w.work_id, attempt)
            return 0
        slot = self._slot(w.work_id, attempt)
        if slot is not None and slot.endswith("|sent"):
            return self._resend_if_lost(w, attempt, token)
        if slot is None or slot == f"{self._fence}|claimed":
            self._send(w, attempt, token)
            return 0
        self._withdraw(w.work_id)
        reason = "its leader died while sending it"
        ok = bool(self.ledger.fail_work(w.work_id, reason, token))
        if ok:
            self._replaced(w, "sender_died")
            self._event(f"{w.work_id} attempt {attempt}: {reason}; placed again")
        return int(ok)

    def _resend_if_lost(self, w: WorkItem, attempt: int, token: str) -> int:
        """Sent, no task state, and its message nowhere on the broker for a while (a
        failover forgot it): send it again, same attempt and fence (docs/deploy.md)."""
        if self.lost_messages is None:
            return 0
        from ringrift_fleet.execution.dispatch import task_id_for

        queue = str(w.payload.get("queue") or f"node.{w.claimed_by}")
        task_id = task_id_for(w.work_id, attempt)
        if not self.lost_messages.lost(queue, task_id, w.work_id):
            return 0
        dropped = discard_unacked(self.redis, [task_id])  # an orphaned copy, if any
        self._event(
            f"{w.work_id} attempt {attempt}: message lost by the broker; sent again"
            + (f" ({dropped} orphaned unacknowledged copy discarded)" if dropped else "")
        )
        slot, ttl = slot_key(w.work_id, attempt), int(self.fence_ttl_s)
        self.redis.set(slot, f"{self._fence}|claimed", xx=True, ex=ttl)
        self._send(w, attempt, token)
        return 0

    def _withdraw(self, job_id: str) -> None:
        """Void the job's live attempt on the broker: fence gone, revocation published
        (a worker still running it stops within a second)."""
        from ringrift_fleet.execution.fencing import withdraw_fence

        if self.redis is None:  # no broker (consensus only): no fence was published
            return
        withdraw_fence(self.redis, job_id)
        self.replicate()

    def _drop_lost_delivery(self, a: Release) -> None:
        """The dead worker's unacknowledged message of the voided attempt: discarded
        now instead of handed out again after the visibility timeout (hours)."""
        from ringrift_fleet.execution.dispatch import task_id_for

        dropped = discard_unacked(self.redis, [task_id_for(a.job_id, a.attempt)])
        self.lease_lost_total += 1
        self._event(
            f"{a.job_id} re-placed: {a.reason}; {dropped} unacknowledged message(s) discarded"
        )

    def _notify(self, n: Notify) -> None:
        slot = notified_key(n.slot)
        if self.redis is not None and not self.redis.set(
            slot, self._fence or "", nx=True, ex=7 * 86400
        ):
            return
        self._event(f"notify {n.event_type}: {n.title}")
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

    def status(self) -> dict[str, Any]:
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
            "sends_deferred": self.sends_deferred,
            "events": [{"at": t, "text": s} for t, s in self.events[-20:]],
        }

    def broker_status(self) -> dict[str, Any]:
        """The ``broker`` section of /status: up/down as this coordinator last saw it."""
        return self.broker.status()


def _plain(value: Any) -> Any:
    """JSON-shaped copy (the ledger holds plain data only)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    return str(value)
