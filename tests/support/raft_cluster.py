"""In-process Raft clusters on loopback: n ``RaftLedger`` voters, one state dir each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ringrift_fleet.config import P2PConfig, load_config
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.localhost import free_port

CONFIG = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "k"})


@contextmanager
def raft_cluster(
    tmp_path: Path, n: int = 3, config: P2PConfig = CONFIG
) -> Iterator[list[RaftLedger]]:
    """Voters ``v0``..``v<n-1>`` with a leader elected; all closed afterwards."""
    voters = [Voter(f"v{i}", "127.0.0.1", free_port(), 0) for i in range(n)]
    ledgers = [
        RaftLedger(v.name, voters, config=config, state_dir=tmp_path / v.name) for v in voters
    ]
    try:
        # nobody grants a pre-vote for 2 x RAFT_MAX_TIMEOUT after its start
        assert wait_for_leader(ledgers[0], 15 + 3 * config.RAFT_MAX_TIMEOUT), "no leader elected"
        yield ledgers
    finally:
        for ledger in ledgers:
            ledger.close()


def leader_of(ledgers: list[RaftLedger]) -> RaftLedger:
    return next(x for x in ledgers if x.is_leader())
