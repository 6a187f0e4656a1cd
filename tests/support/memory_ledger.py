"""The real ledger state machine in one process: a replica without replication.

Scheduler tests use it where the point is what the scheduler does with a
ledger (two leaders with diverged replicas, a leader dying mid-plan), not how
Raft replicates it; the consensus tests cover replication.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.api import Ledger


class MemoryLedger(Ledger):
    def __init__(self, node_id: str, term: int = 1, *, leading: bool = True, state: Any = None):
        super().__init__()
        self.node_id = node_id
        self.state = sm.new_state() if state is None else state
        self.lock = threading.RLock()
        self._term = term
        self.leading = leading

    def propose(self, op: dict[str, Any], timeout: float | None = None) -> sm.Result:
        with self.lock:
            return sm.apply(self.state, op)

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self.lock:
            yield self.state

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str | None:
        return self.node_id if self.leading else None

    def term(self) -> int:
        return self._term


def sharing(other: MemoryLedger, node_id: str, term: int) -> MemoryLedger:
    """A second leader on the same replicated state (what Raft would give both)."""
    led = MemoryLedger(node_id, term, state=other.state)
    led.lock = other.lock
    return led


class Clock:
    """A clock a test or benchmark moves by hand (``clock.t += 86400``)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def idle_beat(ledger: MemoryLedger, policy: Any, clock: Clock) -> Any:
    """A scheduler beat on ``ledger`` with no hosts, sending nothing, reading no
    results: what is under test is how it reads, folds and prunes the ledger."""
    from ringrift_fleet.scheduler.beat import Beat

    return Beat(
        ledger=ledger,
        leadership=ledger,
        redis=None,
        policy=policy,
        hosts=lambda: [],
        send=lambda *a, **k: "",
        read_result=lambda task_id: ("PENDING", None),
        clock=clock,
    )


TaskStates = dict[str, tuple[str, Any]]  # task id -> (Celery state, value): a result backend


def selfplay_beat(
    ledger: MemoryLedger,
    redis: Any,
    clock: Clock,
    *,
    slots: dict[str, int],
    backend: TaskStates,
    read_result: Any = None,
    read_results: Any = None,
    send: Any = None,
) -> Any:
    """A scheduler beat placing hex8_2p self-play (never training) on hosts with
    ``slots``, sending nowhere (a worker "took" each message at once) unless ``send``
    says otherwise, reading task states from ``backend`` unless
    ``read_result``/``read_results`` say otherwise."""
    from ringrift_fleet.scheduler.beat import Beat
    from ringrift_fleet.scheduler.settings import SchedulerPolicy
    from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
    from ringrift_fleet.training import TrainingThresholds

    never = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)
    policy = SchedulerPolicy(
        configs=(BoardConfig.parse("hex8_2p"),), thresholds=never, prefetch=0.0, queue_ahead_s=0.0
    )
    return Beat(
        ledger=ledger,
        leadership=ledger,
        redis=redis,
        policy=policy,
        hosts=lambda: [Host(node_id=h, slots=n) for h, n in slots.items()],
        send=send or (lambda *a, **k: ""),
        read_result=read_result or (lambda task_id: backend.get(task_id, ("PENDING", None))),
        read_results=read_results,
        clock=clock,
    )


def finish(ledger: MemoryLedger, backend: TaskStates, job: str, **extra: Any) -> str:
    """Store a SUCCESS for ``job``'s live attempt, under its fence, as its worker
    would; returns the task id."""
    from ringrift_fleet.execution.dispatch import task_id_for

    current = ledger.current(job)
    assert current is not None, f"{job} has no live attempt"
    node = current.node_id
    result = {"status": "completed", "fence": {"token": current.fence_token}, "node": node}
    task_id = task_id_for(job, current.attempt)
    backend[task_id] = ("SUCCESS", {**result, **extra})
    return task_id
