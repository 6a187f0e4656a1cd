"""A tick's results reach the ledger in one write, not one per job.

The fleet soak with 20 s jobs showed it: two promotions finished 60 sync jobs at
once, the leader wrote their results one after another (~0.1 s each on a loaded
Raft), and hosts sat idle for up to 7.6 s until it placed more self-play.  Each
result must still be judged on its own (a stale fence refused, a worker's refusal
or a failure sending the job back) exactly as before.

Real redis-server, the real Beat on the in-memory ledger; the result backend is a dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.execution.dispatch import task_id_for
from ringrift_fleet.models import JobStatus
from tests.support.memory_ledger import Clock, MemoryLedger, TaskStates, finish, selfplay_beat

pytestmark = pytest.mark.timeout(60)


class CountingLedger(MemoryLedger):
    """The real state machine, recording which operations went in one call."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.together: list[list[str]] = []

    def propose_many(
        self, ops: Sequence[dict[str, Any]], timeout: float | None = None
    ) -> list[sm.Result]:
        self.together.append([str(op["op"]) for op in ops])
        return super().propose_many(ops, timeout)


def test_a_ticks_results_go_to_the_ledger_in_one_call_each_judged_alone(
    redis_server: Any,
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    clock = Clock(1000.0)
    ledger = CountingLedger("leader")
    backend: TaskStates = {}
    beat = selfplay_beat(ledger, r, clock, slots={"a": 2, "b": 2, "c": 2}, backend=backend)
    beat.tick()
    jobs = sorted(w.work_id for w in ledger.items() if w.status.is_active)
    assert len(jobs) == 6
    done, stale, refused, failed = jobs[:3], jobs[3], jobs[4], jobs[5]
    for job in done:
        finish(ledger, backend, job, games=8)
    finish(ledger, backend, stale, fence={"token": "1:someone-else"})
    finish(ledger, backend, refused, status="refused", reason="a newer attempt holds the fence")
    current = ledger.current(failed)
    assert current is not None
    backend[task_id_for(failed, current.attempt)] = ("FAILURE", ValueError("bad board"))
    ledger.together.clear()
    clock.t += 1.0
    beat.tick()

    results = [c for c in ledger.together if "accept_result.v1" in c or "fail_work.v1" in c]
    assert len(results) == 1, ledger.together  # one call for the whole tick
    (ops,) = results
    assert ops.count("accept_result.v1") == 4 and ops.count("fail_work.v1") == 2

    def status(job: str) -> JobStatus:
        w = ledger.get(job)
        assert w is not None
        return w.status

    assert [status(j) for j in done] == [JobStatus.COMPLETED] * 3
    assert status(stale) is not JobStatus.COMPLETED  # another leader's attempt: refused
    counts = beat.counts()
    assert counts.fence_refusals["ledger_result"] == 1
    assert counts.fence_refusals["worker"] == 1
    assert counts.replacements[("selfplay", "worker_refused")] == 1
    assert counts.replacements[("selfplay", "job_failed")] == 1
    for job in (refused, failed):  # back to pending, then placed again: a new attempt
        current = ledger.current(job)
        assert current is not None and current.attempt == 2
    assert any("failed: ValueError: bad board" in text for _, text in beat.events)


def test_a_result_keeps_short_lists_whole_and_long_ones_cut_with_their_length(
    redis_server: Any,
) -> None:
    """A games sync listed every file it fetched and skipped (560 kB a job in the
    soak's ledger, as much as 20,000 self-play jobs); the ledger keeps 64 of each
    list and the count, Celery's result backend the whole result."""
    from ringrift_fleet.scheduler.interpreter import LEDGER_LIST_MAX

    r = redis.Redis.from_url(redis_server.url)
    clock = Clock(1000.0)
    ledger = CountingLedger("leader")
    backend: TaskStates = {}
    beat = selfplay_beat(ledger, r, clock, slots={"a": 1}, backend=backend)
    beat.tick()
    (job,) = [w.work_id for w in ledger.items() if w.status.is_active]
    names = [f"games/hex8_2p/g{i}.jsonl.gz" for i in range(3000)]
    task_id = finish(ledger, backend, job, games=8, fetched=names, skipped=names[:10])
    clock.t += 1.0
    beat.tick()
    w = ledger.get(job)
    assert w is not None and w.status is JobStatus.COMPLETED and w.result is not None
    assert w.result["fetched"] == names[:LEDGER_LIST_MAX]
    assert w.result["fetched_count"] == 3000
    assert w.result["skipped"] == names[:10] and "skipped_count" not in w.result
    assert w.result["games"] == 8
    assert len(backend[task_id][1]["fetched"]) == 3000, "the backend's result is whole"
