"""Bully mode (RAFT off) among real coordinator processes, and the hybrid fallback rules."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.integration.test_consensus_raft import LeaderWatch, kill_leader_and_time
from tests.support.coordinators import LocalFleet, make_op
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

LEASE = {"RINGRIFT_P2P_LEADER_LEASE_DURATION": "1.0"}


@pytest.mark.timeout(120)
def test_bully_leader_loss_elects_one_new_leader_and_keeps_the_ledger(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3, mode="bully", extra_env=LEASE)
    try:
        fleet.start_all()
        # usually n0 (highest rank: equal priority, first name); on a loaded box a
        # lower-ranked voter may win before n0 answers pings, and then keeps the lease
        leader = fleet.wait_leader(10)
        assert leader
        status = fleet.status(leader)
        assert status is not None
        assert status["swim_raft"]["consensus_backend"] == "bully"
        assert status["swim_raft"]["raft"]["available"] is False
        survivors = sorted(n for n in fleet.nodes if n != leader)
        follower, other = survivors[1], survivors[0]
        for i in range(10):
            body = make_op("add_work.v1", work_id=f"w{i}", payload={"i": i})
            assert fleet.op(follower, body)["ok"]  # forwarded to the leader, majority-held
        assert fleet.op(follower, make_op("claim_work.v1", work_id="w0", node=follower))["ok"]
        assert not fleet.op(other, make_op("claim_work.v1", work_id="w0", node=other))["ok"]
        before = fleet.ledger(leader)
        assert wait_for(lambda: fleet.ledger(other)["work"] == before["work"], 5), (
            fleet.ledger(other)["work"],
            before["work"],
        )
        with LeaderWatch(fleet) as watch:
            new, took = kill_leader_and_time(fleet, leader)
            time.sleep(0.5)
        assert new == survivors[0], f"the highest-ranked survivor should lead, got {new}"
        # About one lease; the slack covers a loaded 2-core CI box.
        assert took < 5.0, f"bully failover took {took:.2f}s with a 1 s lease"
        for term, names in watch.claims.items():
            assert len(names) == 1, f"two leaders in epoch {term}: {names}"
        after = fleet.ledger(new)
        assert after["work"] == before["work"]
        assert fleet.op(follower, make_op("claim_work.v1", work_id="w1", node=follower))["ok"]
        # the old leader comes back: it does not take over, it follows and catches up
        fleet.start(leader)
        assert fleet.wait_up(leader, 15)
        assert wait_for(lambda: fleet.status(leader)["leader_id"] == new, 10)
        assert fleet.leaders() == {new: fleet.status(new)["term"]}
        # no epoch inflation by the returning voter: it agrees on the leader's epoch
        epoch = fleet.status(new)["term"]
        assert wait_for(lambda: fleet.status(leader)["term"] == epoch, 5)
        time.sleep(1.0)
        assert fleet.status(new)["term"] == epoch and fleet.leaders() == {new: epoch}
        assert wait_for(lambda: fleet.ledger(leader)["work"]["w1"]["claimed_by"] == follower, 15), (
            fleet.log(leader)
        )
    finally:
        fleet.stop_all()


def hold_port(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.mark.timeout(60)
def test_hybrid_falls_back_to_bully_only_when_raft_cannot_start(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=1, mode="hybrid", extra_env=LEASE)
    blocker = hold_port(fleet.nodes["n0"].raft_port)
    try:
        fleet.start_all()
        assert fleet.wait_leader(15), fleet.log("n0")
        sr = fleet.status("n0")["swim_raft"]
        assert sr["consensus_mode"] == "hybrid" and sr["consensus_backend"] == "bully"
        assert sr["raft"]["available"] is False and "bind" in sr["raft"]["error"]
        assert fleet.op("n0", make_op("add_work.v1", work_id="a", payload={}))["ok"]
    finally:
        fleet.stop_all()
        blocker.close()


@pytest.mark.timeout(60)
def test_raft_mode_refuses_to_start_without_raft_and_says_why(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=1, mode="raft")
    blocker = hold_port(fleet.nodes["n0"].raft_port)
    try:
        proc = fleet.start("n0").proc
        assert proc is not None
        assert proc.wait(30) == 2
        log = fleet.log("n0")
        assert "CONSENSUS_MODE=raft but Raft cannot run here" in log
        assert "Traceback" not in log
    finally:
        fleet.kill("n0", signal.SIGKILL)
        blocker.close()


@pytest.mark.timeout(90)
def test_hybrid_minority_does_not_elect_a_second_leader(tmp_path: Path) -> None:
    """Raft without quorum is not 'unavailable': a lone survivor stays leaderless."""
    fleet = LocalFleet(tmp_path / "fleet", voters=3, mode="hybrid", extra_env=LEASE)
    try:
        fleet.start_all()
        leader = fleet.wait_leader(10)
        assert leader
        survivors = [n for n in fleet.nodes if n != leader]
        fleet.kill(leader)
        fleet.kill(survivors[0])
        time.sleep(3.0)
        s = fleet.status(survivors[1])
        assert s is not None
        assert s["swim_raft"]["consensus_backend"] == "raft"
        assert s["role"] != "leader"
        r = fleet.op(survivors[1], make_op("add_work.v1", work_id="x", payload={}), timeout=10)
        assert r["ok"] is False
    finally:
        fleet.stop_all()
