# mypy: disallow-any-explicit
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
from typing import NotRequired, TypedDict, TypeGuard, TypeVar

from ringrift_fleet.jsontypes import JSONObject
from ringrift_fleet.models import JobStatus, JobType

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


_Row = TypeVar("_Row", WorkRow, AssignRow)

#: One prune the readers catching up by revision must replay: ``[rev, [work_id, ...]]``
#: (a list, not a tuple, so that it reads the same after a JSON round trip).
ForgotEntry = list[int | list[str]]


class LedgerState(TypedDict):
    """The whole replicated ledger (``new_state``); plain data, JSON- and pickle-safe.

    The keys marked NotRequired appear once the first prune or hand-over writes them.
    """

    v: int
    work: dict[str, WorkRow]
    assign: dict[str, AssignRow]
    records: dict[str, dict[str, JSONObject]]  # kind -> key -> value
    term: int  # highest term applied: the fence against a deposed leader
    seq: int  # order of arrival of work items
    rev: int  # revision of the last change (``changes``)
    pruned: NotRequired[int]  # finished jobs forgotten so far
    forgot: NotRequired[list[ForgotEntry]]  # the last FORGOT_KEPT prunes
    forgot_floor: NotRequired[int]  # a copy below this revision needs a whole copy
    term_base: NotRequired[int]  # where Raft terms start after a hand-over


#: What ``apply`` answers: ``ok`` (bool) always; ``reason`` (str) when refused, or
#: with ok when nothing changed; ``existing`` (True) for a repeat that changed
#: nothing; per operation: ``attempt`` (claim_work), ``status`` (fail_work),
#: ``assignment`` (an AssignRow copy, assign), ``jobs`` (reassign_jobs_of),
#: ``pruned`` (prune_work), ``adopted`` (adopt_state), ``results`` (a batch).
#: A plain dict, not a TypedDict: raft_state's pysyncobj method returns it as
#: ``dict[str, Any]``, results also arrive decoded from a peer, and readers narrow
#: what they take from one.
Result = dict[str, object]
State = LedgerState


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


# --- validation helpers: a `_need_*` returns the narrowed value or raises _Refused ----


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


class _Refused(Exception):
    """A validation failure in a handler, raised before any change; ``apply``
    answers it as a refusal carrying the message."""


def _need_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise _Refused(f"{name} must be a non-empty string of at most {MAX_ID_LEN} characters")
    return value


def _need_int(value: object, name: str, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
        raise _Refused(f"{name} must be an integer" + (f" >= {lo}" if lo is not None else ""))
    return value


def _need_object(value: object, name: str) -> JSONObject:
    """``value`` as a JSON object: a dict with string keys and JSON-like data inside."""
    if not isinstance(value, dict):
        raise _Refused(f"{name} must be an object")
    err = _bad_plain(value, name)
    if err:
        raise _Refused(err)
    return value


def _is_object(value: object) -> TypeGuard[JSONObject]:
    return isinstance(value, dict) and _bad_plain(value, "value") is None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_work_row(value: object) -> TypeGuard[WorkRow]:
    """Whether ``value`` holds every field of a work item, each of its type."""
    if not isinstance(value, dict):
        return False
    return (
        all(isinstance(value.get(k), str) for k in ("work_id", "work_type", "status"))
        and all(
            isinstance(value.get(k), int) and not isinstance(value.get(k), bool)
            for k in ("priority", "attempts", "max_attempts", "seq")
        )
        and _is_object(value.get("payload"))
        and all(_is_number(value.get(k)) for k in ("created_at", "updated_at"))
        and (value.get("claimed_by") is None or isinstance(value.get("claimed_by"), str))
        and (value.get("error") is None or isinstance(value.get("error"), str))
        and (value.get("result") is None or _is_object(value.get("result")))
        and all(k in value for k in ("claimed_by", "error", "result"))
        and ("rev" not in value or isinstance(value["rev"], int))
    )


def _is_assign_row(value: object) -> TypeGuard[AssignRow]:
    """Whether ``value`` holds every field of an assignment, each of its type."""
    if not isinstance(value, dict):
        return False
    return (
        all(
            isinstance(value.get(k), str)
            for k in ("job_id", "node_id", "fence_token", "status", "job_type")
        )
        and isinstance(value.get("attempt"), int)
        and _is_number(value.get("assigned_at"))
        and ("rev" not in value or isinstance(value["rev"], int))
    )


def _is_records(value: object) -> TypeGuard[dict[str, dict[str, JSONObject]]]:
    """Whether ``value`` is a ledger's records: kind -> key -> JSON object."""
    return isinstance(value, dict) and all(
        isinstance(kind, str)
        and isinstance(bucket, dict)
        and all(isinstance(key, str) and _is_object(v) for key, v in bucket.items())
        for kind, bucket in value.items()
    )


def _is_forgot(value: object) -> TypeGuard[list[ForgotEntry]]:
    return isinstance(value, list) and all(
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], int)
        and isinstance(entry[1], list)
        and all(isinstance(i, str) for i in entry[1])
        for entry in value
    )


