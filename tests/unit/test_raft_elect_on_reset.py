"""A reset of the leader's connection makes a follower stand at once, but only a
majority that sees the leader gone can elect: one follower's own reset moves nothing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ringrift_fleet.config import load_config
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.localhost import free_port

CONFIG = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "k"})


def test_one_followers_reset_connection_does_not_move_leadership(tmp_path: Path) -> None:
    voters = [Voter(f"v{i}", "127.0.0.1", free_port(), 0) for i in range(3)]
    ledgers = [
        RaftLedger(v.name, voters, config=CONFIG, state_dir=tmp_path / v.name) for v in voters
    ]
    try:
        assert wait_for_leader(ledgers[0], 15)
        leader = next(x for x in ledgers if x.is_leader())
        # past every voter's start-up guard, so a pre-vote could be granted
        time.sleep(2 * CONFIG.RAFT_MAX_TIMEOUT + 0.5)
        term = leader.term()
        follower = next(x for x in ledgers if x is not leader)
        transport = follower._sync._SyncObj__transport
        leader_node = follower._sync._SyncObj__raftLeader
        conn = transport._connections[leader_node]
        sock = conn._TcpConnection__socket
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the reset, as the follower's kernel reports it
        deadline = time.monotonic() + 5
        while follower.raft_status()["leader_resets"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = follower.raft_status()
        assert status["leader_resets"] == 1
        while follower.raft_status()["pre_votes_started"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert follower.raft_status()["pre_votes_started"] >= 1, "it never asked"
        time.sleep(2 * CONFIG.RAFT_MAX_TIMEOUT)  # every timer has fired since
        assert leader.is_leader() and leader.term() == term
        assert all(x.leader() == leader.node_id for x in ledgers)
        assert sum(x.raft_status()["elections_started"] for x in ledgers) == 1  # the first
    finally:
        for ledger in ledgers:
            ledger.close()


def test_without_the_step_a_reset_waits_for_the_election_timeout(tmp_path: Path) -> None:
    """``RAFT_ELECT_ON_RESET=0``: the reset is not acted on (the setting's off switch)."""
    config = load_config(
        {
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_CLUSTER_KEY": "k",
            "RINGRIFT_P2P_RAFT_ELECT_ON_RESET": "0",
        }
    )
    voters = [Voter(f"v{i}", "127.0.0.1", free_port(), 0) for i in range(2)]
    ledgers = [
        RaftLedger(v.name, voters, config=config, state_dir=tmp_path / v.name) for v in voters
    ]
    try:
        assert wait_for_leader(ledgers[0], 15)
        follower = next(x for x in ledgers if not x.is_leader())
        conn = follower._sync._SyncObj__transport._connections[follower._sync._SyncObj__raftLeader]
        conn._TcpConnection__socket.shutdown(socket.SHUT_RDWR)
        time.sleep(0.5)
        assert follower.raft_status()["leader_resets"] == 0
    finally:
        for ledger in ledgers:
            ledger.close()
