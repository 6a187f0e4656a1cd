"""The ledger's state machine: what a scheduler or an operator would see it do."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.consensus import ledger as sm


def op(name: str, term: int = 1, now: float = 100.0, **args: Any) -> dict[str, Any]:
    return sm.make_op(name, now=now, term=term, **args)


def fresh(*ops: dict[str, Any]) -> sm.State:
    state = sm.new_state()
    for o in ops:
        assert sm.apply(state, o)["ok"], o
    return state


def test_claim_is_won_once_and_repeatable_by_the_winner() -> None:
    state = fresh(op("add_work.v1", work_id="j", payload={"work_type": "selfplay"}))
    assert sm.apply(state, op("claim_work.v1", work_id="j", node="a"))["ok"]
    assert not sm.apply(state, op("claim_work.v1", work_id="j", node="b"))["ok"]
    again = sm.apply(state, op("claim_work.v1", work_id="j", node="a"))
    assert again == {"ok": True, "existing": True}
    assert state["work"]["j"]["attempts"] == 1


def test_add_work_takes_work_type_from_payload_and_rejects_unknown_types() -> None:
    state = fresh(op("add_work.v1", work_id="j", payload={"work_type": "training"}))
    assert state["work"]["j"]["work_type"] == "training"
    bad = sm.apply(state, op("add_work.v1", work_id="k", payload={"work_type": "mining"}))
    assert not bad["ok"] and "work_type" in bad["reason"]
    assert "k" not in state["work"]


def test_add_work_is_idempotent_for_the_same_content_only() -> None:
    state = fresh(op("add_work.v1", work_id="j", payload={"x": 1}))
    assert sm.apply(state, op("add_work.v1", work_id="j", payload={"x": 1}))["ok"]
    other = sm.apply(state, op("add_work.v1", work_id="j", payload={"x": 2}))
    assert not other["ok"] and "exists" in other["reason"]
    assert state["work"]["j"]["payload"] == {"x": 1}


def test_fail_requeues_while_attempts_remain_then_fails_for_good() -> None:
    state = fresh(op("add_work.v1", work_id="j", payload={}, max_attempts=2))
    for attempt, expected in ((1, "pending"), (2, "failed")):
        assert sm.apply(state, op("claim_work.v1", work_id="j", node="a"))["ok"]
        assert state["work"]["j"]["attempts"] == attempt
        result = sm.apply(state, op("fail_work.v1", work_id="j", error="oom"))
        assert result == {"ok": True, "status": expected}
    assert state["work"]["j"]["error"] == "oom"
    assert not sm.apply(state, op("claim_work.v1", work_id="j", node="a"))["ok"]


def test_pending_orders_by_priority_then_age_and_filters_by_type() -> None:
    state = fresh(
        op("add_work.v1", work_id="low", payload={}, priority=0),
        op("add_work.v1", work_id="high", payload={}, priority=5),
        op("add_work.v1", work_id="low2", payload={}, priority=0),
        op("add_work.v1", work_id="train", payload={"work_type": "training"}, priority=9),
    )
    assert [w["work_id"] for w in sm.pending(state)] == ["train", "high", "low", "low2"]
    assert [w["work_id"] for w in sm.pending(state, limit=2, work_type="selfplay")] == [
        "high",
        "low",
    ]


def test_assignment_fence_names_term_job_and_attempt_and_stale_results_are_refused() -> None:
    state = fresh(op("add_work.v1", work_id="j", payload={}))
    first = sm.apply(state, op("assign.v1", term=3, job_id="j", node="a", job_type="selfplay"))
    assert first["assignment"]["fence_token"] == "t3:j:a1"
    voided = sm.apply(state, op("reassign_jobs_of.v1", term=3, node="a"))
    assert voided == {"ok": True, "jobs": ["j"]}
    assert state["work"]["j"]["status"] == "pending"
    second = sm.apply(state, op("assign.v1", term=4, job_id="j", node="b", job_type="selfplay"))
    assert second["assignment"]["fence_token"] == "t4:j:a2"
    stale = sm.apply(
        state, op("accept_result.v1", term=4, job_id="j", fence="t3:j:a1", result={"x": 1})
    )
    assert not stale["ok"] and "stale" in stale["reason"]
    assert sm.apply(
        state, op("accept_result.v1", term=4, job_id="j", fence="t4:j:a2", result={"x": 2})
    )["ok"]
    assert state["work"]["j"]["status"] == "completed"
    assert state["work"]["j"]["result"] == {"x": 2}


def test_a_job_active_on_one_node_cannot_be_assigned_to_another() -> None:
    state = fresh(op("assign.v1", job_id="j", node="a", job_type="training"))
    refused = sm.apply(state, op("assign.v1", job_id="j", node="b", job_type="training"))
    assert not refused["ok"] and "active on a" in refused["reason"]
    assert [a["job_id"] for a in sm.jobs_of(state, "a")] == ["j"]
    assert sm.jobs_of(state, "b") == []


def test_complete_with_a_stale_fence_is_refused() -> None:
    state = fresh(
        op("add_work.v1", work_id="j", payload={}),
        op("assign.v1", term=2, job_id="j", node="a", job_type="selfplay"),
    )
    assert not sm.apply(state, op("complete_work.v1", term=2, work_id="j", fence="t1:j:a1"))["ok"]
    assert sm.apply(state, op("complete_work.v1", term=2, work_id="j", fence="t2:j:a1"))["ok"]


def test_operations_from_a_deposed_leader_are_refused_by_term() -> None:
    state = fresh(op("put_record.v1", term=5, kind="model", key="champion", value={"v": 2}))
    old = sm.apply(state, op("put_record.v1", term=4, kind="model", key="champion", value={"v": 1}))
    assert not old["ok"] and "stale fence" in old["reason"]
    assert state["records"]["model"]["champion"] == {"v": 2}


def test_malformed_operations_are_refused_with_a_reason_not_raised() -> None:
    state = sm.new_state()
    for bad in (
        None,
        "add_work",
        {"op": "drop_tables.v1"},
        {"op": "add_work.v1", "now": "yesterday"},
        {"op": "add_work.v1", "now": 1.0, "term": -1, "work_id": "j"},
        op("add_work.v1", work_id="", payload={}),
        op("add_work.v1", work_id="j", payload={"f": float("nan")}),
        op("add_work.v1", work_id="j", payload={"s": {1, 2}}),
        op("add_work.v1", work_id="j", payload=[], priority=0),
        op("add_work.v1", work_id="j", payload={}, max_attempts=0),
        op("put_record.v1", kind="k", key="x", value="not a dict"),
        op("claim_work.v1", work_id="missing", node="a"),
    ):
        result = sm.apply(state, bad)
        assert result["ok"] is False and result["reason"]
    assert state == sm.new_state()


def test_records_put_and_delete() -> None:
    state = fresh(op("put_record.v1", kind="cursor", key="hex8", value={"games": 10}))
    assert state["records"] == {"cursor": {"hex8": {"games": 10}}}
    assert sm.apply(state, op("delete_record.v1", kind="cursor", key="hex8"))["ok"]
    assert state["records"] == {}


def _finished(work_id: str, now: float, node: str = "a") -> list[dict[str, Any]]:
    """Ops that add ``work_id``, place it on ``node`` and complete it at ``now``."""
    return [
        op("add_work.v1", now=now - 10, work_id=work_id, payload={"work_type": "selfplay"}),
        op("assign.v1", now=now - 9, job_id=work_id, node=node, job_type="selfplay"),
        op("start_work.v1", now=now - 8, work_id=work_id, node=node),
        op("accept_result.v1", now=now, job_id=work_id, fence=f"t1:{work_id}:a1", result={}),
    ]


def test_pruning_forgets_finished_jobs_and_writes_their_summary_in_the_same_step() -> None:
    state = fresh(
        *_finished("old", 100.0),
        *_finished("new", 500.0),
        op("add_work.v1", work_id="live", payload={}),
    )
    assert sm.prunable(state, before=200.0) == ["old"]
    assert sm.prunable(state, before=1000.0) == ["old", "new"]
    assert sm.prunable(state, before=1000.0, keep=frozenset({"old"})) == ["new"]
    summary = {"kind": "history", "key": "hex8_2p", "value": {"jobs": 1}}
    result = sm.apply(state, op("prune_work.v1", ids=["old"], records=[summary]))
    assert result == {"ok": True, "pruned": 1}
    assert "old" not in state["work"] and "old" not in state["assign"]
    assert state["records"]["history"]["hex8_2p"] == {"jobs": 1}
    assert state["pruned"] == 1 and set(state["work"]) == {"new", "live"}
    # a late result of the forgotten attempt is refused, as any stale fence is
    late = sm.apply(state, op("accept_result.v1", job_id="old", fence="t1:old:a1", result={}))
    assert not late["ok"] and "stale fence" in late["reason"]


def test_pruning_a_live_job_refuses_the_whole_operation_and_changes_nothing() -> None:
    state = fresh(
        *_finished("done", 100.0),
        op("add_work.v1", work_id="queued", payload={}),
        op("assign.v1", job_id="placed", node="b", job_type="training"),
    )
    before = copy.deepcopy(state)
    for live in ("queued", "placed"):
        result = sm.apply(state, op("prune_work.v1", ids=["done", live], records=[]))
        assert not result["ok"] and live in result["reason"]
        assert state == before
    for bad in ([], ["x"] * (sm.MAX_BATCH + 1), "done", [""], [7]):
        assert not sm.apply(state, op("prune_work.v1", ids=bad))["ok"]
    bad_record = sm.apply(state, op("prune_work.v1", ids=["done"], records=[{"kind": "k"}]))
    assert not bad_record["ok"] and "records[0].key" in bad_record["reason"]
    assert state == before


# --- properties over random operation sequences ------------------------------------------

IDS = st.sampled_from(["j1", "j2", "j3"])
NODES = st.sampled_from(["a", "b", "c"])
TYPES = st.sampled_from(["selfplay", "training", "bogus"])


def _ops() -> st.SearchStrategy[dict[str, Any]]:
    term = st.integers(0, 4)
    return st.one_of(
        st.builds(
            lambda t, w, p, m: op(
                "add_work.v1", term=t, work_id=w, payload={"p": p}, max_attempts=m
            ),
            term,
            IDS,
            st.integers(0, 1),
            st.integers(0, 3),
        ),
        st.builds(lambda t, w, n: op("claim_work.v1", term=t, work_id=w, node=n), term, IDS, NODES),
        st.builds(lambda t, w, n: op("start_work.v1", term=t, work_id=w, node=n), term, IDS, NODES),
        st.builds(lambda t, w: op("complete_work.v1", term=t, work_id=w, result={}), term, IDS),
        st.builds(lambda t, w: op("fail_work.v1", term=t, work_id=w, error="e"), term, IDS),
        st.builds(lambda t, w: op("cancel_work.v1", term=t, work_id=w), term, IDS),
        st.builds(
            lambda t, w, n, k: op("assign.v1", term=t, job_id=w, node=n, job_type=k),
            term,
            IDS,
            NODES,
            TYPES,
        ),
        st.builds(lambda t, n: op("reassign_jobs_of.v1", term=t, node=n), term, NODES),
        st.builds(
            lambda t, w, a: op("accept_result.v1", term=t, job_id=w, fence=f"t{t}:{w}:a{a}"),
            term,
            IDS,
            st.integers(1, 3),
        ),
        st.builds(
            lambda t, ids: op(
                "prune_work.v1",
                term=t,
                ids=ids,
                records=[{"kind": "history", "key": "k", "value": {"ids": sorted(ids)}}],
            ),
            term,
            st.lists(IDS, min_size=1, max_size=3),
        ),
        st.builds(lambda x: x, st.none() | st.integers() | st.dictionaries(st.text(), st.text())),
    )


def _invariants(state: sm.State) -> None:
    for w in state["work"].values():
        assert 0 <= w["attempts"] <= w["max_attempts"]
        assert (w["claimed_by"] is not None) == (w["status"] in sm.ACTIVE) or w["status"] in (
            "completed",
            "cancelled",
        )
    for job_id, a in state["assign"].items():
        w = state["work"].get(job_id)
        if a["status"] in sm.ACTIVE and w is not None:
            assert w["status"] in sm.ACTIVE and w["claimed_by"] == a["node_id"]


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops(), max_size=40))
def test_any_sequence_applies_without_raising_and_keeps_the_invariants(ops: list[Any]) -> None:
    state = sm.new_state()
    for o in ops:
        before = copy.deepcopy(state)
        result = sm.apply(state, o)
        assert isinstance(result["ok"], bool)
        if not result["ok"]:
            assert state == before, f"refused {o} but changed state"
        _invariants(state)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ops(), max_size=40))
def test_replaying_a_log_gives_the_same_state_and_repeats_change_nothing(ops: list[Any]) -> None:
    a, b = sm.new_state(), sm.new_state()
    for o in ops:
        first = sm.apply(a, o)
        sm.apply(b, o)
        if first["ok"]:
            once = copy.deepcopy(a)
            sm.apply(a, o)  # a retried command applied a second time
            assert a == once, f"{o} is not idempotent"
            sm.apply(b, o)
    assert a == b


COPIED = ("work", "assign", "records", "term", "seq", "rev", "pruned")


def _lifecycles() -> st.SearchStrategy[dict[str, Any]]:
    """One term, jobs that get somewhere: placed, run, ended, forgotten, added again."""
    return st.one_of(
        st.builds(lambda w: op("add_work.v1", work_id=w, payload={}), IDS),
        st.builds(lambda w, n: op("assign.v1", job_id=w, node=n, job_type="selfplay"), IDS, NODES),
        st.builds(lambda w, n: op("claim_work.v1", work_id=w, node=n), IDS, NODES),
        st.builds(lambda w, n: op("start_work.v1", work_id=w, node=n), IDS, NODES),
        st.builds(
            lambda w, a: op("accept_result.v1", job_id=w, fence=f"t1:{w}:a{a}", result={}),
            IDS,
            st.integers(1, 2),
        ),
        st.builds(lambda w: op("complete_work.v1", work_id=w, result={"g": 1}), IDS),
        st.builds(lambda w: op("fail_work.v1", work_id=w, error="e"), IDS),
        st.builds(lambda w: op("cancel_work.v1", work_id=w), IDS),
        st.builds(lambda n: op("reassign_jobs_of.v1", node=n), NODES),
        st.builds(lambda ids: op("prune_work.v1", ids=ids), st.lists(IDS, min_size=1, max_size=3)),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_lifecycles(), max_size=60),
    st.sets(st.integers(0, 59), max_size=8),
)
def test_a_copy_kept_up_by_changes_equals_the_replica(ops: list[Any], syncs: set[int]) -> None:
    import json

    state, sparse, eager = sm.new_state(), sm.new_state(), sm.new_state()
    for i, o in enumerate([*ops, None]):
        if o is not None:
            sm.apply(state, o)
        # one copy catches up after every operation, one now and then (and at the end)
        for copy_ in (eager, sparse) if i in syncs or o is None else (eager,):
            delta = sm.changes(state, copy_["rev"])
            assert delta is not None
            sm.apply_changes(copy_, json.loads(json.dumps(delta)))  # as it travels
    for copy_ in (eager, sparse):
        assert {k: copy_.get(k, 0) for k in COPIED} == {k: state.get(k, 0) for k in COPIED}
        assert sm.in_revision_order(copy_)


def _scan(rows: dict[str, Any], rev: int) -> list[Any]:
    """What changed after ``rev``, found the slow way: every row looked at."""
    return sorted((r for r in rows.values() if r.get("rev", 0) > rev), key=lambda r: r["rev"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_lifecycles(), max_size=60))
def test_changes_read_from_the_end_find_exactly_what_a_whole_scan_finds(ops: list[Any]) -> None:
    state = sm.new_state()
    for o in ops:
        sm.apply(state, o)
        assert sm.in_revision_order(state)
    for rev in range(state["rev"] + 1):
        assert sm.changed_since(state, rev) == _scan(state["work"], rev)
        delta = sm.changes(state, rev)
        if delta is not None:
            assert delta["assign"] == _scan(state["assign"], rev)


@settings(max_examples=100, deadline=None)
@given(st.lists(_lifecycles(), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_a_state_in_another_order_is_put_back_in_revision_order(ops: list[Any], rnd: Any) -> None:
    """A dump, a snapshot or a copy from an older version lists its rows in another
    order: once ordered, reading changes from the end misses nothing."""
    state = sm.new_state()
    for o in ops:
        sm.apply(state, o)
    shuffled = copy.deepcopy(state)
    for key in ("work", "assign"):
        rows = list(shuffled[key].items())
        rnd.shuffle(rows)
        shuffled[key] = dict(rows)
    sm.order_by_revision(shuffled)
    assert sm.in_revision_order(shuffled) and shuffled == state
    for rev in range(state["rev"] + 1):
        assert sm.changed_since(shuffled, rev) == _scan(state["work"], rev)


def test_a_delta_in_another_order_leaves_the_copy_in_revision_order() -> None:
    state = fresh(*_finished("a", 100.0), *_finished("b", 110.0), *_finished("c", 120.0))
    copy_ = copy.deepcopy(state)
    for o in (op("add_work.v1", work_id="d", payload={}), op("cancel_work.v1", work_id="d")):
        assert sm.apply(state, o)["ok"]
    assert sm.apply(state, op("cancel_work.v1", work_id="a"))["ok"] is False  # finished
    delta = sm.changes(state, copy_["rev"])
    assert delta is not None
    sm.apply_changes(copy_, {**delta, "work": list(reversed(delta["work"]))})
    assert sm.in_revision_order(copy_) and copy_["work"] == state["work"]
    # rows older than the copy's newest (never from a sound leader): reordered, not lost
    stale = copy.deepcopy(state)
    stale["work"]["a"]["rev"] = 1
    sm.apply_changes(copy_, {**delta, "work": [stale["work"]["a"]]})
    assert sm.in_revision_order(copy_)
    assert sm.changed_since(copy_, 1) and sm.changed_since(copy_, 0)[0]["work_id"] == "a"


def test_a_copy_too_far_behind_is_told_to_take_a_whole_copy() -> None:
    state = sm.new_state()
    for n in range(sm.FORGOT_KEPT + 2):
        for o in _finished(f"j{n}", 100.0 + n):
            sm.apply(state, o)
        assert sm.apply(state, op("prune_work.v1", now=500.0 + n, ids=[f"j{n}"]))["pruned"] == 1
    assert sm.changes(state, 0) is None  # the first prunes' ids are no longer listed
    recent = sm.changes(state, state["rev"] - 1)
    assert recent is not None and recent["forgotten"] == [f"j{sm.FORGOT_KEPT + 1}"]
    assert sm.changes(state, state["rev"] + 5) is None  # a copy from another history


def test_a_malformed_delta_raises_before_the_copy_changes() -> None:
    """The reader (consensus.remote) catches the error and takes a whole copy next."""
    import json

    state = fresh(*_finished("a", 100.0), op("add_work.v1", work_id="b", payload={}))
    reader = sm.new_state()
    delta = sm.changes(state, 0)
    assert delta is not None
    good = json.loads(json.dumps(delta))
    broken_row = json.loads(json.dumps(delta))
    del broken_row["work"][0]["status"]  # a row that lacks a field
    for bad in (
        broken_row,
        {**good, "forgotten": "a"},
        {**good, "counters": {"rev": "7"}},
        {**good, "records": {"summary": {"k": 3}}},
    ):
        before = copy.deepcopy(reader)
        try:
            sm.apply_changes(reader, bad)
        except TypeError:
            pass
        else:
            raise AssertionError(f"accepted {bad}")
        assert reader == before
    sm.apply_changes(reader, good)
    assert reader["work"] == state["work"] and reader["rev"] == state["rev"]


def test_a_whole_ledger_from_a_peer_is_checked_row_by_row() -> None:
    import json

    state = fresh(*_finished("a", 100.0), op("add_work.v1", work_id="b", payload={}))
    assert sm.apply(state, op("prune_work.v1", now=500.0, ids=["a"]))["pruned"] == 1
    copied = json.loads(json.dumps(state))  # as it travels, "forgot" entries as lists
    assert sm.is_state(copied)
    assert sm.is_state(sm.new_state())
    del copied["work"]["b"]["payload"]
    assert not sm.is_state(copied)
    assert not sm.is_state({**sm.new_state(), "assign": {"j": {"job_id": "j"}}})
    assert not sm.is_state({"work": {}, "assign": {}, "records": {}})  # no counters


@settings(max_examples=150, deadline=None)
@given(st.lists(_lifecycles(), max_size=60), st.sets(st.integers(0, 59), max_size=10))
def test_the_tally_kept_up_by_revision_counts_what_a_whole_count_does(
    ops: list[Any], reads: set[int]
) -> None:
    state, tally = sm.new_state(), sm.Tally()
    for i, o in enumerate(ops):
        sm.apply(state, o)
        if i in reads:
            assert tally.counts(state) == sm.counts(state)
    assert tally.counts(state) == sm.counts(state)


def test_the_tally_starts_over_for_another_state_or_one_gone_back() -> None:
    tally = sm.Tally()
    first = fresh(*_finished("a", 100.0), *_finished("b", 110.0))
    assert tally.counts(first)["completed"] == 2
    other = fresh(*(op("add_work.v1", work_id=f"x{n}", payload={}) for n in range(20)))
    assert tally.counts(other) == sm.counts(other)  # another object: counted afresh
    older = copy.deepcopy(first)
    assert older["rev"] < other["rev"]
    other.clear()  # the same object, gone back (a snapshot replaced it in place)
    other.update(older)
    assert tally.counts(other) == sm.counts(older)
    # replaced in place at the same revision: not noticed, but healed by the recount
    same = fresh(*(op("add_work.v1", work_id=f"y{n}", payload={}) for n in range(older["rev"])))
    assert same["rev"] == other["rev"]
    other.clear()
    other.update(same)
    seen = [tally.counts(other) for _ in range(sm.Tally.RECOUNT_EVERY)]
    assert seen[-1] == sm.counts(same)
    for n in range(sm.FORGOT_KEPT + 2):  # more prunes than are listed
        for o in _finished(f"j{n}", 200.0 + n):
            sm.apply(first, o)
        sm.apply(first, op("prune_work.v1", now=900.0, ids=[f"j{n}"]))
    assert tally.counts(first) == sm.counts(first)
