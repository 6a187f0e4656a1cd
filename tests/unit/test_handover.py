"""The consensus hand-over's pure parts: the Raft leader's gate and adopt_state.v1."""

from __future__ import annotations

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.handover import Round, gate


def ping(backend: str, **kw: object) -> dict[str, object]:
    return {"backend": backend, "is_leader": False, "holder": None, "store": [0, 0], **kw}


def test_a_raft_leader_asks_a_live_bully_leader_to_yield() -> None:
    r = Round({"n0": ping("bully", is_leader=True, epoch=4), "n1": ping("raft")}, voters=3)
    assert r.bully_leader() == ("n0", 4)
    assert gate(r, raft_state_term=0) == "yield"


def test_a_live_grant_or_too_few_answers_keeps_raft_waiting() -> None:
    held = Round({"n0": ping("bully", holder="n2"), "n1": ping("raft")}, voters=3)
    assert gate(held, 0) == "wait"
    alone = Round({"n1": ping("raft")}, voters=3)
    assert gate(alone, 0) == "wait"


def test_a_newer_bully_copy_is_adopted_before_leading() -> None:
    r = Round({"n0": ping("raft", store=[7, 40]), "n1": ping("raft", store=[7, 41])}, voters=3)
    assert r.newest_store() == (7, 41, "n1")
    assert gate(r, raft_state_term=3) == "adopt"
    assert gate(r, raft_state_term=7) == "lead"  # ours is as new (a mirror of ours)
    assert gate(r, raft_state_term=12) == "lead"


def bully_ledger(term: int) -> sm.State:
    s = sm.new_state()
    for i, op in enumerate(
        [
            sm.make_op("add_work.v1", now=1.0, term=term, work_id="a", payload={}),
            sm.make_op("add_work.v1", now=2.0, term=term, work_id="b", payload={}),
            sm.make_op("assign.v1", now=3.0, term=term, job_id="b", node="h", job_type="selfplay"),
            sm.make_op("put_record.v1", now=4.0, term=term, kind="model", key="c", value={"v": 1}),
        ]
    ):
        assert sm.apply(s, op)["ok"], i
    return s


def test_adopt_state_takes_the_newer_ledger_whole_and_raises_the_term_base() -> None:
    raft = sm.new_state()
    assert sm.apply(raft, sm.make_op("add_work.v1", now=0.5, term=2, work_id="old", payload={}))[
        "ok"
    ]
    bully = bully_ledger(term=5)
    op = sm.make_op("adopt_state.v1", now=9.0, term=3, state=bully, term_base=6)
    assert sm.apply(raft, op) == {"ok": True, "adopted": 2}
    assert set(raft["work"]) == {"a", "b"}
    assert raft["assign"]["b"]["fence_token"] == bully["assign"]["b"]["fence_token"]
    assert raft["records"] == bully["records"]
    assert raft["term"] == 5 and raft["term_base"] == 6
    # every reader catching up by revision takes the adopted ledger whole
    assert sm.changes(raft, bully["rev"]) is None
    assert {w["work_id"] for w in sm.changed_since(raft, bully["rev"])} == {"a", "b"}
    # new items sort after the adopted ones
    assert sm.apply(raft, sm.make_op("add_work.v1", now=10, term=7, work_id="c", payload={}))["ok"]
    assert raft["work"]["c"]["seq"] > raft["work"]["b"]["seq"]
    # a second (retried or stale) hand-over changes nothing
    again = sm.make_op("adopt_state.v1", now=11.0, term=7, state=bully, term_base=6)
    assert sm.apply(raft, again)["existing"] is True
    assert "c" in raft["work"]


def test_adopt_state_refuses_nonsense_without_changing_anything() -> None:
    s = bully_ledger(term=1)
    before = repr(s)
    for bad in ({"work": []}, "x", {"work": {}, "assign": {}, "records": {}, "term": -1}):
        r = sm.apply(s, sm.make_op("adopt_state.v1", now=1.0, term=1, state=bad, term_base=0))
        assert r["ok"] is False, bad
    assert repr(s) == before


def test_adopt_state_refuses_a_ledger_with_a_malformed_row_without_changing_anything() -> None:
    raft = sm.new_state()
    bully = bully_ledger(term=5)
    del bully["work"]["a"]["status"]  # a row no reader could use
    before = repr(raft)
    r = sm.apply(raft, sm.make_op("adopt_state.v1", now=9.0, term=3, state=bully, term_base=6))
    assert r == {"ok": False, "reason": "state.work must map work ids to work items"}
    assert repr(raft) == before
