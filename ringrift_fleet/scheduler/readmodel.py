"""The read model: the replicated ledger as the planner needs it.

:class:`LedgerView` is kept warm on every coordinator (followers too, so a new
leader plans within one tick of winning); the beat builds each ``plan``'s
:class:`~ringrift_fleet.scheduler.snapshot.Snapshot` from it.  It only reads: the
ledger's changes come in through :meth:`LedgerView.refresh` and
:meth:`LedgerView.update`, and nothing here writes anywhere.
:func:`task_kwargs` turns a planned job into the execution layer's arguments.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from ringrift_fleet.execution.jobs import MAX_SOURCES
from ringrift_fleet.metrics import JobDurations
from ringrift_fleet.models import JobStatus, JobType, WorkItem, games_prefix
from ringrift_fleet.scheduler.actions import Dispatch, Enqueue
from ringrift_fleet.scheduler.fairshare import UsageWindow
from ringrift_fleet.scheduler.history import History, config_of, summarise
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import ConfigState, Job, Outcome

log = logging.getLogger("ringrift_fleet.scheduler.beat")

RECORD_KIND = "scheduler.config"
# One record, LOST_KEY: job id -> attempts of it that ended with their whole worker's
# or host's death.  Only live jobs are in it (the leader drops the others whenever it
# writes it), so it stays as small as the ledger's live jobs.
LOST_KIND = "scheduler.lost"
LOST_KEY = "jobs"

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
        # job id -> when its live attempt started running, and which attempt that is
        # (a re-placed attempt runs from its own start, not its first attempt's)
        self.started: dict[str, float] = {}
        self._started_attempt: dict[str, int] = {}
        self.counted: set[str] = set()
        self.games: Counter[str] = Counter()
        self.usage = UsageWindow(policy.fairshare_window_s)
        self.job_seconds: dict[str, float] = {}
        self.items: dict[str, WorkItem] = {}
        self.lost: dict[str, int] = {}  # the LOST_KIND record, read each tick
        # the items not finished yet: what the leader's every-tick loops walk, so a
        # tick costs the live jobs, not the 20,000 finished ones the ledger may hold
        self.active: dict[str, WorkItem] = {}
        self.states: dict[str, ConfigState] = {}
        self.history: dict[str, History] = {}
        self._recorded: dict[str, object] = {}
        self._champions: dict[str, str] = {}  # the champions the history was trimmed for
        self._live: dict[str, History] = {}  # what the held jobs add up to, per config
        # run time of each job seen completing (ringrift_job_duration_seconds); jobs
        # already complete at the first read are not counted again after a restart
        self.durations = JobDurations()
        self._primed = False

    def refresh(
        self,
        items: Iterable[WorkItem],
        records: Mapping[str, Mapping[str, object]],
        now: float,
        power_of: Callable[[str], float],
        history: Mapping[str, object] | None = None,
    ) -> None:
        """Read the whole ledger afresh."""
        items = list(items)
        ids = frozenset(w.work_id for w in items)
        self.counted &= ids
        for gone in [k for k in self.started if k not in ids]:
            del self.started[gone]
            self._started_attempt.pop(gone, None)
        self.items = {}
        self.active = {}
        self._live = {}
        self.update(items, (), records, now, power_of, history)

    def update(
        self,
        changed: Iterable[WorkItem],
        gone: Iterable[str],
        records: Mapping[str, Mapping[str, object]],
        now: float,
        power_of: Callable[[str], float],
        history: Mapping[str, object] | None = None,
        *,
        forgot: bool = False,
    ) -> None:
        """Take in what changed: ``changed`` items, and the ids the ledger no longer
        holds (``gone``: forgotten, their history records count them).
        ``forgot``: the ledger forgot jobs since the last update, whether or not
        their ids are gone (one may have been added anew already)."""
        dirty = False
        for k in gone:
            if self.items.pop(k, None) is not None:
                self.active.pop(k, None)
                self.counted.discard(k)
                self.started.pop(k, None)
                self._started_attempt.pop(k, None)
                forgot = True
        for w in changed:
            dirty = True
            old = self.items.get(w.work_id)
            self.items[w.work_id] = w
            if w.status.is_terminal:
                self.active.pop(w.work_id, None)
            else:
                self.active[w.work_id] = w
            if w.status is not JobStatus.COMPLETED:
                self.counted.discard(w.work_id)  # a new job under a forgotten job's id
            if not forgot and (old is None or not old.status.is_terminal):
                # a finished job never changes again: its part is added once
                self._live.setdefault(config_of(w), History()).add(w)
            if w.status is JobStatus.RUNNING:
                if self._started_attempt.get(w.work_id) != w.attempts:
                    # the ledger stamps updated_at when an attempt starts running and
                    # not again until it leaves RUNNING
                    self._started_attempt[w.work_id] = w.attempts
                    self.started[w.work_id] = w.updated_at or now
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
        states = {}
        for key, raw in records.items():
            try:
                states[key] = ConfigState.from_dict(raw, f"{RECORD_KIND}.{key}")
            except Exception as exc:  # a bad record must not stop scheduling
                log.warning("ignoring malformed scheduler record %s: %s", key, exc)
        champions = {k: st.champion for k, st in states.items() if st.champion}
        recorded = dict(history or {})
        if dirty or recorded != self._recorded or champions != self._champions:
            self.history = {
                k: History.from_dict(recorded.get(k))
                .merged(self._live.get(k, History()))
                .trimmed((champions.get(k),))
                for k in sorted(set(recorded) | set(self._live))
            }
            self.games = Counter({k: h.games for k, h in self.history.items() if h.games})
            self._recorded = recorded
            self._champions = champions
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
        self._started_attempt.pop(w.work_id, None)
        node = str(result.get("node") or w.claimed_by or "")
        power = power_of(node)
        self.usage.add(key, start, end, power)
        # the worker's own run time when it sent one: a short job often starts and
        # ends between two ticks, so the leader's start is its creation, and the
        # time it sat queued would pass for run time (and shorten the queue ahead)
        d = run_seconds(w, {w.work_id: start}, end) * power
        prev = self.job_seconds.get(key)
        self.job_seconds[key] = d if prev is None else 0.9 * prev + 0.1 * d

    def take_lost(self, record: Mapping[str, object] | None) -> None:
        """The LOST_KIND record as read (a malformed entry is ignored, not fatal)."""
        self.lost = {
            str(k): v
            for k, v in (record or {}).items()
            if isinstance(v, int) and not isinstance(v, bool) and v > 0
        }

    def type_of(self, job_id: str) -> str:
        w = self.items.get(job_id)
        return w.work_type.value if w is not None else "unknown"

    def live_jobs(self) -> list[Job]:
        out = []
        for w in self.active.values():
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
                    lost=self.lost.get(w.work_id, 0),
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
) -> dict[str, object] | None:
    """The execution layer's arguments for a planned job; None when there is nothing to do."""
    k = dict(a.kwargs)
    base = {"board_type": k.get("board_type"), "num_players": k.get("num_players")}
    if a.job_type is JobType.SELFPLAY:
        out = {**base, "num_games": k.get("num_games", 1)}
        if k.get("model"):
            out["model"] = k["model"]
        return out
    if a.job_type is JobType.TRAINING:
        return {**base, "version": _count(k.get("generation"), 1), "min_games": 1}
    if a.job_type is JobType.EVALUATION:
        out = {
            **base,
            "candidate": k.get("candidate"),
            "champion": k.get("champion") or "random",
            "games": _count(k.get("games"), 20),
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


def _count(value: object, default: int) -> int:
    """A whole number from a job's kwargs (the ledger's copy: checked, not trusted)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


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
    if (
        isinstance(measured, (int, float))
        and not isinstance(measured, bool)
        and 0 <= measured < math.inf
    ):
        return float(measured)
    end = w.updated_at or now
    return max(0.0, end - started.get(w.work_id, w.created_at))