def is_state(value: object) -> TypeGuard[LedgerState]:
    """Whether ``value`` (a whole ledger decoded from a peer) is a ledger state, every
    row of its type: checked before it replaces a replica or a read copy."""
    if not isinstance(value, dict):
        return False
    work, assign = value.get("work"), value.get("assign")
    return (
        all(
            isinstance(value.get(k), int) and not isinstance(value.get(k), bool)
            for k in ("v", "term", "seq", "rev")
        )
        and all(
            k not in value or (isinstance(value[k], int) and not isinstance(value[k], bool))
            for k in ("pruned", "forgot_floor", "term_base")
        )
        and ("forgot" not in value or _is_forgot(value["forgot"]))
        and isinstance(work, dict)
        and all(isinstance(k, str) and _is_work_row(w) for k, w in work.items())
        and isinstance(assign, dict)
        and all(isinstance(k, str) and _is_assign_row(a) for k, a in assign.items())
        and _is_records(value.get("records"))
    )


def _change(state: State, item: WorkRow | AssignRow) -> None:
    """Every change to a work item or an assignment (made just before) stamps it
    with the state's next revision, so a reader can fetch only what changed since
    it last looked (``changed_since``, ``changes``).

    The row also moves to the end of its map: both maps stay in revision order, so
    "what changed since revision r" is read from the end and costs what changed,
    not what the ledger holds (at 19,000 held jobs, one O(jobs) scan per asking
    non-voter a second kept the leader's Raft thread waiting on the replica lock).
    """
    state["rev"] = item["rev"] = state.get("rev", 0) + 1
    work_id, job_id = item.get("work_id"), item.get("job_id")
    if isinstance(work_id, str) and state["work"].get(work_id) is item:
        state["work"][work_id] = state["work"].pop(work_id)
    elif isinstance(job_id, str) and state["assign"].get(job_id) is item:
        state["assign"][job_id] = state["assign"].pop(job_id)


def _refuse(reason: str) -> Result:
    return {"ok": False, "reason": reason}


def _ok() -> Result:
    return {"ok": True}


def _again() -> Result:
    """A repeat of an operation that already succeeded: nothing changes."""
    return {"ok": True, "existing": True}


# --- work queue operations ----------------------------------------------------------


