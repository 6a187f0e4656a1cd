"""Raft voters as hosts in network namespaces: cut the leader off, heal, rejoin."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.netns import NetnsLab
from tests.support.procs import PYTHON, wait_for

pytestmark = pytest.mark.cluster

SUBNET = "10.202.0"  # this area's range; blackholed in the main namespace by NetnsLab
KEY = "cluster-test-key"


class NsFleet:
    def __init__(self, lab: NetnsLab, workdir: Path, mode: str = "raft") -> None:
        self.lab = lab
        self.mode = mode
        self.workdir = workdir
        self.hosts = {f"h{i}": ns for i, ns in enumerate(lab.names)}
        doc = {
            "hosts": {name: {"address": lab.address(i)} for i, name in enumerate(self.hosts)},
            "raft_voters": list(self.hosts),
        }
        self.hosts_file = workdir / "distributed_hosts.yaml"
        self.hosts_file.write_text(yaml.safe_dump(doc))

    def start(self, name: str) -> None:
        env = {
            "RINGRIFT_P2P_STATE_DIR": str(self.workdir / name),
            "RINGRIFT_CLUSTER_KEY": KEY,
            "RINGRIFT_RAFT_ENABLED": "true" if self.mode == "raft" else "false",
            "RINGRIFT_CONSENSUS_MODE": self.mode,
            "RINGRIFT_P2P_LEADER_LEASE_DURATION": "1.0",
            "RINGRIFT_P2P_SCHEDULER_TICK": "0.2",
        }
        argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", name]
        argv += ["--hosts-file", str(self.hosts_file), "--no-scheduler"]
        self.lab.spawn(self.hosts[name], argv, env, self.workdir / f"{name}.log")

    def status(self, name: str) -> dict[str, Any] | None:
        return self.lab.http_json(self.hosts[name], "http://127.0.0.1:8770/status", timeout=1)

    def write(self, name: str, work_id: str) -> dict[str, Any] | None:
        body = {
            "op": "add_work.v1",
            "now": time.time(),
            "term": 0,
            "work_id": work_id,
            "payload": {},
        }
        return self.lab.http_json(
            self.hosts[name], "http://127.0.0.1:8770/consensus/op", body, token=KEY, timeout=5
        )

    def ledger(self, name: str) -> dict[str, Any] | None:
        body = self.lab.http_json(
            self.hosts[name], "http://127.0.0.1:8770/consensus/ledger", token=KEY, timeout=2
        )
        return body["state"] if body else None

    def agreed_leader(self, among: list[str], timeout: float) -> str | None:
        found: list[str] = []

        def check() -> bool:
            views = [self.status(n) for n in among]
            leaders = {v["leader_id"] for v in views if v}
            roles = [v["node_id"] for v in views if v and v["role"] == "leader"]
            if len(views) == len(among) and all(views) and len(leaders) == 1 and len(roles) == 1:
                found[:] = roles
                return roles[0] in leaders
            return False

        wait_for(check, timeout, 0.2)
        return found[0] if found else None

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text()[-2000:] if path.exists() else ""


@pytest.fixture(params=["raft", "bully"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NsFleet]:
    lab = NetnsLab(SUBNET, 3)
    try:
        lab.open()
        f = NsFleet(lab, tmp_path, request.param)
        for name in f.hosts:
            f.start(name)
        yield f
    finally:
        lab.close()


@pytest.mark.timeout(120)
def test_cut_off_leader_loses_leadership_and_rejoins_cleanly(fleet: NsFleet) -> None:
    names = list(fleet.hosts)
    leader = fleet.agreed_leader(names, 30)
    assert leader, [fleet.log(n) for n in names]
    term0 = fleet.status(leader)["term"]  # type: ignore[index]
    assert fleet.write(leader, "before")["ok"]  # type: ignore[index]
    majority = [n for n in names if n != leader]

    fleet.lab.cut(fleet.hosts[leader])
    new = fleet.agreed_leader(majority, 15)
    assert new and new != leader
    assert fleet.status(new)["term"] > term0  # type: ignore[index]
    # the cut-off node stops acting as leader (Raft: no majority heard for
    # RAFT_MAX_TIMEOUT; Bully: its 1 s lease ends), and nothing it writes commits
    assert wait_for(lambda: fleet.status(leader)["role"] != "leader", 5)  # type: ignore[index]
    refused = [fleet.write(leader, f"isolated-{i}") for i in range(3)]
    assert all(r is not None and r["ok"] is False for r in refused), refused
    assert fleet.write(new, "during")["ok"]  # type: ignore[index]

    fleet.lab.heal(fleet.hosts[leader])
    assert fleet.agreed_leader(names, 20) is not None
    assert wait_for(lambda: fleet.status(leader)["leader_id"] == fleet.status(new)["leader_id"], 10)  # type: ignore[index]
    reference = fleet.ledger(new)
    assert reference is not None
    assert set(reference["work"]) == {"before", "during"}
    assert wait_for(lambda: fleet.ledger(leader) == fleet.ledger(new), 10)
    assert fleet.write(leader, "after")["ok"]  # type: ignore[index]
