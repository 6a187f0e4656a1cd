"""Group commit: concurrent writers share log entries and each still gets its own answer."""

from __future__ import annotations

import threading
import time
from typing import Any

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.raft_state import GroupCommit


class SlowLog:
    """Stands in for the Raft round trip: applies entries to a real state, slowly."""

    def __init__(self, fail: bool = False) -> None:
        self.state = sm.new_state()
        self.entries: list[dict[str, Any]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def commit(self, op: dict[str, Any], timeout: float) -> sm.Result:
        time.sleep(0.005)
        if self.fail:
            raise RuntimeError("disk on fire")
        with self.lock:
            self.entries.append(op)
            if op.get("op") == sm.BATCH:
                return sm.apply_batch(self.state, op)
            return sm.apply(self.state, op)


def add(i: int) -> dict[str, Any]:
    return sm.make_op("add_work.v1", now=1.0, term=0, work_id=f"w{i}", payload={})


def test_a_lone_writer_sends_plain_entries() -> None:
    log = SlowLog()
    group = GroupCommit(log.commit)
    assert group.submit(add(1), 1.0)["ok"]
    assert group.submit(add(1), 1.0) == {"ok": True, "existing": True}
    assert [e["op"] for e in log.entries] == ["add_work.v1", "add_work.v1"]


def test_concurrent_writers_are_batched_and_each_gets_its_own_result() -> None:
    log = SlowLog()
    group = GroupCommit(log.commit)
    results: dict[int, sm.Result] = {}

    def writer(i: int) -> None:
        results[i] = group.submit(add(i % 20), 5.0)  # 40 writers, 20 ids: pairs collide

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 40 and all(r["ok"] for r in results.values())
    fresh = [r for r in results.values() if "existing" not in r]
    assert len(fresh) == 20  # each id created once, its twin saw it existing
    assert sorted(log.state["work"]) == sorted(f"w{i}" for i in range(20))
    assert len(log.entries) < 40
    assert any(e["op"] == sm.BATCH for e in log.entries)


def test_a_failing_commit_answers_every_waiter() -> None:
    group = GroupCommit(SlowLog(fail=True).commit)
    results: list[sm.Result] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(group.submit(add(i), 2.0)))
        for i in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 10
    assert all(not r["ok"] and "disk on fire" in r["reason"] for r in results)


def test_batches_apply_like_their_operations_alone() -> None:
    alone, batched = sm.new_state(), sm.new_state()
    ops = [add(1), add(1), sm.make_op("claim_work.v1", now=2.0, term=0, work_id="w1", node="a")]
    expected = [sm.apply(alone, o) for o in ops]
    out = sm.apply_batch(batched, {"op": sm.BATCH, "ops": ops})
    assert out == {"ok": True, "results": expected}
    assert alone == batched
    assert not sm.apply_batch(batched, {"op": sm.BATCH, "ops": []})["ok"]
    nested = sm.apply_batch(batched, {"op": sm.BATCH, "ops": [{"op": sm.BATCH, "ops": ops}]})
    assert nested["results"][0]["ok"] is False