def _add_work(state: State, op: Op, now: float) -> Result:
    raw_payload = op.get("payload", {})
    work_type = op.get("work_type")
    if work_type is None and isinstance(raw_payload, dict):
        work_type = raw_payload.get("work_type", JobType.SELFPLAY.value)
    work_id = _need_id(op.get("work_id"), "work_id")
    payload = _need_object(raw_payload, "payload")
    priority = _need_int(op.get("priority", 0), "priority")
    max_attempts = _need_int(op.get("max_attempts", 3), "max_attempts", 1)
    if work_type not in WORK_TYPES or not isinstance(work_type, str):
        return _refuse(f"work_type must be one of {', '.join(sorted(WORK_TYPES))}")
    existing = state["work"].get(work_id)
    if existing is not None:
        same = existing["payload"] == payload and existing["work_type"] == work_type
        return _again() if same else _refuse("work_id exists with other content")
    current = state["assign"].get(work_id)
    if current is not None and current["status"] in ACTIVE:
        # A pending item beside a running attempt would be handed out twice.
        return _refuse(
            f"job is already assigned to {current['node_id']}: add work before assigning"
        )
    state["seq"] += 1
    item: WorkRow = {
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
    state["work"][work_id] = item
    _change(state, item)
    return _ok()


def _claim_work(state: State, op: Op, now: float) -> Result:
    work_id = _need_id(op.get("work_id"), "work_id")
    node = _need_id(op.get("node"), "node")
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["status"] in ACTIVE and item["claimed_by"] == node:
        return _again()
    if item["status"] != JobStatus.PENDING.value:
        return _refuse(f"work is {item['status']}")
    if item["attempts"] >= item["max_attempts"]:
        return _refuse("no attempts left")
    item["status"] = JobStatus.CLAIMED.value
    item["claimed_by"] = node
    item["updated_at"] = now
    item["attempts"] = item["attempts"] + 1
    _change(state, item)
    return {"ok": True, "attempt": item["attempts"]}


def _start_work(state: State, op: Op, now: float) -> Result:
    work_id = _need_id(op.get("work_id"), "work_id")
    node = _need_id(op.get("node"), "node")
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["claimed_by"] != node or item["status"] not in ACTIVE:
        return _refuse("work is not claimed by this node")
    if item["status"] == JobStatus.RUNNING.value:
        return _again()
    item["status"] = JobStatus.RUNNING.value
    item["updated_at"] = now
    _change(state, item)
    current = state["assign"].get(work_id)
    if current is not None and current["node_id"] == node and current["status"] in ACTIVE:
        current["status"] = JobStatus.RUNNING.value
        _change(state, current)
    return _ok()


def _fence_mismatch(state: State, work_id: str, fence: object) -> str | None:
    """A fenced completion must carry the current attempt's token."""
    if fence is None:
        return None
    if not isinstance(fence, str):
        return "fence must be a string"
    current = state["assign"].get(work_id)
    if current is None or current["fence_token"] != fence:
        return "stale fence"
    return None


def _finish_assignment(state: State, work_id: str, status: str) -> None:
    current = state["assign"].get(work_id)
    if current is not None and current["status"] in ACTIVE:
        current["status"] = status
        _change(state, current)


def _complete_work(state: State, op: Op, now: float) -> Result:
    work_id = _need_id(op.get("work_id"), "work_id")
    raw_result, fence = op.get("result"), op.get("fence")
    result = None if raw_result is None else _need_object(raw_result, "result")
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    err = _fence_mismatch(state, work_id, fence)
    if err:
        return _refuse(err)
    if item["status"] == JobStatus.COMPLETED.value:
        return _again()
    if item["status"] not in ACTIVE:
        return _refuse(f"work is {item['status']}")
    item["status"] = JobStatus.COMPLETED.value
    item["result"] = result
    item["updated_at"] = now
    _change(state, item)
    _finish_assignment(state, work_id, JobStatus.COMPLETED.value)
    return _ok()


def _fail_work(state: State, op: Op, now: float) -> Result:
    work_id = _need_id(op.get("work_id"), "work_id")
    error, fence = op.get("error", ""), op.get("fence")
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
    return {"ok": True, "status": item["status"]}


def _requeue(state: State, item: WorkRow, error: str, now: float) -> None:
    """Back to pending while attempts remain, failed for good otherwise."""
    retry = item["attempts"] < item["max_attempts"]
    item["status"] = JobStatus.PENDING.value if retry else JobStatus.FAILED.value
    item["claimed_by"] = None
    item["error"] = error
    item["updated_at"] = now
    _change(state, item)


def _cancel_work(state: State, op: Op, now: float) -> Result:
    work_id = _need_id(op.get("work_id"), "work_id")
    item = state["work"].get(work_id)
    if item is None:
        return _refuse("no such work")
    if item["status"] == JobStatus.CANCELLED.value:
        return _again()
    if item["status"] in TERMINAL:
        return _refuse(f"work is {item['status']}")
    item["status"] = JobStatus.CANCELLED.value
    item["updated_at"] = now
    _change(state, item)
    _finish_assignment(state, work_id, JobStatus.CANCELLED.value)
    return _ok()


# --- assignments ----------------------------------------------------------------------


def _assign(state: State, op: Op, now: float) -> Result:
    job_type, term = op.get("job_type"), op.get("term", 0)  # apply() checked the term
    job_id = _need_id(op.get("job_id"), "job_id")
    node = _need_id(op.get("node"), "node")
    if job_type not in WORK_TYPES or not isinstance(job_type, str):
        return _refuse(f"job_type must be one of {', '.join(sorted(WORK_TYPES))}")
    current = state["assign"].get(job_id)
    if current is not None and current["status"] in ACTIVE:
        if current["node_id"] == node:
            return {"ok": True, "assignment": current.copy(), "existing": True}
        return _refuse(f"job is active on {current['node_id']}")
    item = state["work"].get(job_id)
    if item is not None:
        if item["status"] != JobStatus.PENDING.value:
            return _refuse(f"work is {item['status']}")
        if item["attempts"] >= item["max_attempts"]:
            return _refuse("no attempts left")
    previous = max(current["attempt"] if current else 0, item["attempts"] if item else 0)
    attempt = previous + 1
    assignment: AssignRow = {
        "job_id": job_id,
        "node_id": node,
        "attempt": attempt,
        "fence_token": fence_for(term if isinstance(term, int) else 0, job_id, attempt),
        "status": JobStatus.CLAIMED.value,
        "assigned_at": now,
        "job_type": job_type,
    }
    state["assign"][job_id] = assignment
    _change(state, assignment)
    if item is not None:
        item["status"] = JobStatus.CLAIMED.value
        item["claimed_by"] = node
        item["attempts"] = attempt
        item["updated_at"] = now
        _change(state, item)
    return {"ok": True, "assignment": assignment.copy()}


def _reassign_jobs_of(state: State, op: Op, now: float) -> Result:
    node = _need_id(op.get("node"), "node")
    voided = []
    for job_id, current in sorted(state["assign"].items()):
        if current["node_id"] != node or current["status"] not in ACTIVE:
            continue
        current["status"] = JobStatus.FAILED.value
        _change(state, current)
        item = state["work"].get(job_id)
        if item is not None and item["status"] in ACTIVE:
            _requeue(state, item, f"node {node} lost", now)
        voided.append(job_id)
    return {"ok": True, "jobs": voided}


def _accept_result(state: State, op: Op, now: float) -> Result:
    job_id = _need_id(op.get("job_id"), "job_id")
    fence = _need_id(op.get("fence"), "fence")
    raw_result = op.get("result")
    result = None if raw_result is None else _need_object(raw_result, "result")
    current = state["assign"].get(job_id)
    if current is None or current["fence_token"] != fence:
        return _refuse("stale fence")
    if current["status"] == JobStatus.COMPLETED.value:
        return _again()
    if current["status"] not in ACTIVE:
        return _refuse(f"attempt is {current['status']}")
    current["status"] = JobStatus.COMPLETED.value
    _change(state, current)
    item = state["work"].get(job_id)
    if item is not None:
        item["status"] = JobStatus.COMPLETED.value
        item["result"] = result
        item["updated_at"] = now
        _change(state, item)
    return _ok()


# --- small records ----------------------------------------------------------------------


def _put_record(state: State, op: Op, now: float) -> Result:
    kind = _need_id(op.get("kind"), "kind")
    key = _need_id(op.get("key"), "key")
    value = _need_object(op.get("value"), "value")
    state["records"].setdefault(kind, {})[key] = value
    return _ok()


def _delete_record(state: State, op: Op, now: float) -> Result:
    kind = _need_id(op.get("kind"), "kind")
    key = _need_id(op.get("key"), "key")
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
    raw_ids, raw_records = op.get("ids"), op.get("records", [])
    if not isinstance(raw_ids, list) or not 0 < len(raw_ids) <= MAX_BATCH:
        return _refuse(f"ids must be a list of 1 to {MAX_BATCH} work ids")
    if not isinstance(raw_records, list) or len(raw_records) > MAX_BATCH:
        return _refuse(f"records must be a list of at most {MAX_BATCH} records")
    ids = [_need_id(work_id, f"ids[{i}]") for i, work_id in enumerate(raw_ids)]
    records: list[tuple[str, str, JSONObject]] = []
    for i, rec in enumerate(raw_records):
        if not isinstance(rec, Mapping):
            return _refuse(f"records[{i}] must be an object with kind, key and value")
        records.append(
            (
                _need_id(rec.get("kind"), f"records[{i}].kind"),
                _need_id(rec.get("key"), f"records[{i}].key"),
                _need_object(rec.get("value"), f"records[{i}].value"),
            )
        )
    for work_id in ids:
        item, current = state["work"].get(work_id), state["assign"].get(work_id)
        if item is not None and item["status"] not in TERMINAL:
            return _refuse(f"work {work_id} is {item['status']}")
        if current is not None and current["status"] in ACTIVE:
            return _refuse(f"job {work_id} is {current['status']} on {current['node_id']}")
    gone: list[str] = []
    for work_id in ids:
        removed = state["work"].pop(work_id, None), state["assign"].pop(work_id, None)
        if removed != (None, None):
            gone.append(work_id)
    for kind, key, value in records:
        state["records"].setdefault(kind, {})[key] = value
    if gone:
        state["pruned"] = state.get("pruned", 0) + len(gone)
        state["rev"] = state.get("rev", 0) + 1
        # what a reader catching up by revision must drop (bounded: an older
        # reader takes a full copy instead, see ``changes``)
        forgot = state.setdefault("forgot", [])
        forgot.append([state["rev"], gone])
        while len(forgot) > FORGOT_KEPT:
            floor = forgot.pop(0)[0]
            if isinstance(floor, int):  # always: the entries are written just above
                state["forgot_floor"] = floor
    return {"ok": True, "pruned": len(gone)}


# --- a consensus-mode switch ---------------------------------------------------------


def _loose_int(value: object) -> int:
    """An adopted copy's counter, read as ``int(value or 0)`` (a non-number refuses
    the hand-over as an internal error, as it always has)."""
    if not value:
        return 0
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"not a number: {type(value).__name__}")


