# mypy: disallow-any-explicit
"""The interfaces the scheduler and the status server code against.

``Ledger`` is the job ledger whatever keeps it (Raft or the Bully leader's
SQLite file); ``Leadership`` answers who may schedule.  A backend supplies
three things — propose an operation, read its replica, say who leads — and
gets every typed method here, so the two backends cannot drift apart.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypedDict, runtime_checkable

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.histograms import LEDGER_OP_BUCKETS, Histogram
from ringrift_fleet.jsontypes import JSONMapping, JSONObject, json_copy
from ringrift_fleet.models import JobAssignment, JobStatus, JobType, WorkItem

log = logging.getLogger(__name__)

# Items a full read copies per hold of the replica's lock (~10 ms of copying).
FULL_READ_CHUNK = 200


@dataclass(frozen=True)
class NewJob:
    """A job to add and place at once (:meth:`Ledger.add_and_assign`)."""

    work_id: str
    payload: JSONMapping
    work_type: str
    node_id: str
    max_attempts: int = 3
    priority: int = 0

    def add_args(self) -> JSONMapping:
        return {
            "work_id": self.work_id,
            "payload": self.payload,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "work_type": self.work_type,
        }


@runtime_checkable
class Leadership(Protocol):
    """Who may schedule.  ``fence_token`` changes whenever leadership changes."""

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None: ...

    def term(self) -> int: ...

    def fence_token(self) -> str: ...


def leadership_fence(term: int, leader: str | None) -> str:
    return f"{term}:{leader or '-'}"


@dataclass(frozen=True)
class Changes:
    """A reader's catch-up with the replica (``Ledger.read_since``)."""

    items: list[WorkItem]  # work items changed after the revision asked about
    # every work item held now (the others were forgotten), when the forgotten ones
    # are not known one by one: a full read, or a reader below ``forgot_floor``
    ids: frozenset[str] | None
    records: dict[str, dict[str, JSONObject]]  # the records of the kinds asked for
    rev: int  # the replica's revision now
    pruned: int  # finished jobs forgotten so far (changes when a prune applies)
    forgotten: frozenset[str] = frozenset()  # ids forgotten since (when ids is None)

    def vanished(self, held: Mapping[str, object]) -> list[str]:
        """Which of the ids a reader ``held`` the ledger no longer holds (a forgotten
        id added anew since is among them: its new item is in ``items``)."""
        if self.ids is None:
            return [i for i in self.forgotten if i in held]
        if self.ids.issuperset(held):
            return []
        return [i for i in held if i not in self.ids]


