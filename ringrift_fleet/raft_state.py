"""The seed's module path ``app.p2p.raft_state``, as ``ringrift_fleet.raft_state``.

A thin re-export: the Raft ledger lives in ``ringrift_fleet.consensus.raft_state``
(the one module that imports pysyncobj), the data structures in ``models``.
"""

from __future__ import annotations

from ringrift_fleet.consensus.raft_state import (
    RaftLedger,
    ReplicatedJobAssignments,
    ReplicatedWorkQueue,
    create_replicated_work_queue,
    wait_for_leader,
)
from ringrift_fleet.models import JobAssignment, WorkItem

__all__ = [
    "JobAssignment",
    "RaftLedger",
    "ReplicatedJobAssignments",
    "ReplicatedWorkQueue",
    "WorkItem",
    "create_replicated_work_queue",
    "wait_for_leader",
]