def _adopt_state(state: State, op: Op, now: float) -> Result:
    """Take over the whole ledger of the backend we replace (Bully -> Raft).

    Refused unless the adopted copy is from a newer era (its term above ours),
    so two hand-overs cannot undo each other and a retry changes nothing.
    ``term_base`` is where the new backend's terms start (see consensus.handover):
    it only grows.  Every item is stamped with a new revision and the forgotten
    ids reset, so every reader takes the adopted ledger whole.  Rows that are not
    work items or assignments refuse the whole hand-over.
    """
    other, base = op.get("state"), op.get("term_base", 0)
    if not isinstance(other, Mapping) or not all(
        isinstance(other.get(k), dict) for k in ("work", "assign", "records")
    ):
        return _refuse("state must be a ledger state with work, assign and records")
    base = _need_int(base, "term_base", 0)
    other_term = _need_int(other.get("term", 0), "state.term", 0)
    if other_term <= state["term"]:
        return {"ok": True, "existing": True, "reason": "not newer than this ledger"}
    other = copy.deepcopy(other)
    old_work, old_assign, old_records = other["work"], other["assign"], other["records"]
    if not isinstance(old_work, dict) or not isinstance(old_assign, dict):
        return _refuse("state must be a ledger state with work, assign and records")
    rev = max(int(state.get("rev", 0)), _loose_int(other.get("rev", 0))) + 1
    work: dict[str, WorkRow] = {}
    for k, w in old_work.items():
        if not isinstance(k, str) or not _is_work_row(w):
            return _refuse("state.work must map work ids to work items")
        work[k] = w.copy()
        work[k]["rev"] = rev
    assign: dict[str, AssignRow] = {}
    for k, a in old_assign.items():
        if not isinstance(k, str) or not _is_assign_row(a):
            return _refuse("state.assign must map job ids to assignments")
        assign[k] = a.copy()
        assign[k]["rev"] = rev
    if not _is_records(old_records):
        return _refuse("state.records must map kinds to keys to objects")
    seq = max([_loose_int(other.get("seq", 0)), *(w["seq"] for w in work.values())])
    pruned = _loose_int(other.get("pruned", 0))
    state["work"] = work
    state["assign"] = assign
    state["records"] = {k: dict(v) for k, v in old_records.items()}
    state["seq"] = seq
    state["pruned"] = pruned
    state["forgot"] = []
    state["forgot_floor"] = rev
    state["rev"] = rev
    state["term"] = other_term
    state["term_base"] = max(int(state.get("term_base", 0)), base)
    return {"ok": True, "adopted": len(work)}


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
    if isinstance(term, bool) or not isinstance(term, int) or term < 0:
        return _refuse("term must be an integer >= 0")
    if term < state["term"]:
        return _refuse(f"stale fence: term {term} < {state['term']}")
    try:
        result = handler(state, op, float(now))
    except _Refused as exc:  # validation, before any change
        return _refuse(str(exc))
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
    return {"ok": True, "results": results}


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
    limit: int | None = None,
    counts_now: Mapping[str, int] | None = None,
) -> list[str]:
    """Ids of finished jobs last changed before ``before``, oldest first (``keep`` excepted).

    With ``max_finished``, also the oldest finished jobs beyond that many, whatever
    their age: the ledger's size is bounded by count as well as by age, so a
    coordinator's memory does not grow with the job rate.  The count includes the
    finished jobs that are kept (``keep``, or with an attempt still active), so at
    most ``max_finished`` are held.  ``limit``: at most that many ids (a prune
    batch).  ``counts_now``: the jobs by status, when the caller keeps them up
    (``Tally``); else they are counted here.

    "Oldest" is by last change: the work map is in revision order (``_change``),
    so a full batch is found at the front of the map instead of by sorting every
    finished job, which held the replica lock ~45 ms a batch at 20,000 jobs
    (benchmarks/ledger_changes.py) while a leader catching up on the cap prunes a
    batch every tick.
    """
    work, assign = state["work"], state["assign"]
    over = 0
    if max_finished is not None:
        by_status = counts(state) if counts_now is None else counts_now
        finished = sum(by_status.get(s, 0) for s in TERMINAL)
        over = max(0, finished - max(0, max_finished))
    room = len(work) + len(assign) if limit is None else max(0, limit)
    ids: list[str] = []
    taken = 0  # the first `over` finished jobs walked past go whatever their age
    for w in work.values():
        if len(ids) >= room:
            return ids
        if (
            w["status"] not in TERMINAL
            or w["work_id"] in keep
            or _status_of(assign.get(w["work_id"])) in ACTIVE
        ):
            continue
        if taken < over or w["updated_at"] < before:
            ids.append(w["work_id"])
        taken += 1
    lone = sorted(
        a["job_id"]
        for a in assign.values()
        if a["job_id"] not in work
        and a["status"] not in ACTIVE
        and a["assigned_at"] < before
        and a["job_id"] not in keep
    )
    return ids + lone[: room - len(ids)]