def _work_item(d: sm.WorkRow) -> WorkItem:
    return WorkItem(
        work_id=d["work_id"],
        work_type=JobType(d["work_type"]),
        payload=json_copy(d["payload"]),
        priority=d["priority"],
        status=JobStatus(d["status"]),
        attempts=d["attempts"],
        max_attempts=d["max_attempts"],
        claimed_by=d["claimed_by"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        result=json_copy(d["result"]),
        error=d["error"],
    )


def _assignment(d: object) -> JobAssignment:
    return JobAssignment.from_dict(d)


class QueueStats(TypedDict):
    """:meth:`Ledger.get_queue_stats`: work items per status, and who leads."""

    pending: int
    claimed: int
    running: int
    completed: int
    failed: int
    cancelled: int
    total: int
    pruned: int
    is_leader: bool
    leader: str | None
    term: int


class Ledger(ABC):
    """Every mutating call is synchronous and bounded by ``op_timeout``.

    It returns True (or the new assignment) once a majority holds the change,
    and False (or None) when the ledger refused it or could not reach a quorum
    in time — it never blocks forever.  ``last_error`` says which.
    """

    node_id: str
    op_timeout: float = 2.0
    forwards_over_http = False  # True where writes hop to the leader's /consensus/op
    clock: Callable[[], float] = staticmethod(time.time)  # stamps each operation's "now"

    def __init__(self) -> None:
        self.last_error: str | None = None
        # (op, ok|refused) -> seconds from proposing to commit or refusal (/metrics)
        self.op_latency = Histogram(LEDGER_OP_BUCKETS)
        self._tally = sm.Tally()  # get_queue_stats' counts, kept up by revision

    # --- what a backend provides -----------------------------------------------------

    @abstractmethod
    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        """Commit ``op`` (a :func:`ledger.make_op` dict); ``{"ok": False, ...}`` on failure."""

    @abstractmethod
    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        """The local replica's state, consistent for the duration of the block."""

    @abstractmethod
    def is_leader(self) -> bool: ...

    @abstractmethod
    def leader(self) -> str | None: ...

    @abstractmethod
    def term(self) -> int: ...

    def fence_token(self) -> str:
        return leadership_fence(self.term(), self.leader())

    def propose_many(
        self, ops: Sequence[dict[str, object]], timeout: float | None = None
    ) -> list[sm.Result]:
        """Commit ``ops`` in order, each refused or applied on its own.  A backend that
        can commit them together (Raft: one log entry) overrides this."""
        return [self.propose(op, timeout) for op in ops]

    def version(self) -> object:
        """Something that changes whenever the local replica does (None: unknown)."""
        return None

    def history(self) -> str | None:
        """A name shared by every leader whose replica numbers its revisions the same
        way (Raft: one log, so revision r is the same state on every voter); None
        where the revisions are one leader's own (Bully epochs may diverge).  A copy
        taken from one leader asks a later leader of the same history for changes
        only, instead of a whole copy."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background threads and release files."""

    # --- the typed interface -------------------------------------------------------------

    def timed_propose(self, op: dict[str, object]) -> sm.Result:
        """:meth:`propose`, its wait recorded in :attr:`op_latency`."""
        started = time.perf_counter()
        result = self.propose(op)
        outcome = "ok" if result.get("ok") else "refused"
        self.op_latency.observe((str(op.get("op")), outcome), time.perf_counter() - started)
        return result

    def _do(self, name: str, **args: object) -> sm.Result:
        op = sm.make_op(name, now=self.clock(), term=self.term(), **args)
        result = self.timed_propose(op)
        self.last_error = None if result.get("ok") else str(result.get("reason"))
        if not result.get("ok"):
            log.debug("%s refused: %s", name, self.last_error)
        return result

    def write_many(self, calls: Sequence[tuple[str, JSONMapping]]) -> list[bool]:
        """Operations ``(name, args)`` in order, committed together where the backend
        can (a leader's tick of results in one round trip); whether each took."""
        return [bool(r.get("ok")) for r in self._write_results(calls)]

    def _write_results(self, calls: Sequence[tuple[str, JSONMapping]]) -> list[sm.Result]:
        if not calls:
            return []
        now, term = self.clock(), self.term()
        ops = [sm.make_op(name, now=now, term=term, **args) for name, args in calls]
        started = time.perf_counter()
        results = self.propose_many(ops)
        took = time.perf_counter() - started
        self.last_error = None
        for op, result in zip(ops, results, strict=True):
            ok = bool(result.get("ok"))
            self.op_latency.observe((str(op.get("op")), "ok" if ok else "refused"), took)
            if not ok:
                self.last_error = str(result.get("reason"))
                log.debug("%s refused: %s", op.get("op"), self.last_error)
        return results

    def add_and_assign(self, jobs: Sequence[NewJob]) -> list[tuple[bool, JobAssignment | None]]:
        """Add each job and place its first attempt: (added, its assignment or None).

        Every add in one commit, then the assignments of the jobs added in another,
        where the backend can (elsewhere one by one): a promotion's thirty
        distribute jobs, or a tick's new self-play, in two round trips instead of
        sixty.  Only an added job is assigned, as :meth:`add_work` then
        :meth:`assign` one job at a time would do."""
        added = self.write_many([("add_work.v1", j.add_args()) for j in jobs])
        placed = [j for j, ok in zip(jobs, added, strict=True) if ok]
        error = self.last_error
        answers = self._write_results(
            [
                ("assign.v1", {"job_id": j.work_id, "node": j.node_id, "job_type": j.work_type})
                for j in placed
            ]
        )
        self.last_error = error or self.last_error
        assigned = {
            j.work_id: _assignment(r["assignment"]) if r.get("ok") else None
            for j, r in zip(placed, answers, strict=True)
        }
        return [(ok, assigned.get(j.work_id)) for j, ok in zip(jobs, added, strict=True)]

    def add_work(
        self,
        work_id: str,
        payload: JSONMapping,
        priority: int = 0,
        work_type: str | None = None,
        max_attempts: int = 3,
    ) -> bool:
        args: dict[str, object] = {
            "work_id": work_id,
            "payload": payload,
            "priority": priority,
            "max_attempts": max_attempts,
        }
        if work_type is not None:
            args["work_type"] = work_type.value if isinstance(work_type, JobType) else work_type
        return bool(self._do("add_work.v1", **args)["ok"])

    def claim_work(self, work_id: str, node: str | None = None) -> bool:
        """Atomic: among racing claimers of one work id exactly one wins."""
        return bool(self._do("claim_work.v1", work_id=work_id, node=node or self.node_id)["ok"])

    def start_work(self, work_id: str, node: str | None = None) -> bool:
        return bool(self._do("start_work.v1", work_id=work_id, node=node or self.node_id)["ok"])

    def complete_work(
        self, work_id: str, result: JSONMapping | None = None, fence: str | None = None
    ) -> bool:
        return bool(self._do("complete_work.v1", work_id=work_id, result=result, fence=fence)["ok"])

    def fail_work(self, work_id: str, error: str, fence: str | None = None) -> bool:
        """Back to pending while attempts remain, failed for good after the last."""
        return bool(self._do("fail_work.v1", work_id=work_id, error=error, fence=fence)["ok"])

    def cancel_work(self, work_id: str) -> bool:
        return bool(self._do("cancel_work.v1", work_id=work_id)["ok"])

    def assign(self, job_id: str, node_id: str, job_type: str | JobType) -> JobAssignment | None:
        """Place a job on a node under a new attempt and fence; None if refused."""
        kind = job_type.value if isinstance(job_type, JobType) else job_type
        result = self._do("assign.v1", job_id=job_id, node=node_id, job_type=kind)
        return _assignment(result["assignment"]) if result["ok"] else None

    def reassign_jobs_of(self, node_id: str) -> list[str]:
        """Void the active attempts on a dead node; their jobs go back to pending."""
        result = self._do("reassign_jobs_of.v1", node=node_id)
        jobs = result.get("jobs", [])
        return [str(j) for j in jobs] if result["ok"] and isinstance(jobs, list) else []

    def accept_result(
        self, job_id: str, fence_token: str, result: JSONMapping | None = None
    ) -> bool:
        """False for a stale fence: the result of a voided attempt is discarded."""
        return bool(
            self._do("accept_result.v1", job_id=job_id, fence=fence_token, result=result)["ok"]
        )

    def put_record(self, kind: str, key: str, value: JSONMapping) -> bool:
        return bool(self._do("put_record.v1", kind=kind, key=key, value=value)["ok"])

    def delete_record(self, kind: str, key: str) -> bool:
        return bool(self._do("delete_record.v1", kind=kind, key=key)["ok"])

    def prune_work(
        self, ids: Sequence[str], records: Sequence[tuple[str, str, JSONMapping]] = ()
    ) -> int | None:
        """Forget finished jobs, writing ``records`` (kind, key, value) in the same step.

        Returns how many were forgotten, or None when refused (a listed job is live).
        """
        recs = [{"kind": k, "key": key, "value": v} for k, key, v in records]
        result = self._do("prune_work.v1", ids=list(ids), records=recs)
        pruned = result.get("pruned", 0)
        return (pruned if isinstance(pruned, int) else 0) if result["ok"] else None

    # --- reads from the local replica ------------------------------------------------------

    def read_items(
        self, ids: Sequence[str], kinds: tuple[str, ...]
    ) -> tuple[list[WorkItem], dict[str, dict[str, JSONObject]]]:
        """The work items of ``ids`` (those still held) and the records of ``kinds``,
        read in one consistent step."""
        with self.reading() as state:
            work = state["work"]
            items = [_work_item(work[i]) for i in dict.fromkeys(ids) if i in work]
            recs = {k: json_copy(state["records"].get(k, {})) for k in kinds}
        return items, recs

    def read_since(self, kinds: tuple[str, ...], rev: int) -> Changes:
        """What changed after revision ``rev``, read in one consistent step.

        Costs copies of the changed items only (the replica is kept in revision
        order), so a coordinator's every-tick read stays cheap however many jobs
        the ledger holds; the ids held are listed only for a reader that fell
        below the forgotten ids' floor.  A full read (``rev`` < 0) copies in chunks
        instead (see :meth:`_read_all`).
        """
        if rev < 0:
            return self._read_all(kinds)
        with self.reading() as state:
            forgotten = sm.forgotten_since(state, rev)
            return Changes(
                items=[_work_item(d) for d in sm.changed_since(state, rev)],
                ids=frozenset(state["work"]) if forgotten is None else None,
                records={k: json_copy(state["records"].get(k, {})) for k in kinds},
                rev=int(state.get("rev", 0)),
                pruned=int(state.get("pruned", 0)),
                forgotten=frozenset(forgotten or ()),
            )

    def _read_all(self, kinds: tuple[str, ...]) -> Changes:
        """Every item, copied ``FULL_READ_CHUNK`` at a time with the replica's lock let
        go in between.  The lock is the one the Raft thread applies entries under:
        copying a 7,700-job ledger in one hold (a second and more on a loaded host)
        kept a voter from answering, and a leader from sending heartbeats, every
        five minutes (the 30-host soak's "lost quorum" step-downs).

        Each item is copied whole under the lock; items changed meanwhile may be
        newer than the revision returned (the one at the start), so the next read
        since that revision returns them again and the reader ends consistent."""
        with self.reading() as state:
            ids = list(state["work"])
            records = {k: json_copy(state["records"].get(k, {})) for k in kinds}
            rev, pruned = int(state.get("rev", 0)), int(state.get("pruned", 0))
        items: list[WorkItem] = []
        for start in range(0, len(ids), FULL_READ_CHUNK):
            if start:
                time.sleep(0)  # let a waiting applier have the lock (and the GIL) first
            with self.reading() as state:
                work = state["work"]
                chunk = ids[start : start + FULL_READ_CHUNK]
                items += [_work_item(work[i]) for i in chunk if i in work]
        return Changes(items=items, ids=frozenset(ids), records=records, rev=rev, pruned=pruned)

    def prunable(
        self,
        before: float,
        keep: frozenset[str] = frozenset(),
        max_finished: int | None = None,
        limit: int | None = None,
    ) -> list[str]:
        with self.reading() as state:
            by_status = self._tally.counts(state) if max_finished is not None else None
            return sm.prunable(state, before, keep, max_finished, limit, by_status)

    def get(self, work_id: str) -> WorkItem | None:
        with self.reading() as state:
            d = state["work"].get(work_id)
            return None if d is None else _work_item(d)

    def get_pending(self, limit: int | None = None, work_type: str | None = None) -> list[WorkItem]:
        kind = work_type.value if isinstance(work_type, JobType) else work_type
        with self.reading() as state:
            return [_work_item(d) for d in sm.pending(state, limit, kind)]

    def items(self) -> list[WorkItem]:
        with self.reading() as state:
            rows = sorted(state["work"].values(), key=lambda d: d["seq"])
            return [_work_item(d) for d in rows]

    def current(self, job_id: str) -> JobAssignment | None:
        with self.reading() as state:
            d = state["assign"].get(job_id)
            return None if d is None else _assignment(d)

    def jobs_of(self, node_id: str) -> list[JobAssignment]:
        with self.reading() as state:
            return [_assignment(d) for d in sm.jobs_of(state, node_id)]

    def get_record(self, kind: str, key: str) -> JSONObject | None:
        with self.reading() as state:
            value = state["records"].get(kind, {}).get(key)
            return None if value is None else json_copy(value)

    def records(self, kind: str) -> dict[str, JSONObject]:
        with self.reading() as state:
            return json_copy(state["records"].get(kind, {}))

    def get_queue_stats(self) -> QueueStats:
        with self.reading() as state:
            c = self._tally.counts(state)
            total = len(state["work"])
            pruned = int(state.get("pruned", 0))
        return {
            "pending": c["pending"],
            "claimed": c["claimed"],
            "running": c["running"],
            "completed": c["completed"],
            "failed": c["failed"],
            "cancelled": c["cancelled"],
            "total": total,
            "pruned": pruned,
            "is_leader": self.is_leader(),
            "leader": self.leader(),
            "term": self.term(),
        }
