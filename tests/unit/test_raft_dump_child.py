"""The Raft full dump is written by a forked child, never on the Raft thread.

In the 60-minute soak a dump held the Raft thread 2-12 s: no heartbeat, no vote,
leaderless for up to 20 s.  These tests run real children (``os.fork``) and real
three-voter Raft clusters on loopback."""

from __future__ import annotations

import gzip
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from ringrift_fleet.consensus import raft_state
from ringrift_fleet.consensus.dump_child import ForkedDump, Progress
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.localhost import free_port
from tests.support.procs import REPO
from tests.support.raft_cluster import CONFIG, leader_of, raft_cluster


def until(dump: ForkedDump, seconds: float = 20) -> Progress:
    """Poll as the Raft thread does, until the dump is no longer running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        p = dump.poll()
        if p is not Progress.RUNNING:
            return p
        time.sleep(0.02)
    return Progress.RUNNING


def gated(gate: Path, body: bytes, hold: float = 20) -> Callable[[BinaryIO], None]:
    """A dump that waits (in the child, bounded) until ``gate`` exists."""

    def write(f: BinaryIO) -> None:
        deadline = time.monotonic() + hold
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        f.write(body)

    return write


@pytest.fixture
def dump(tmp_path: Path) -> Iterator[ForkedDump]:
    d = ForkedDump(str(tmp_path / "a.dump"), timeout=30)
    yield d
    d.stop()


def test_the_dump_is_written_while_the_caller_goes_on(dump: ForkedDump, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    dump.start(gated(gate, b"new state"))
    # the caller got control back while the child is still waiting at its gate
    assert dump.running and dump.poll() is Progress.RUNNING
    assert not Path(dump.target).exists()
    gate.touch()
    assert until(dump) is Progress.DONE
    assert Path(dump.target).read_bytes() == b"new state"
    assert not Path(dump.part).exists()
    assert dump.poll() is Progress.IDLE  # reported once
    assert dump.last_seconds is not None and dump.last_stall_s is not None


def test_a_failing_or_stuck_dump_leaves_the_last_good_one(tmp_path: Path) -> None:
    target = tmp_path / "a.dump"
    target.write_bytes(b"last good")

    def broken(f: BinaryIO) -> None:
        f.write(b"half")
        raise RuntimeError("pickling failed")

    d = ForkedDump(str(target), timeout=30)
    d.start(broken)
    assert until(d) is Progress.FAILED
    assert target.read_bytes() == b"last good" and not Path(d.part).exists()

    stuck = ForkedDump(str(target), timeout=0.5)
    stuck.start(gated(tmp_path / "never", b"x", hold=60))
    pid = stuck._pid
    assert until(stuck) is Progress.FAILED  # killed at its timeout, not after 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped: no zombie either
    assert target.read_bytes() == b"last good" and not Path(stuck.part).exists()
    # and the next dump goes ahead
    stuck.timeout = 30
    stuck.start(lambda f: f.write(b"next"))
    assert until(stuck) is Progress.DONE and target.read_bytes() == b"next"


def test_a_snapshot_received_meanwhile_is_not_overwritten_by_the_older_image(
    dump: ForkedDump, tmp_path: Path
) -> None:
    """pysyncobj puts a snapshot from the leader in place under the same name: it is
    newer than what the child is writing, which must then be dropped."""
    target = Path(dump.target)
    target.write_bytes(b"before")
    gate = tmp_path / "gate"
    dump.start(gated(gate, b"older image"))
    received = tmp_path / "a.dump.1.tmp"
    received.write_bytes(b"snapshot from the leader")
    os.replace(received, target)
    gate.touch()
    assert until(dump) is Progress.FAILED
    assert target.read_bytes() == b"snapshot from the leader"


def test_the_child_holds_none_of_the_parents_ports(dump: ForkedDump, tmp_path: Path) -> None:
    """A coordinator killed while its child dumps is restarted at once; the child must
    not keep its listening ports bound meanwhile."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    gate = tmp_path / "gate"
    dump.start(gated(gate, b"x"))
    try:
        time.sleep(0.3)  # the child has closed what it inherited
        listener.close()  # the parent "dies"; its successor binds the same port
        again = socket.socket()
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
        again.close()
    finally:
        gate.touch()
    assert until(dump) is Progress.DONE