def _status_of(current: AssignRow | None) -> str | None:
    return None if current is None else current["status"]


def _rev_of(row: WorkRow | AssignRow) -> int:
    rev = row.get("rev", 0)
    return rev if isinstance(rev, int) else 0


def _newer_than(rows: dict[str, _Row], rev: int) -> list[_Row]:
    """The rows of a map in revision order changed after ``rev``: read from the end."""
    out: list[_Row] = []
    for row in reversed(rows.values()):
        if _rev_of(row) <= rev:
            break
        out.append(row)
    out.reverse()
    return out


def _last_rev(rows: dict[str, _Row]) -> int:
    last = next(reversed(rows.values()), None)
    return -1 if last is None else _rev_of(last)


def in_revision_order(state: State) -> bool:
    """Whether both maps list their rows by ascending revision (what ``changed_since``
    relies on; ``order_by_revision`` restores it)."""
    for rows in (state["work"].values(), state["assign"].values()):
        last = -1
        for row in rows:
            rev = _rev_of(row)
            if rev < last:
                return False
            last = rev
    return True


def order_by_revision(state: State) -> None:
    """Put both maps in revision order (in place; rows of one revision keep their
    order).  For a state that comes from elsewhere -- a dump, a copy, a snapshot, an
    older version's leader -- whose maps may be in another order; a no-op, after
    one O(jobs) check, for one already in order."""
    if in_revision_order(state):
        return
    work = sorted(state["work"].items(), key=lambda kv: _rev_of(kv[1]))
    assign = sorted(state["assign"].items(), key=lambda kv: _rev_of(kv[1]))
    state["work"].clear()
    state["work"].update(work)
    state["assign"].clear()
    state["assign"].update(assign)


