"""A tick's new jobs reach the ledger in two writes, not two per job.

Run D of the soak (20 s jobs) showed it: a promotion's tick placed 30 distribute
jobs one by one, an ``add_work``, an ``assign`` and a send each, and took 3.8 s
on the loaded Raft while hosts waited for self-play.  Now every add goes in one
commit and the assignments of the jobs added in a second; each job is still sent
after its own fence, and a refused add (a deposed leader) stops the tick there.

Real redis-server, the real Beat on the in-memory ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.api import NewJob
from ringrift_fleet.execution.fencing import current_fence
from tests.support.memory_ledger import Clock, MemoryLedger, TaskStates, selfplay_beat

pytestmark = pytest.mark.timeout(60)


class CountingLedger(MemoryLedger):
    """The real state machine, recording which operations went in one call, and
    refusing (as a deposed leader's ledger would) every add from ``refuse_from`` on."""

    def __init__(self, node_id: str, refuse_from: int | None = None) -> None:
        super().__init__(node_id)
        self.together: list[list[str]] = []
        self.refuse_from = refuse_from
        self.adds = 0

    def propose_many(
        self, ops: Sequence[dict[str, Any]], timeout: float | None = None
    ) -> list[sm.Result]:
        self.together.append([str(op["op"]) for op in ops])
        out: list[sm.Result] = []
        for op in ops:
            if op["op"] == "add_work.v1":
                self.adds += 1
                if self.refuse_from is not None and self.adds > self.refuse_from:
                    out.append({"ok": False, "reason": "stale fence: term 1 < 2"})
                    continue
            out += super().propose_many([op], timeout)
        return out


def _beat(ledger: CountingLedger, r: Any, sent: list[tuple[str, dict[str, Any]]]) -> Any:
    def send(job_type: Any, kwargs: Any, *, job_id: str, fence: dict[str, Any], **_: Any) -> str:
        # what a worker would check first: the fence published for this job
        sent.append((job_id, {"fence": fence, "published": current_fence(r, job_id)}))
        return ""

    backend: TaskStates = {}
    return selfplay_beat(
        ledger, r, Clock(1000.0), slots={"a": 3, "b": 3, "c": 2}, backend=backend, send=send
    )


def test_a_ticks_new_jobs_go_in_two_writes_and_each_is_sent_after_its_fence(
    redis_server: Any,
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    ledger = CountingLedger("leader")
    sent: list[tuple[str, dict[str, Any]]] = []
    beat = _beat(ledger, r, sent)
    report = beat.tick()

    assert report.actions["Enqueue"] == 8 and not report.refused
    jobs = sorted(w.work_id for w in ledger.items() if w.status.is_active)
    assert len(jobs) == 8
    placing = [c for c in ledger.together if "add_work.v1" in c or "assign.v1" in c]
    assert placing == [["add_work.v1"] * 8, ["assign.v1"] * 8], ledger.together
    assert sorted(job for job, _ in sent) == jobs, "every placed job sent once"
    for job, seen in sent:
        current = ledger.current(job)
        assert current is not None and current.attempt == 1
        assert seen["fence"]["token"] == current.fence_token
        assert seen["published"] == current.fence_token


def test_a_refused_add_stops_the_tick_there_and_nothing_after_it_goes_out(
    redis_server: Any,
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    ledger = CountingLedger("leader", refuse_from=3)
    sent: list[tuple[str, dict[str, Any]]] = []
    beat = _beat(ledger, r, sent)
    report = beat.tick()

    active = sorted(w.work_id for w in ledger.items() if w.status.is_active)
    assert len(active) == 3, "the three adds before the refusal"
    assert sorted(job for job, _ in sent) == active, "those three sent, nothing after"
    assert report.refused and "stale fence" in report.refused[0]


def test_a_job_not_added_is_not_assigned(redis_server: Any) -> None:
    """As one by one: an add the ledger refuses leaves no assignment behind."""
    ledger = CountingLedger("leader", refuse_from=1)
    answers = ledger.add_and_assign(
        [
            NewJob("j1", {"config": "hex8_2p"}, "selfplay", "a"),
            NewJob("j2", {"config": "hex8_2p"}, "selfplay", "b"),
        ]
    )
    assert answers[0][0] and answers[0][1] is not None and answers[0][1].node_id == "a"
    assert answers[1] == (False, None)
    assert ledger.current("j2") is None and ledger.get("j2") is None
    assert ledger.last_error is not None and "stale fence" in ledger.last_error
