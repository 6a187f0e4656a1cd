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


def claim(i: int, node: str = "a") -> dict[str, Any]:
    return sm.make_op("claim_work.v1", now=2.0, term=0, work_id=f"w{i}", node=node)


def test_one_writers_many_operations_go_as_one_entry_each_with_its_answer() -> None:
    log = SlowLog()
    group = GroupCommit(log.commit)
    ops = [add(1), claim(1), claim(1, "b"), add(1), claim(2)]
    results = group.submit_many(ops, 2.0)
    assert len(log.entries) == 1 and log.entries[0]["op"] == sm.BATCH
    alone = sm.new_state()
    assert results == [sm.apply(alone, o) for o in ops]  # as if applied one by one
    assert [r["ok"] for r in results] == [True, True, False, True, False]
    assert group.submit_many([], 1.0) == [] and len(log.entries) == 1


def test_more_operations_than_a_batch_holds_go_in_order_over_several_entries() -> None:
    log = SlowLog()
    group = GroupCommit(log.commit, max_batch=4)
    ops = [o for i in range(5) for o in (add(i), claim(i))]  # each claim after its add
    results = group.submit_many(ops, 2.0)
    assert all(r["ok"] for r in results), results
    assert [len(e["ops"]) if e["op"] == sm.BATCH else 1 for e in log.entries] == [4, 4, 2]


def test_batch_writers_and_single_writers_share_entries_and_keep_their_order() -> None:
    log = SlowLog()
    group = GroupCommit(log.commit, max_batch=8)
    answers: dict[str, list[sm.Result]] = {}

    def many(name: str, base: int) -> None:
        ops = [o for i in range(base, base + 10) for o in (add(i), claim(i))]
        answers[name] = group.submit_many(ops, 10.0)

    def one(i: int) -> None:
        answers[f"one{i}"] = [group.submit(add(100 + i), 10.0)]

    threads = [threading.Thread(target=many, args=(f"m{k}", 10 * k)) for k in range(3)]
    threads += [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 13
    assert all(r["ok"] for rs in answers.values() for r in rs), answers
    assert sum(len(rs) for rs in answers.values()) == 70
    assert all(w["status"] == "claimed" for k, w in log.state["work"].items() if int(k[1:]) < 30)
    assert len(log.entries) < 70


def test_a_batch_behind_a_stuck_commit_gives_up_at_its_timeout() -> None:
    gate = threading.Event()

    def stuck(op: dict[str, Any], timeout: float) -> sm.Result:
        gate.wait(5.0)
        return {"ok": True}

    group = GroupCommit(stuck)
    first = threading.Thread(target=lambda: group.submit(add(0), 5.0))
    first.start()
    time.sleep(0.1)  # the first write is in flight
    started = time.monotonic()
    results = group.submit_many([add(1), add(2)], 0.3)
    waited = time.monotonic() - started
    gate.set()
    first.join(10)
    assert [r["reason"] for r in results] == ["no quorum within the timeout"] * 2
    assert waited < 2.0, f"waited {waited:.2f}s for a 0.3 s timeout"
