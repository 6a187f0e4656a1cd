"""A reset of the leader's connection makes a follower stand at once, but only a
majority that sees the leader gone can elect: one follower's own reset moves nothing."""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path

import pytest

from ringrift_fleet.config import load_config
from tests.support.raft_cluster import CONFIG, leader_of, raft_cluster


def test_one_followers_reset_connection_does_not_move_leadership(tmp_path: Path) -> None:
    with raft_cluster(tmp_path) as ledgers:
        leader = leader_of(ledgers)
        # past every voter's start-up guard, so a pre-vote could be granted
        time.sleep(2 * CONFIG.RAFT_MAX_TIMEOUT + 0.5)
        term = leader.term()
        elections = sum(x.raft_status()["elections_started"] for x in ledgers)
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
        assert sum(x.raft_status()["elections_started"] for x in ledgers) == elections


def test_without_the_step_a_reset_waits_for_the_election_timeout(tmp_path: Path) -> None:
    """``RAFT_ELECT_ON_RESET=0``: the reset is not acted on (the setting's off switch)."""
    config = load_config(
        {
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_CLUSTER_KEY": "k",
            "RINGRIFT_P2P_RAFT_ELECT_ON_RESET": "0",
        }
    )
    with raft_cluster(tmp_path, 2, config) as ledgers:
        follower = next(x for x in ledgers if not x.is_leader())
        conn = follower._sync._SyncObj__transport._connections[follower._sync._SyncObj__raftLeader]
        conn._TcpConnection__socket.shutdown(socket.SHUT_RDWR)
        time.sleep(0.5)
        assert follower.raft_status()["leader_resets"] == 0


def test_a_round_refused_before_the_other_saw_the_reset_is_asked_again_soon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In the 30-host soak the first follower asked before the other had processed
    its own reset, was refused, and waited a whole election timeout to ask again.
    Here the other follower sees no reset itself (its watch is off) and refuses the
    first ask; with 4-8 s timeouts, an election less than 4 s after the leader died
    can only come from asking again at the next turn."""
    config = load_config(
        {
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_CLUSTER_KEY": "k",
            "RINGRIFT_P2P_RAFT_MIN_TIMEOUT": "4.0",
            "RINGRIFT_P2P_RAFT_MAX_TIMEOUT": "8.0",
        }
    )
    caplog.set_level(logging.INFO, logger="ringrift_fleet.consensus.raft_state")
    with raft_cluster(tmp_path, 3, config) as ledgers:
        leader = leader_of(ledgers)
        first, second = sorted((x for x in ledgers if x is not leader), key=lambda x: x.node_id)
        time.sleep(2 * 8.0 + 1)  # past every voter's start-up guard
        slow = second._sync
        refused: list[object] = []
        answer = slow._answer_pre_vote

        def refuse_once(node: object, message: dict[str, object]) -> None:
            if not refused:
                refused.append(message)
                return
            answer(node, message)

        slow._answer_pre_vote = refuse_once  # type: ignore[method-assign]
        slow._watch_leader_link = lambda now: None  # type: ignore[method-assign]
        leader._sync.destroy()  # its sockets close: the followers see a reset
        deadline = time.monotonic() + 15
        while not first.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.is_leader(), caplog.text
        assert refused, "the first ask was never refused: the test tested nothing"
        heard = [
            float(m.group(1))
            for m in re.finditer(
                r"starting an election for term \d+: no leader heard for ([\d.]+)s", caplog.text
            )
        ]
        assert heard and heard[-1] < 4.0, caplog.text
        assert first.raft_status()["pre_votes_started"] >= 2
