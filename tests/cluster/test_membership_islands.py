"""Hosts that start while part of the fleet cannot answer them: one view in the end.

A fleet started on a loaded network once formed two SWIM views that never
merged (30 hosts: 28 knew each other, 2 knew only each other, for good; the
soak of 2026-12-05 22:31): each host's join is done once anyone answers, and
the reconnect asked only dead members and, when alone, seeds.  Here four real
coordinators in network namespaces start as two islands (iptables between the
halves), then the link heals.
"""

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

SUBNET = "10.211.0"  # this test's range; blackholed in the main namespace by NetnsLab
KEY = "islands-test-key"
HOSTS = ["h0", "h1", "h2", "h3"]
HALVES = (["h0", "h1"], ["h2", "h3"])


class Islands:
    def __init__(self, lab: NetnsLab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.ns = dict(zip(HOSTS, lab.names, strict=True))
        self.addr = {h: lab.address(i) for i, h in enumerate(HOSTS)}
        doc = {
            "hosts": {h: {"address": a} for h, a in self.addr.items()},
            "raft_voters": HOSTS[:3],
        }
        self.hosts_file = workdir / "distributed_hosts.yaml"
        self.hosts_file.write_text(yaml.safe_dump(doc))

    def split(self, cut: bool) -> None:
        for a in HALVES[0]:
            for b in HALVES[1]:
                for here, there in ((a, b), (b, a)):
                    if cut:
                        self.lab.separate(self.ns[here], self.addr[there])
                    else:
                        self.lab.unseparate(self.ns[here], self.addr[there])

    def start(self, name: str) -> None:
        env = {
            "RINGRIFT_P2P_STATE_DIR": str(self.workdir / name),
            "RINGRIFT_CLUSTER_KEY": KEY,
            "RINGRIFT_SWIM_ENABLED": "true",
            "RINGRIFT_MEMBERSHIP_MODE": "swim",
            "RINGRIFT_RAFT_ENABLED": "true",
            "RINGRIFT_CONSENSUS_MODE": "raft",
            "RINGRIFT_P2P_SCHEDULER_TICK": "0.5",
        }
        argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", name]
        argv += ["--hosts-file", str(self.hosts_file), "--no-scheduler"]
        self.lab.spawn(self.ns[name], argv, env, self.workdir / f"{name}.log")

    def peers(self, name: str) -> set[str] | None:
        s: Any = self.lab.http_json(self.ns[name], "http://127.0.0.1:8770/status", timeout=2)
        return set(s["peers"]) if s else None

    def logs(self) -> str:
        return "\n".join(
            f"--- {h}\n" + (self.workdir / f"{h}.log").read_text()[-1500:]
            for h in HOSTS
            if (self.workdir / f"{h}.log").exists()
        )


@pytest.fixture
def islands(tmp_path: Path) -> Iterator[Islands]:
    lab = NetnsLab(SUBNET, len(HOSTS))
    try:
        lab.open()
        yield Islands(lab, tmp_path)
    finally:
        lab.close()


@pytest.mark.timeout(180)
def test_hosts_that_joined_apart_merge_into_one_view_once_the_link_heals(
    islands: Islands,
) -> None:
    islands.split(cut=True)
    for h in HOSTS:
        islands.start(h)
    # each half finds itself: two views, neither knowing the other
    assert wait_for(
        lambda: islands.peers("h0") == {"h1"} and islands.peers("h2") == {"h3"}, 60, 0.5
    ), islands.logs()
    time.sleep(6.0)  # past a reconnect interval: still apart while the link is down
    assert islands.peers("h1") == {"h0"} and islands.peers("h3") == {"h2"}, islands.logs()
    islands.split(cut=False)
    healed = time.monotonic()

    def one_view() -> bool:
        return all(islands.peers(h) == set(HOSTS) - {h} for h in HOSTS)

    assert wait_for(one_view, 60, 0.5), islands.logs()
    merged_in = time.monotonic() - healed
    assert merged_in < 45, merged_in  # a few reconnect intervals, not for ever
