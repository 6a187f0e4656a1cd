"""The job ledger as a pure state machine: plain dicts in, plain dicts out.

Raft (``raft_state``) and the Bully fallback's SQLite store (``sqlite_ledger``)
both replicate or journal the same *operations* and feed them to :func:`apply`,
so both hold exactly the same truth and this module is tested without either.

Rules every operation follows, because a replicated method that raises blocks
the Raft log forever and a retried command may be applied twice:

* ``apply`` is total: it validates its input and returns ``{"ok": False,
  "reason": ...}`` instead of raising, and it mutates nothing when it refuses.
* operations are idempotent by id: repeating a successful one succeeds again
  without changing anything.
* operation names carry a version (``"claim_work.v1"``); a changed meaning gets
  a new name, so a log written by older code still replays as it was written.
* the proposer puts the wall-clock time (``now``) and its leadership term
  (``term``) into the operation; replicas never read a clock, and an operation
  whose term is below the highest term already applied is refused as stale —
  that is the fence a deposed leader runs into.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

from ringrift_fleet.jsontypes import JSONObject
from ringrift_fleet.models import JobStatus, JobType

# ``State`` stays loose: raft_state keeps it in pysyncobj's untyped replica (see
# WorkRow and AssignRow for the rows it holds under "work" and "assign").
State = dict[str, Any]
Result = dict[str, Any]
#: An operation as it arrives (decoded from the Raft log, SQLite or the network):
#: every field is narrowed with ``isinstance`` before use.
Op = Mapping[str, object]


class WorkRow(TypedDict):
    """A work item as the replica holds it (``state["work"][work_id]``)."""

    work_id: str
    work_type: str
    payload: JSONObject
    priority: int
    status: str
    attempts: int
    max_attempts: int
    claimed_by: str | None
    created_at: float
    updated_at: float
    result: JSONObject | None
    error: str | None
    seq: int
    rev: NotRequired[int]


class AssignRow(TypedDict):
    """A job's current attempt (``state["assign"][job_id]``)."""

    job_id: str
    node_id: str
    attempt: int
    fence_token: str
    status: str
    assigned_at: float
    job_type: str
    rev: NotRequired[int]