def test_the_child_dies_with_the_coordinator(tmp_path: Path) -> None:
    """A coordinator killed mid-dump (SIGKILL, OOM) takes its child with it, instead
    of leaving it to write a dump nobody waits for, beside the restarted one."""
    script = (
        "import os, sys, time\n"
        "from ringrift_fleet.consensus.dump_child import ForkedDump\n"
        "def hold(f):\n"
        "    time.sleep(60)\n"
        "d = ForkedDump(sys.argv[1])\n"
        "d.start(hold)\n"
        "print(d._pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "a.dump")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert Path(f"/proc/{child}").exists()
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # killed at once; init reaps it
    assert not Path(f"/proc/{child}").exists(), "the dump child outlived its coordinator"


def test_stop_kills_a_running_dump(dump: ForkedDump, tmp_path: Path) -> None:
    dump.start(gated(tmp_path / "never", b"x", hold=60))
    pid = dump._pid
    dump.stop()
    assert not dump.running and not Path(dump.part).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_without_fork_it_is_written_in_process(
    dump: ForkedDump, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    dump.start(lambda f: f.write(b"here"))
    assert dump.poll() is Progress.DONE and Path(dump.target).read_bytes() == b"here"
    assert dump.poll() is Progress.IDLE


# --- in a Raft cluster --------------------------------------------------------------------


def slow_dumps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every dump takes ``seconds`` longer, in whatever process writes it: 3 s is
    what the soak's dumps took on its loaded 2-core machine."""
    write = raft_state._write_dump

    def slow(f: BinaryIO, state: object, rest: tuple[object, ...]) -> None:
        time.sleep(seconds)
        write(f, state, rest)  # type: ignore[arg-type]

    monkeypatch.setattr(raft_state, "_write_dump", slow)


def force_dump(ledger: RaftLedger) -> None:
    ledger._sync.conf.logCompactionSplit = False  # now, not in this voter's window
    ledger._sync.forceLogCompaction()


def test_a_leader_that_dumps_keeps_leading_and_committing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the dump on the Raft thread, a 3-s dump on the leader is longer than the
    followers wait for a heartbeat (1.6 s): they elect another leader.  Written by a
    child, nothing changes hands and writes go on committing."""
    slow_dumps(monkeypatch, 3.0)
    with raft_cluster(tmp_path) as ledgers:
        leader = leader_of(ledgers)
        term = leader.term()
        elections = sum(x.raft_status()["elections_started"] for x in ledgers)
        for i in range(20):
            assert leader.add_work(f"before{i}", {"i": i}), leader.last_error
        force_dump(leader)
        deadline = time.monotonic() + 2
        while not leader.raft_status()["dump"]["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leader.raft_status()["dump"]["running"], "no dump started"
        during = 0
        while leader.raft_status()["dump"]["running"] and time.monotonic() < deadline + 20:
            assert leader.add_work(f"during{during}", {}), leader.last_error
            during += 1
            time.sleep(0.05)
        assert during >= 20, f"only {during} writes while the dump ran"
        status = leader.raft_status()
        assert status["dump"]["done"] == 1 and status["dump"]["failed"] == 0, status["dump"]
        assert status["log_len"] < 20 + during, "the log was not compacted"
        assert leader.is_leader() and leader.term() == term
        assert sum(x.raft_status()["leader_changes"] for x in ledgers) == 0
        assert sum(x.raft_status()["elections_started"] for x in ledgers) == elections


def test_a_voter_restarts_from_its_forked_dump_and_journal(tmp_path: Path) -> None:
    """What a child wrote is what a restart loads, together with the journal's
    entries after it; and the file stays in pysyncobj's own format."""
    voters = [Voter("a", "127.0.0.1", free_port(), 0)]
    ledger = RaftLedger("a", voters, config=CONFIG, state_dir=tmp_path)
    dump = tmp_path / "raft" / "a.dump"
    try:
        assert wait_for_leader(ledger, 10)
        for i in range(5):
            assert ledger.add_work(f"w{i}", {"n": i})
        force_dump(ledger)
        deadline = time.monotonic() + 20
        while ledger.raft_status()["dump"]["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.raft_status()["dump"]["done"] == 1
        for i in range(5, 8):  # after the dump: only in the journal
            assert ledger.add_work(f"w{i}", {"n": i})
    finally:
        ledger.close()
    with gzip.open(dump) as g:
        data = pickle.load(g)
    assert sorted(data[0][1]["state"]["work"]) == [f"w{i}" for i in range(5)]
    again = RaftLedger("a", voters, config=CONFIG, state_dir=tmp_path)
    try:
        assert wait_for_leader(again, 10)
        with again.reading() as state:
            assert sorted(state["work"]) == [f"w{i}" for i in range(8)]
    finally:
        again.close()


def test_a_voter_that_missed_the_compacted_entries_catches_up_from_the_dump(
    tmp_path: Path,
) -> None:
    """The leader's log no longer holds what a voter down meanwhile missed: the
    leader sends it the dump its child wrote (pysyncobj's snapshot transmission)."""
    with raft_cluster(tmp_path) as ledgers:
        leader = leader_of(ledgers)
        i = next(k for k, x in enumerate(ledgers) if x is not leader)
        away = ledgers[i].node_id
        ledgers[i].close()
        for n in range(30):
            assert leader.add_work(f"w{n}", {"i": n}), leader.last_error
        force_dump(leader)
        deadline = time.monotonic() + 20
        while leader.raft_status()["dump"]["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leader.raft_status()["dump"]["done"] == 1
        assert leader.raft_status()["log_len"] < 30, "the log still holds what was missed"
        back = ledgers[i] = RaftLedger(
            away, leader.voters, config=CONFIG, state_dir=tmp_path / away
        )
        deadline = time.monotonic() + 20
        while len(back.items()) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(w.work_id for w in back.items()) == sorted(f"w{n}" for n in range(30))
        # from the leader's dump, not entry by entry: it never wrote one itself
        assert back.raft_status()["dump"]["done"] == 0
        assert (tmp_path / away / "raft" / f"{away}.dump").exists()
        assert leader.is_leader()


def test_a_dump_that_cannot_even_start_is_reported_failed_not_lost(
    dump: ForkedDump, tmp_path: Path
) -> None:
    """pysyncobj waits for the outcome of every dump it asked for: one that raised
    instead would leave it waiting for ever, and the log would never be compacted."""
    os.mkdir(dump.part)  # unlink() of the leftover fails (root ignores permissions)
    dump.start(lambda f: f.write(b"x"))
    assert not dump.running and dump.poll() is Progress.FAILED
    assert dump.poll() is Progress.IDLE
    os.rmdir(dump.part)
    dump.start(lambda f: f.write(b"next"))
    assert until(dump) is Progress.DONE and Path(dump.target).read_bytes() == b"next"