def changed_since(state: State, rev: int) -> list[WorkRow]:
    """Work items changed after revision ``rev``, oldest change first (no copies).

    Costs the changes, not the ledger: the map is in revision order (``_change``)."""
    return _newer_than(state["work"], rev)


def forgotten_since(state: State, rev: int) -> list[str] | None:
    """Ids forgotten (pruned) after revision ``rev``; None when that is no longer
    known (``rev`` is below ``forgot_floor``: a reader must compare every id)."""
    if rev < state.get("forgot_floor", 0):
        return None
    return [
        i
        for r, ids in state.get("forgot", [])
        if isinstance(r, int) and r > rev and isinstance(ids, list)
        for i in ids
        if isinstance(i, str)
    ]


def changes(state: State, rev: int) -> dict[str, object] | None:
    """Everything a copy at revision ``rev`` lacks, as plain data; None when the
    forgotten ids since then are no longer known (the copy must be replaced).

    ``apply_changes`` brings the copy to this state's revision; records are
    small and travel whole.
    """
    forgotten = forgotten_since(state, rev)
    if forgotten is None or rev > state.get("rev", 0):
        return None
    return {
        "work": changed_since(state, rev),
        "assign": _newer_than(state["assign"], rev),
        "forgotten": forgotten,
        "records": state["records"],
        "counters": {
            "term": state.get("term", 0),
            "seq": state.get("seq", 0),
            "rev": state.get("rev", 0),
            "pruned": state.get("pruned", 0),
        },
    }


