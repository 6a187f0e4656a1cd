"""pysyncobj at our seam: appends never delete held entries, no CRITICAL under load."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj import SyncObj

from ringrift_fleet.config import load_config
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.localhost import free_port

CONFIG = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "k"})


def test_importing_the_raft_seam_leaves_socket_inet_ntop_working() -> None:
    """pysyncobj swaps in a Windows-only ``inet_ntop``; psutil's connection list needs the real one."""
    import socket

    import psutil

    assert socket.inet_ntop(socket.AF_INET, bytes([127, 0, 0, 1])) == "127.0.0.1"
    assert socket.inet_ntop(socket.AF_INET6, bytes(15) + b"\x01") == "::1"
    psutil.Process().net_connections(kind="inet")  # raised TypeError before


def test_the_pysyncobj_internals_the_subclass_uses_are_there(tmp_path: Path) -> None:
    """A pysyncobj upgrade that renames these must fail here, not in production."""
    for method in (
        "_SyncObj__onMessageReceived",
        "_onTick",
        "_SyncObj__generateRaftTimeout",
        "_SyncObj__connectedToAnyone",  # the election gate: renamed, it would gate nothing
    ):
        assert callable(getattr(SyncObj, method, None)), method
    ledger = RaftLedger(
        "a", [Voter("a", "127.0.0.1", free_port(), 0)], config=CONFIG, state_dir=tmp_path
    )
    try:
        for attr in (
            "raftLog",
            "raftState",
            "raftElectionDeadline",
            "transferInProgress",
            "otherNodes",
            "connectedNodes",
            "transport",
            "conf",
            "raftMatchIndex",
            "raftLeader",
            "lastResponseTime",
        ):
            assert hasattr(ledger._sync, f"_SyncObj__{attr}"), attr
    finally:
        ledger.close()


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[RaftLedger]:
    ledger = RaftLedger(
        "a", [Voter("a", "127.0.0.1", free_port(), 0)], config=CONFIG, state_dir=tmp_path
    )
    assert wait_for_leader(ledger, 10)
    for i in range(3):
        assert ledger.add_work(f"w{i}", {})
    yield ledger
    ledger.close()


def test_resent_entries_the_follower_holds_are_dropped_not_truncated(lone: RaftLedger) -> None:
    sync = lone._sync
    log = list(sync._SyncObj__raftLog)
    first, last = log[0][1], log[-1][1]
    term = log[-1][2]
    # A rewound leader resends entries 2..3 of a longer log: all held, our last is
    # of the sender's term, so nothing is deleted and we claim a match to the end.
    msg = {
        "type": "append_entries",
        "term": term,
        "commit_index": 1,
        "prevLogIdx": first,
        "prevLogTerm": log[0][2],
        "entries": log[1:3],
    }
    out = sync._trim_known_entries(msg)
    assert (out["prevLogIdx"], out["entries"]) == (last, [])
    # New entries after held ones: only the new ones remain, after our last entry.
    new = (b"x", last + 1, term)
    out = sync._trim_known_entries({**msg, "entries": [*log[1:], new]})
    assert (out["prevLogIdx"], out["entries"]) == (last, [new])
    # A conflict (same index, other term) stays in the message: pysyncobj truncates.
    clash = (b"y", log[2][1], term + 1)
    out = sync._trim_known_entries({**msg, "term": term + 1, "entries": [log[1], clash]})
    assert (out["prevLogIdx"], out["entries"]) == (log[1][1], [clash])
    # A mismatched previous entry is left to pysyncobj to refuse.
    bad = {**msg, "prevLogTerm": term + 5}
    assert sync._trim_known_entries(bad) is bad


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.timeout(90)
def test_a_healthy_cluster_under_write_load_logs_no_critical(tmp_path: Path) -> None:
    """Before the fix this load gave ~2 CRITICAL truncations a second (17 in 8 s)."""
    handler = Records()
    logging.getLogger("pysyncobj").addHandler(handler)
    voters = [Voter(f"v{i}", "127.0.0.1", free_port(), 0) for i in range(3)]
    ledgers = [
        RaftLedger(v.name, voters, config=CONFIG, state_dir=tmp_path / v.name) for v in voters
    ]
    try:
        assert wait_for_leader(ledgers[0], 15)
        end = time.monotonic() + 6
        done = [0]

        def writer(i: int) -> None:
            k = 0
            while time.monotonic() < end and k < 100_000:
                if ledgers[i % 3].add_work(f"w{i}-{k}", {}):
                    done[0] += 1
                k += 1

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert done[0] > 100, "the cluster committed almost nothing"

        def digest(ledger: RaftLedger) -> str:
            with ledger.reading() as state:
                return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()

        deadline = time.monotonic() + 10
        while len({digest(x) for x in ledgers}) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len({digest(x) for x in ledgers}) == 1, "replicas differ"
        loud = [r.getMessage() for r in handler.records if r.levelno >= logging.CRITICAL]
        assert loud == []
        assert sum(x.raft_status()["leader_changes"] for x in ledgers) == 0
    finally:
        logging.getLogger("pysyncobj").removeHandler(handler)
        for ledger in ledgers:
            ledger.close()


