"""A non-voter's copy after a leader change: changes only, when the new leader's
revisions are the old one's (one Raft log); a whole copy otherwise.

After every Raft election all 27 non-voters of a 30-host fleet took a whole copy
of a 20,000-job replica from the new leader and decoded it at once; on the soak's
2-core machine that starved the surviving voter, and the new leader lost its
quorum (12 s leaderless).  Real HTTP on 127.0.0.1: two leaders' routes, one copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.remote import MAX_BEHIND, RemoteLedger, ReplicaBodies, ledger_routes
from tests.support.memory_ledger import MemoryLedger
from tests.support.route_server import RouteServer

TOKEN = "k"


class Replica(MemoryLedger):
    """A voter's replica that names its history, as RaftLedger does."""

    def __init__(self, node_id: str, history: str | None, state: sm.State) -> None:
        super().__init__(node_id, state=state)
        self.named = history

    def history(self) -> str | None:
        return self.named

    def version(self) -> object:
        with self.lock:
            return int(self.state.get("rev", 0))


def _add(led: MemoryLedger, work_id: str, term: int = 1) -> None:
    op = sm.make_op("add_work.v1", now=1.0, term=term, work_id=work_id, payload={})
    assert led.propose(op)["ok"]


class Leaders:
    """Two voters' routes; ``current`` says which one the copy takes for the leader."""

    def __init__(self, a: Replica, b: Replica) -> None:
        self.replicas, self.bodies = {"a": a, "b": b}, {"a": ReplicaBodies(), "b": ReplicaBodies()}
        self.servers = {
            k: RouteServer(ledger_routes(lambda k=k: self.replicas[k], TOKEN, self.bodies[k]))
            for k in ("a", "b")
        }
        self.current, self.term = "a", 1

    def copy(self) -> RemoteLedger:
        return RemoteLedger(
            "n9",
            lambda: self.servers[self.current].url,
            lambda: self.current,
            lambda: self.term,
            token=TOKEN,
        )


@pytest.fixture
def raft_pair() -> Iterator[Leaders]:
    a = Replica("a", "raft:a,b,c", sm.new_state())
    for i in range(20):
        _add(a, f"j{i}")
    b = Replica("b", "raft:a,b,c", copy.deepcopy(a.state))  # the same log applied
    leaders = Leaders(a, b)
    with leaders.servers["a"], leaders.servers["b"]:
        yield leaders


def _held(led: RemoteLedger) -> sm.State:
    with led.reading() as state:
        return copy.deepcopy(state)


def _same(copy_: sm.State, replica: sm.State) -> bool:
    keys = ("work", "assign", "records", "term", "seq", "rev", "pruned")
    return {k: copy_.get(k, 0) for k in keys} == {k: replica.get(k, 0) for k in keys}


def test_after_a_raft_election_the_copy_takes_only_the_changes(raft_pair: Leaders) -> None:
    leaders = raft_pair
    remote = leaders.copy()
    assert (
        remote.refresh()
        and _held(remote)["work"].keys() == leaders.replicas["a"].state["work"].keys()
    )
    assert leaders.bodies["a"].full_served == 1
    # a elected out, b leads a new term and goes on from the same log
    leaders.current, leaders.term = "b", 2
    for i in range(20, 23):
        _add(leaders.replicas["b"], f"j{i}", term=2)
    assert remote.refresh()
    assert leaders.bodies["b"].counts()["full_served"] == 0
    assert leaders.bodies["b"].deltas_served == 1
    assert _same(_held(remote), leaders.replicas["b"].state)
    _add(leaders.replicas["b"], "j23", term=2)
    assert remote.refresh() and "j23" in _held(remote)["work"]
    assert leaders.bodies["b"].full_served == 0


def test_a_new_leader_not_yet_applied_as_far_says_behind_and_the_copy_waits(
    raft_pair: Leaders,
) -> None:
    leaders = raft_pair
    remote = leaders.copy()
    _add(leaders.replicas["a"], "late")  # applied on a, not yet on b
    assert remote.refresh() and "late" in _held(remote)["work"]
    leaders.current, leaders.term = "b", 2
    assert not remote.refresh()  # behind: the copy is kept as it is
    assert "late" in _held(remote)["work"] and leaders.bodies["b"].behind_served == 1
    _add(leaders.replicas["b"], "late")  # b applies it (the same entry)
    _add(leaders.replicas["b"], "next", term=2)
    assert remote.refresh() and leaders.bodies["b"].full_served == 0
    assert _same(_held(remote), leaders.replicas["b"].state)


def test_a_leader_that_never_catches_up_gets_asked_for_a_whole_copy(raft_pair: Leaders) -> None:
    leaders = raft_pair
    remote = leaders.copy()
    _add(leaders.replicas["a"], "late")
    assert remote.refresh()
    leaders.current, leaders.term = "b", 2
    for _ in range(MAX_BEHIND):
        assert not remote.refresh()
    assert remote.refresh()  # gives up on changes: the whole replica
    assert leaders.bodies["b"].full_served == 1
    assert _same(_held(remote), leaders.replicas["b"].state)


@pytest.mark.parametrize("history", [None, "raft:x,y,z"])
def test_a_leader_of_another_history_sends_a_whole_copy(
    raft_pair: Leaders, history: str | None
) -> None:
    """A Bully leader (revisions its own) or another cluster's: never changes only."""
    leaders = raft_pair
    remote = leaders.copy()
    assert remote.refresh()
    leaders.replicas["b"].named = history
    leaders.current, leaders.term = "b", 2
    assert remote.refresh()
    assert leaders.bodies["b"].full_served == 1 and leaders.bodies["b"].deltas_served == 0


def test_a_replica_that_never_saw_the_copys_term_sends_a_whole_copy(raft_pair: Leaders) -> None:
    """Same history name, but the copy saw a term this replica did not: its state
    directory was wiped and the cluster started over.  Revisions say nothing then."""
    leaders = raft_pair
    _add(leaders.replicas["a"], "t3", term=3)
    remote = leaders.copy()
    assert remote.refresh()
    leaders.current, leaders.term = "b", 4
    assert remote.refresh()
    assert leaders.bodies["b"].full_served == 1
    assert _same(_held(remote), leaders.replicas["b"].state)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("since=x", "'since'"),
        ("since=3&term=2.5&history=h", "'term'"),
        ("since=3&history=h", "together"),
    ],
)
def test_a_malformed_ask_is_refused_naming_the_field(
    raft_pair: Leaders, query: str, named: str
) -> None:
    from ringrift_fleet.consensus.remote import http_json

    status, body = http_json(f"{raft_pair.servers['a'].url}/consensus/ledger?{query}", token=TOKEN)
    assert status == 400 and isinstance(body, dict) and named in str(body["error"])