def apply_changes(copy: State, delta: Mapping[str, object]) -> None:
    """Bring a read copy up to date with a ``changes`` delta (from this ledger's
    leader, already JSON-decoded).

    A malformed delta raises KeyError (a part missing) or TypeError (a part of the
    wrong shape) before the copy changes; the caller then takes a whole copy.
    """
    forgotten, work, assign = delta["forgotten"], delta["work"], delta["assign"]
    records, counters = delta["records"], delta["counters"]
    if not isinstance(forgotten, list) or not all(isinstance(i, str) for i in forgotten):
        raise TypeError("changes: forgotten must be a list of work ids")
    if not isinstance(work, list) or not isinstance(assign, list):
        raise TypeError("changes: work and assign must be lists")
    work_rows = [w for w in work if _is_work_row(w)]
    assign_rows = [a for a in assign if _is_assign_row(a)]
    if len(work_rows) != len(work) or len(assign_rows) != len(assign):
        raise TypeError("changes: a work item or an assignment lacks a field")
    if not _is_records(records):
        raise TypeError("changes: records must map kinds to keys to objects")
    if not isinstance(counters, dict):
        raise TypeError("changes: counters must be an object")
    numbers = {k: counters[k] for k in ("term", "seq", "rev", "pruned") if k in counters}
    if not all(isinstance(n, int) for n in numbers.values()):
        raise TypeError("changes: counters must be integers")
    for work_id in forgotten:
        copy["work"].pop(work_id, None)
        copy["assign"].pop(work_id, None)
    # moved to the end in revision order (a leader of an older version sends them in
    # its map's order), so the copy stays in revision order too
    work_rows.sort(key=_rev_of)
    assign_rows.sort(key=_rev_of)
    for w in work_rows:
        copy["work"].pop(w["work_id"], None)
    for a in assign_rows:
        copy["assign"].pop(a["job_id"], None)
    kept = (_last_rev(copy["work"]), _last_rev(copy["assign"]))
    for w in work_rows:
        copy["work"][w["work_id"]] = w
    for a in assign_rows:
        copy["assign"][a["job_id"]] = a
    if (work_rows and kept[0] > _rev_of(work_rows[0])) or (
        assign_rows and kept[1] > _rev_of(assign_rows[0])
    ):
        order_by_revision(copy)  # a delta older than the copy: never from a sound leader
    copy["records"] = records
    term, seq, rev, pruned = (counters.get(k) for k in ("term", "seq", "rev", "pruned"))
    if isinstance(term, int):
        copy["term"] = term
    if isinstance(seq, int):
        copy["seq"] = seq
    if isinstance(rev, int):
        copy["rev"] = rev
    if isinstance(pruned, int):
        copy["pruned"] = pruned