STATE_VERSION = 1
WORK_TYPES = frozenset(t.value for t in JobType)
ACTIVE = (JobStatus.CLAIMED.value, JobStatus.RUNNING.value)
TERMINAL = (JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
MAX_ID_LEN = 256
FORGOT_KEPT = 32  # prunes whose forgotten ids a catching-up reader can still be told


def new_state() -> State:
    return {
        "v": STATE_VERSION,
        "work": {},
        "assign": {},
        "records": {},
        "term": 0,
        "seq": 0,
        "rev": 0,
    }


def fence_for(term: int, job_id: str, attempt: int) -> str:
    """A fence token names the term that assigned the attempt, the job and the attempt."""
    return f"t{term}:{job_id}:a{attempt}"


# --- validation helpers: each returns an error string or None ------------------------


def _bad_id(value: object, name: str) -> str | None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        return f"{name} must be a non-empty string of at most {MAX_ID_LEN} characters"
    return None


def _bad_int(value: object, name: str, lo: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
        return f"{name} must be an integer" + (f" >= {lo}" if lo is not None else "")
    return None


def _bad_plain(value: object, name: str, depth: int = 0) -> str | None:
    """Replicated state holds JSON-shaped data only (pickle-safe, comparable)."""
    if depth > 32:
        return f"{name} is nested too deeply"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{name} must hold finite numbers"
    if isinstance(value, list):
        for item in value:
            err = _bad_plain(item, name, depth + 1)
            if err:
                return err
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{name} keys must be strings"
            err = _bad_plain(item, name, depth + 1)
            if err:
                return err
        return None
    return f"{name} must be JSON-like data, not {type(value).__name__}"


def _bad_dict(value: object, name: str) -> str | None:
    if not isinstance(value, dict):
        return f"{name} must be an object"
    return _bad_plain(value, name)


def _change(state: State, item: dict[str, Any], **changes: object) -> None:
    """Every change to a work item or an assignment stamps it with the state's next
    revision, so a reader can fetch only what changed since it last looked
    (``changed_since``, ``changes``)."""
    item.update(changes)
    state["rev"] = item["rev"] = state.get("rev", 0) + 1


def _refuse(reason: str) -> Result:
    return {"ok": False, "reason": reason}


def _ok(**extra: object) -> Result:
    return {"ok": True, **extra}


# --- work queue operations ----------------------------------------------------------


def _add_work(state: State, op: Op, now: float) -> Result:
    work_id = op.get("work_id")
    payload = op.get("payload", {})
    priority = op.get("priority", 0)
    max_attempts = op.get("max_attempts", 3)
    work_type = op.get("work_type")
    if work_type is None and isinstance(payload, dict):
        work_type = payload.get("work_type", JobType.SELFPLAY.value)
    for err in (
        _bad_id(work_id, "work_id"),
        _bad_dict(payload, "payload"),
        _bad_int(priority, "priority"),
        _bad_int(max_attempts, "max_attempts", 1),
    ):
        if err:
            return _refuse(err)
    if work_type not in WORK_TYPES:
        return _refuse(f"work_type must be one of {', '.join(sorted(WORK_TYPES))}")
    existing = state["work"].get(work_id)
    if existing is not None:
        same = existing["payload"] == payload and existing["work_type"] == work_type
        return _ok(existing=True) if same else _refuse("work_id exists with other content")
    current = state["assign"].get(work_id)
    if current is not None and current["status"] in ACTIVE:
        # A pending item beside a running attempt would be handed out twice.
        return _refuse(
            f"job is already assigned to {current['node_id']}: add work before assigning"
        )
    state["seq"] += 1
    state["work"][work_id] = {
        "work_id": work_id,
        "work_type": work_type,
        "payload": payload,
        "priority": priority,
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "claimed_by": None,
        "created_at": now,
        "updated_at": now,
        "result": None,
        "error": None,
        "seq": state["seq"],
    }
    _change(state, state["work"][work_id])
    return _ok()


def _claim_work(state: State, op: Op, now: float) -> Result:
    work_id, node = op.get("work_id"), op.get("node")
    for err in (_bad_id(work_id, "work_id"), _bad_id(node, "node")):
        if err:
            return _refuse(err)
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["status"] in ACTIVE and item["claimed_by"] == node:
        return _ok(existing=True)
    if item["status"] != JobStatus.PENDING.value:
        return _refuse(f"work is {item['status']}")
    if item["attempts"] >= item["max_attempts"]:
        return _refuse("no attempts left")
    _change(
        state,
        item,
        status=JobStatus.CLAIMED.value,
        claimed_by=node,
        updated_at=now,
        attempts=item["attempts"] + 1,
    )
    return _ok(attempt=item["attempts"])


def _start_work(state: State, op: Op, now: float) -> Result:
    work_id, node = op.get("work_id"), op.get("node")
    for err in (_bad_id(work_id, "work_id"), _bad_id(node, "node")):
        if err:
            return _refuse(err)
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["claimed_by"] != node or item["status"] not in ACTIVE:
        return _refuse("work is not claimed by this node")
    if item["status"] == JobStatus.RUNNING.value:
        return _ok(existing=True)
    _change(state, item, status=JobStatus.RUNNING.value, updated_at=now)
    current = state["assign"].get(work_id)
    if current is not None and current["node_id"] == node and current["status"] in ACTIVE:
        _change(state, current, status=JobStatus.RUNNING.value)
    return _ok()


def _fence_mismatch(state: State, work_id: object, fence: object) -> str | None:
    """A fenced completion must carry the current attempt's token."""
    if fence is None:
        return None
    if not isinstance(fence, str):
        return "fence must be a string"
    current = state["assign"].get(work_id)
    if current is None or current["fence_token"] != fence:
        return "stale fence"
    return None


def _finish_assignment(state: State, work_id: object, status: str) -> None:
    current = state["assign"].get(work_id)
    if current is not None and current["status"] in ACTIVE:
        _change(state, current, status=status)


def _complete_work(state: State, op: Op, now: float) -> Result:
    work_id, result, fence = op.get("work_id"), op.get("result"), op.get("fence")
    err = _bad_id(work_id, "work_id") or (None if result is None else _bad_dict(result, "result"))
    if err:
        return _refuse(err)
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    err = _fence_mismatch(state, work_id, fence)
    if err:
        return _refuse(err)
    if item["status"] == JobStatus.COMPLETED.value:
        return _ok(existing=True)
    if item["status"] not in ACTIVE:
        return _refuse(f"work is {item['status']}")
    _change(state, item, status=JobStatus.COMPLETED.value, result=result, updated_at=now)
    _finish_assignment(state, work_id, JobStatus.COMPLETED.value)
    return _ok()


def _fail_work(state: State, op: Op, now: float) -> Result:
    work_id, error, fence = op.get("work_id"), op.get("error", ""), op.get("fence")
    err = _bad_id(work_id, "work_id")
    if err:
        return _refuse(err)
    if not isinstance(error, str):
        return _refuse("error must be text")
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    err = _fence_mismatch(state, work_id, fence)
    if err:
        return _refuse(err)
    if item["status"] not in ACTIVE:
        return _refuse(f"work is {item['status']}")
    _finish_assignment(state, work_id, JobStatus.FAILED.value)
    _requeue(state, item, error, now)
    return _ok(status=item["status"])


def _requeue(state: State, item: dict[str, Any], error: str, now: float) -> None:
    """Back to pending while attempts remain, failed for good otherwise."""
    retry = item["attempts"] < item["max_attempts"]
    _change(
        state,
        item,
        status=JobStatus.PENDING.value if retry else JobStatus.FAILED.value,
        claimed_by=None,
        error=error,
        updated_at=now,
    )


def _cancel_work(state: State, op: Op, now: float) -> Result:
    work_id = op.get("work_id")
    err = _bad_id(work_id, "work_id")
    if err:
        return _refuse(err)
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["status"] == JobStatus.CANCELLED.value:
        return _ok(existing=True)
    if item["status"] in TERMINAL:
        return _refuse(f"work is {item['status']}")
    _change(state, item, status=JobStatus.CANCELLED.value, updated_at=now)
    _finish_assignment(state, work_id, JobStatus.CANCELLED.value)
    return _ok()


# --- assignments ----------------------------------------------------------------------


def _assign(state: State, op: Op, now: float) -> Result:
    job_id, node, job_type = op.get("job_id"), op.get("node"), op.get("job_type")
    term = op.get("term", 0)  # apply() checked it is an integer
    for err in (_bad_id(job_id, "job_id"), _bad_id(node, "node")):
        if err:
            return _refuse(err)
    if job_type not in WORK_TYPES:
        return _refuse(f"job_type must be one of {', '.join(sorted(WORK_TYPES))}")
    current = state["assign"].get(job_id)
    if current is not None and current["status"] in ACTIVE:
        if current["node_id"] == node:
            return _ok(assignment=dict(current), existing=True)
        return _refuse(f"job is active on {current['node_id']}")
    item = state["work"].get(job_id)
    if item is not None:
        if item["status"] != JobStatus.PENDING.value:
            return _refuse(f"work is {item['status']}")
        if item["attempts"] >= item["max_attempts"]:
            return _refuse("no attempts left")
    previous = max(current["attempt"] if current else 0, item["attempts"] if item else 0)
    attempt = previous + 1
    assignment = {
        "job_id": job_id,
        "node_id": node,
        "attempt": attempt,
        "fence_token": fence_for(term if isinstance(term, int) else 0, str(job_id), attempt),
        "status": JobStatus.CLAIMED.value,
        "assigned_at": now,
        "job_type": job_type,
    }
    state["assign"][job_id] = assignment
    _change(state, assignment)
    if item is not None:
        _change(
            state,
            item,
            status=JobStatus.CLAIMED.value,
            claimed_by=node,
            attempts=attempt,
            updated_at=now,
        )
    return _ok(assignment=dict(assignment))


def _reassign_jobs_of(state: State, op: Op, now: float) -> Result:
    node = op.get("node")
    err = _bad_id(node, "node")
    if err:
        return _refuse(err)
    voided = []
    for job_id, current in sorted(state["assign"].items()):
        if current["node_id"] != node or current["status"] not in ACTIVE:
            continue
        _change(state, current, status=JobStatus.FAILED.value)
        item = state["work"].get(job_id)
        if item is not None and item["status"] in ACTIVE:
            _requeue(state, item, f"node {node} lost", now)
        voided.append(job_id)
    return _ok(jobs=voided)


def _accept_result(state: State, op: Op, now: float) -> Result:
    job_id, fence, result = op.get("job_id"), op.get("fence"), op.get("result")
    err = (
        _bad_id(job_id, "job_id")
        or _bad_id(fence, "fence")
        or (None if result is None else _bad_dict(result, "result"))
    )
    if err:
        return _refuse(err)
    current = state["assign"].get(job_id)
    if current is None or current["fence_token"] != fence:
        return _refuse("stale fence")
    if current["status"] == JobStatus.COMPLETED.value:
        return _ok(existing=True)
    if current["status"] not in ACTIVE:
        return _refuse(f"attempt is {current['status']}")
    _change(state, current, status=JobStatus.COMPLETED.value)
    item = state["work"].get(job_id)
    if item is not None:
        _change(state, item, status=JobStatus.COMPLETED.value, result=result, updated_at=now)
    return _ok()


# --- small records ----------------------------------------------------------------------


def _put_record(state: State, op: Op, now: float) -> Result:
    kind, key, value = op.get("kind"), op.get("key"), op.get("value")
    for err in (_bad_id(kind, "kind"), _bad_id(key, "key"), _bad_dict(value, "value")):
        if err:
            return _refuse(err)
    state["records"].setdefault(kind, {})[key] = value
    return _ok()


def _delete_record(state: State, op: Op, now: float) -> Result:
    kind, key = op.get("kind"), op.get("key")
    for err in (_bad_id(kind, "kind"), _bad_id(key, "key")):
        if err:
            return _refuse(err)
    bucket = state["records"].get(kind, {})
    bucket.pop(key, None)
    if not bucket:
        state["records"].pop(kind, None)
    return _ok()


# --- forgetting finished jobs -----------------------------------------------------------


def _prune_work(state: State, op: Op, now: float) -> Result:
    """Forget finished jobs for good, and write the records that summarise them.

    Both happen in one step, so a reader never sees a job gone before its
    summary counts it (or counted twice).  Record values are absolute, not
    increments: a retried operation writes the same values again.  All or
    nothing: a listed job that is still live refuses the whole operation (the
    proposer's view was stale); a listed job already gone is skipped.
    """
    ids, records = op.get("ids"), op.get("records", [])
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_BATCH:
        return _refuse(f"ids must be a list of 1 to {MAX_BATCH} work ids")
    if not isinstance(records, list) or len(records) > MAX_BATCH:
        return _refuse(f"records must be a list of at most {MAX_BATCH} records")
    for i, work_id in enumerate(ids):
        err = _bad_id(work_id, f"ids[{i}]")
        if err:
            return _refuse(err)
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            return _refuse(f"records[{i}] must be an object with kind, key and value")
        err = (
            _bad_id(rec.get("kind"), f"records[{i}].kind")
            or _bad_id(rec.get("key"), f"records[{i}].key")
            or _bad_dict(rec.get("value"), f"records[{i}].value")
        )
        if err:
            return _refuse(err)
    for work_id in ids:
        item, current = state["work"].get(work_id), state["assign"].get(work_id)
        if item is not None and item["status"] not in TERMINAL:
            return _refuse(f"work {work_id} is {item['status']}")
        if current is not None and current["status"] in ACTIVE:
            return _refuse(f"job {work_id} is {current['status']} on {current['node_id']}")
    gone = []
    for work_id in ids:
        removed = state["work"].pop(work_id, None), state["assign"].pop(work_id, None)
        if removed != (None, None):
            gone.append(work_id)
    for rec in records:
        state["records"].setdefault(rec["kind"], {})[rec["key"]] = rec["value"]
    if gone:
        state["pruned"] = state.get("pruned", 0) + len(gone)
        state["rev"] = state.get("rev", 0) + 1
        # what a reader catching up by revision must drop (bounded: an older
        # reader takes a full copy instead, see ``changes``)
        forgot = state.setdefault("forgot", [])
        forgot.append([state["rev"], gone])
        while len(forgot) > FORGOT_KEPT:
            state["forgot_floor"] = forgot.pop(0)[0]
    return _ok(pruned=len(gone))


# --- a consensus-mode switch ---------------------------------------------------------


def _adopt_state(state: State, op: Op, now: float) -> Result:
    """Take over the whole ledger of the backend we replace (Bully -> Raft).

    Refused unless the adopted copy is from a newer era (its term above ours),
    so two hand-overs cannot undo each other and a retry changes nothing.
    ``term_base`` is where the new backend's terms start (see consensus.handover):
    it only grows.  Every item is stamped with a new revision and the forgotten
    ids reset, so every reader takes the adopted ledger whole.
    """
    other, base = op.get("state"), op.get("term_base", 0)
    if not isinstance(other, Mapping) or not all(
        isinstance(other.get(k), dict) for k in ("work", "assign", "records")
    ):
        return _refuse("state must be a ledger state with work, assign and records")
    err = _bad_int(base, "term_base", 0) or _bad_int(other.get("term", 0), "state.term", 0)
    if err:
        return _refuse(err)
    if other.get("term", 0) <= state["term"]:
        return _ok(existing=True, reason="not newer than this ledger")
    other = copy.deepcopy(other)
    rev = max(int(state.get("rev", 0)), int(other.get("rev", 0) or 0)) + 1
    work = {k: dict(v, rev=rev) for k, v in other["work"].items()}
    assign = {k: dict(v, rev=rev) for k, v in other["assign"].items()}
    state.update(
        work=work,
        assign=assign,
        records={k: dict(v) for k, v in other["records"].items()},
        seq=max([int(other.get("seq", 0) or 0), *(int(w.get("seq", 0)) for w in work.values())]),
        pruned=int(other.get("pruned", 0) or 0),
        forgot=[],
        forgot_floor=rev,
        rev=rev,
        term=int(other.get("term", 0)),
        term_base=max(int(state.get("term_base", 0)), base if isinstance(base, int) else 0),
    )
    return _ok(adopted=len(work))


OPERATIONS: dict[str, Callable[[State, Op, float], Result]] = {
    "add_work.v1": _add_work,
    "claim_work.v1": _claim_work,
    "start_work.v1": _start_work,
    "complete_work.v1": _complete_work,
    "fail_work.v1": _fail_work,
    "cancel_work.v1": _cancel_work,
    "assign.v1": _assign,
    "reassign_jobs_of.v1": _reassign_jobs_of,
    "accept_result.v1": _accept_result,
    "put_record.v1": _put_record,
    "delete_record.v1": _delete_record,
    "prune_work.v1": _prune_work,
    "adopt_state.v1": _adopt_state,
}


def make_op(name: str, *, now: float, term: int, **args: object) -> dict[str, object]:
    """An operation as the proposer sends it (name must be a key of OPERATIONS)."""
    return {"op": name, "now": now, "term": term, **args}


def apply(state: State, op: object) -> Result:
    """Apply one operation; never raises, never half-applies.

    Validation happens before any mutation in every handler; the broad
    ``except`` is the last line of defence for the Raft log, and on that path
    the state is left as it was because handlers mutate only after validating.
    """
    if not isinstance(op, Mapping):
        return _refuse("operation must be an object")
    name = op.get("op")
    handler = OPERATIONS.get(name) if isinstance(name, str) else None
    if handler is None:
        return _refuse(f"unknown operation {op.get('op')!r}")
    now, term = op.get("now", 0.0), op.get("term", 0)
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        return _refuse("now must be a number")
    if _bad_int(term, "term", 0):
        return _refuse("term must be an integer >= 0")
    if term < state["term"]:
        return _refuse(f"stale fence: term {term} < {state['term']}")
    try:
        result = handler(state, op, float(now))
    except Exception as exc:  # pragma: no cover - a bug, never a user error
        return _refuse(f"internal error: {type(exc).__name__}")
    if result["ok"]:
        state["term"] = max(state["term"], term)
    return result


BATCH = "batch.v1"
MAX_BATCH = 512


def apply_batch(state: State, op: object) -> Result:
    """Apply ``{"op": "batch.v1", "ops": [...]}`` in order: one log entry, many results.

    Group commit for concurrent writers; each inner operation succeeds or is
    refused on its own, exactly as if it had been applied alone.
    """
    ops = op.get("ops") if isinstance(op, Mapping) else None
    if not isinstance(ops, list) or not 0 < len(ops) <= MAX_BATCH:
        return _refuse(f"ops must be a list of 1 to {MAX_BATCH} operations")
    results = [
        _refuse("batches do not nest")
        if isinstance(o, Mapping) and o.get("op") == BATCH
        else apply(state, o)
        for o in ops
    ]
    return _ok(results=results)


# --- queries (pure reads) -------------------------------------------------------------


def pending(state: State, limit: int | None = None, work_type: str | None = None) -> list[WorkRow]:
    """Pending work, highest priority first, then oldest first."""
    items = [
        w
        for w in state["work"].values()
        if w["status"] == JobStatus.PENDING.value
        and (work_type is None or w["work_type"] == work_type)
    ]
    items.sort(key=lambda w: (-w["priority"], w["seq"]))
    return items if limit is None else items[: max(limit, 0)]


def prunable(
    state: State,
    before: float,
    keep: frozenset[str] = frozenset(),
    max_finished: int | None = None,
) -> list[str]:
    """Ids of finished jobs last changed before ``before``, oldest first (``keep`` excepted).

    With ``max_finished``, also the oldest finished jobs beyond that many, whatever
    their age: the ledger's size is bounded by count as well as by age, so a
    coordinator's memory does not grow with the job rate.
    """
    out = [
        w
        for w in state["work"].values()
        if w["status"] in TERMINAL
        and w["work_id"] not in keep
        and state["assign"].get(w["work_id"], {}).get("status") not in ACTIVE
    ]
    over = 0 if max_finished is None else max(0, len(out) - max(0, max_finished))
    if not over:
        out = [w for w in out if w["updated_at"] < before]
    out.sort(key=lambda w: (w["updated_at"], w["seq"]))
    ids = [w["work_id"] for n, w in enumerate(out) if n < over or w["updated_at"] < before]
    lone = [
        a["job_id"]
        for a in state["assign"].values()
        if a["job_id"] not in state["work"]
        and a["status"] not in ACTIVE
        and a["assigned_at"] < before
        and a["job_id"] not in keep
    ]
    return ids + sorted(lone)


def changed_since(state: State, rev: int) -> list[WorkRow]:
    """Work items changed after revision ``rev``, in ledger order (a cheap scan, no copies)."""
    return [w for w in state["work"].values() if w.get("rev", 0) > rev]


def changes(state: State, rev: int) -> dict[str, object] | None:
    """Everything a copy at revision ``rev`` lacks, as plain data; None when the
    forgotten ids since then are no longer known (the copy must be replaced).

    ``apply_changes`` brings the copy to this state's revision; records are
    small and travel whole.
    """
    if rev < state.get("forgot_floor", 0) or rev > state.get("rev", 0):
        return None
    forgotten = [i for r, ids in state.get("forgot", []) if r > rev for i in ids]
    return {
        "work": changed_since(state, rev),
        "assign": [a for a in state["assign"].values() if a.get("rev", 0) > rev],
        "forgotten": forgotten,
        "records": state["records"],
        "counters": {k: state.get(k, 0) for k in ("term", "seq", "rev", "pruned")},
    }


def apply_changes(copy: State, delta: Mapping[str, Any]) -> None:
    """Bring a read copy up to date with a ``changes`` delta (taken as trusted data
    from this ledger's leader, already JSON-decoded)."""
    for work_id in delta["forgotten"]:
        copy["work"].pop(work_id, None)
        copy["assign"].pop(work_id, None)
    for w in delta["work"]:
        copy["work"][w["work_id"]] = w
    for a in delta["assign"]:
        copy["assign"][a["job_id"]] = a
    copy["records"] = delta["records"]
    copy.update(delta["counters"])


def counts(state: State) -> dict[str, int]:
    out = {s.value: 0 for s in JobStatus}
    for w in state["work"].values():
        out[w["status"]] += 1
    return out


def jobs_of(state: State, node: str) -> list[AssignRow]:
    """Active assignments on ``node``, oldest first."""
    out = [a for a in state["assign"].values() if a["node_id"] == node and a["status"] in ACTIVE]
    out.sort(key=lambda a: (a["assigned_at"], a["job_id"]))
    return out