@pytest.mark.parametrize(("lo", "hi"), [(0.4, 0.8), (0.8, 1.6), (1.5, 3.0), (2.0, 6.0)])
def test_a_cut_off_leader_steps_down_before_any_follower_may_stand(lo: float, hi: float) -> None:
    """Never two leaders: the leader's quorum check fires before the earliest moment
    a follower may stand with its connection still up (the connection timeout, or
    membership's verdict confirmed by two election timeouts of silence); and it
    allows a follower a longer hiccup than one election timeout (a busy host)."""
    from ringrift_fleet.consensus.raft_state import RaftSettings

    cfg = load_config(
        {
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_CLUSTER_KEY": "k",
            "RINGRIFT_P2P_RAFT_MIN_TIMEOUT": str(lo),
            "RINGRIFT_P2P_RAFT_MAX_TIMEOUT": str(hi),
        }
    )
    s = RaftSettings.from_config(cfg)
    assert s.max_timeout < s.leader_fallback
    assert s.leader_fallback < min(s.connection_timeout, 2 * s.max_timeout)


def test_pysyncobj_starts_no_election_this_class_did_not_allow(tmp_path: Path) -> None:
    """pysyncobj's election check, reached with the deadline passed and a peer
    connected but without a won pre-vote (a deadline that passed between our look
    and pysyncobj's), starts nothing: the term stays."""
    voters = [Voter("a", "127.0.0.1", free_port(), 0), Voter("b", "127.0.0.1", free_port(), 0)]
    ledger = RaftLedger("a", voters, config=CONFIG, state_dir=tmp_path)
    try:
        sync = ledger._sync
        peer = next(iter(sync._SyncObj__otherNodes))
        sync._SyncObj__connectedNodes.add(peer)  # as if b had just connected
        # (a won pre-vote opens the gate for one tick: every election in the
        # failover tests goes through it)
        for _ in range(20):  # whatever ticks run meanwhile, the gate stays shut
            assert sync._SyncObj__connectedToAnyone() is False
            assert ledger.term() == 0  # b never answers a pre-vote: no election
            time.sleep(0.01)
    finally:
        ledger.close()