def counts(state: State) -> dict[str, int]:
    out = {s.value: 0 for s in JobStatus}
    for w in state["work"].values():
        out[w["status"]] += 1
    return out


class Tally:
    """``counts`` kept up by revision: a read costs what changed since the last one.

    ``/status`` asks up to four times a second, under the lock the Raft thread
    applies entries under; a whole count of a 20,000-job ledger each time kept that
    lock busy on a loaded leader.  The tally starts over when it is handed another
    state object, when the revision went back, when the forgotten ids since its
    last read are no longer listed, and every ``RECOUNT_EVERY`` reads whatever
    happened (so a state swapped in at the same address heals).  Not thread-safe:
    call it under the state's lock.
    """

    RECOUNT_EVERY = 600

    def __init__(self) -> None:
        self._of: int | None = None  # id() of the state last counted
        self._rev = -1
        self._reads = 0
        self._status: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def counts(self, state: State) -> dict[str, int]:
        rev = state.get("rev", 0)
        self._reads += 1
        forgotten = None
        if id(state) == self._of and rev >= self._rev and self._reads < self.RECOUNT_EVERY:
            forgotten = forgotten_since(state, self._rev)
        if forgotten is None:
            self._status = {k: w["status"] for k, w in state["work"].items()}
            self._counts = counts(state)
            self._reads = 0
        else:
            for work_id in forgotten:
                self._drop(work_id)
            for w in changed_since(state, self._rev):
                self._drop(w["work_id"])
                self._status[w["work_id"]] = w["status"]
                self._counts[w["status"]] = self._counts.get(w["status"], 0) + 1
        self._of, self._rev = id(state), rev
        return dict(self._counts)

    def _drop(self, work_id: str) -> None:
        old = self._status.pop(work_id, None)
        if old is not None:
            self._counts[old] -= 1


def jobs_of(state: State, node: str) -> list[AssignRow]:
    """Active assignments on ``node``, oldest first."""
    out = [a for a in state["assign"].values() if a["node_id"] == node and a["status"] in ACTIVE]
    out.sort(key=lambda a: (a["assigned_at"], a["job_id"]))
    return out