def test_the_full_dump_is_fast_to_write_and_in_pysyncobjs_own_format(tmp_path: Path) -> None:
    """The log compaction's dump is written at gzip level 1, not pysyncobj's level 9
    (5 times slower, and slower still on a loaded host: a core's time, even in the
    forked child that writes it), in pysyncobj's own format: a voter of
    the previous version reads ours, and ours reads theirs, as files and as
    snapshot transmissions; a restart restores the ledger from it."""
    from pysyncobj.serializer import Serializer

    from ringrift_fleet.consensus.raft_state import _dump_reader, _LedgerState

    voters = [Voter("a", "127.0.0.1", free_port(), 0)]
    ledger = RaftLedger("a", voters, config=CONFIG, state_dir=tmp_path)
    dump = tmp_path / "raft" / "a.dump"
    try:
        assert wait_for_leader(ledger, 10)
        for i in range(3):
            assert ledger.add_work(f"w{i}", {"n": i})
        ledger._sync.conf.logCompactionSplit = False  # forced now, not in this voter's window
        ledger._sync.forceLogCompaction()
        deadline = time.monotonic() + 10
        while not dump.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dump.exists(), "no dump written"
        with ledger.reading() as state:
            expected = json.loads(json.dumps(state))
    finally:
        ledger.close()
    assert dump.read_bytes()[8] == 4, "gzip XFL: not the fastest level"
    # pysyncobj's own reader (the previous version's) takes it
    theirs = Serializer(str(dump), 2**16, False, None, None, None).deserialize()
    assert theirs[0][0] == {} and json.loads(json.dumps(theirs[0][1]["state"])) == expected
    # and a restart restores the ledger from it
    again = RaftLedger("a", voters, config=CONFIG, state_dir=tmp_path)
    try:
        assert wait_for_leader(again, 10)
        with again.reading() as state:
            assert sorted(state["work"]) == ["w0", "w1", "w2"]
    finally:
        again.close()
    # a dump written by pysyncobj's default writer (level 9) loads through ours
    old = tmp_path / "old.dump"
    consumer_data = {"state": {**expected, "work": {"old": expected["work"]["w0"]}}}
    Serializer(str(old), 2**16, False, None, None, None).serialize(
        ([{"leftover": 1}, consumer_data], ("e", 2, 1), ("e", 1, 1), set()), 2
    )
    fresh = _LedgerState()
    rest = _dump_reader(fresh)(str(old))
    assert rest == (("e", 2, 1), ("e", 1, 1), set())
    assert list(fresh.state["work"]) == ["old"]


def test_a_leaders_batch_of_writes_is_one_log_entry_answered_per_operation(
    tmp_path: Path,
) -> None:
    """A tick's results (start, accept) commit in one round trip to a majority, with
    the answers each operation would have had alone, on every replica."""
    from ringrift_fleet.consensus import ledger as sm
    from tests.support.memory_ledger import MemoryLedger
    from tests.support.raft_cluster import leader_of, raft_cluster

    with raft_cluster(tmp_path) as ledgers:
        leader = leader_of(ledgers)
        calls: list[tuple[str, dict[str, object]]] = []
        for i in range(40):
            calls += [
                ("add_work.v1", {"work_id": f"w{i}", "payload": {"i": i}}),
                ("claim_work.v1", {"work_id": f"w{i}", "node": "h1"}),
                ("claim_work.v1", {"work_id": f"w{i}", "node": "h2"}),  # refused: taken
            ]
        # the new leader's own first entry is committed before the count starts
        assert leader.add_work("before-the-batch", {}), leader.last_error
        before = leader.raft_status()["commit_idx"]
        oks = leader.write_many(calls)
        after = leader.raft_status()["commit_idx"]
        assert after - before == 1, f"{after - before} log entries for one batch"
        alone = MemoryLedger("x", term=leader.term())
        assert oks == [
            bool(alone.propose(dict(sm.make_op(n, now=0.0, term=leader.term(), **a)))["ok"])
            for n, a in calls
        ]
        assert oks.count(False) == 40 and leader.last_error is not None

        def claimed(ledger: RaftLedger) -> list[str]:
            return sorted(w.work_id for w in ledger.items() if w.claimed_by == "h1")

        deadline = time.monotonic() + 10
        while any(len(claimed(x)) < 40 for x in ledgers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(len(claimed(x)) == 40 for x in ledgers)
