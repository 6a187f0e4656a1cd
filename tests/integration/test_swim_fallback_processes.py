"""The fallback probe between real processes: 30 % of incoming datagrams dropped,
no member suspected or declared dead; a SIGKILLed one still is (its host, up,
refuses the fallback connection: that is counted, and hastens the verdict)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.procs import PYTHON, spawn, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

KEY = "fallback-key"


def free_udp_tcp_port() -> int:
    """Free for UDP and TCP alike (the fallback listens on the SWIM port over TCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for UDP and TCP")


@dataclass
class LossyCluster:
    dir: Path
    ports: dict[str, int]
    loss_in: float
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        seeds = [f"127.0.0.1:{p}" for n, p in self.ports.items() if n != name][:2]
        argv = [PYTHON, "-m", "ringrift_fleet.membership.swim.agent", "--name", name]
        argv += ["--port", str(self.ports[name]), "--key", KEY, "--loss-in", str(self.loss_in)]
        argv += ["--events-file", str(self.dir / f"{name}.jsonl")]
        argv += ["--stats-file", str(self.dir / f"{name}.json")]
        for s in seeds:
            argv += ["--seed", s]
        self.procs[name] = spawn(argv, log=self.dir / f"{name}.log")

    def stats(self, name: str) -> dict:  # type: ignore[type-arg]
        return json.loads((self.dir / f"{name}.json").read_text())

    def alive_everywhere(self, names: list[str]) -> bool:
        return all(sorted(self.stats(o)["alive"]) == sorted(set(names) - {o}) for o in names)

    def events(self, since: float) -> list[dict]:  # type: ignore[type-arg]
        out = []
        for n in self.ports:
            path = self.dir / f"{n}.jsonl"
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.strip():
                        e = json.loads(line)
                        if e["at"] >= since:
                            out.append(e)
        return out


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyCluster]:
    names = [f"n{i}" for i in range(4)]
    c = LossyCluster(tmp_path, {n: free_udp_tcp_port() for n in names}, loss_in=0.30)
    try:
        for n in names:
            c.start(n)
        # joining through lossy seeds on a loaded machine can take a while (join back-off)
        assert wait_for(lambda: c.alive_everywhere(names), 150), "the cluster did not form"
        yield c
    finally:
        for p in c.procs.values():
            stop(p)


def test_thirty_percent_loss_suspects_nobody_and_a_kill_is_still_detected(
    lossy: LossyCluster,
) -> None:
    names = list(lossy.ports)
    t0 = time.time()
    time.sleep(30.0)
    evs = lossy.events(t0)
    assert [e for e in evs if e["kind"] in ("suspect", "dead")] == []
    saved = sum(lossy.stats(n)["health"]["fallback"]["suspicions_avoided"] for n in names)
    assert saved > 0, "30 % loss and the fallback never answered: is it on?"
    assert all(lossy.stats(n)["health"]["fallback"]["listening"] for n in names)
    refused = {n: lossy.stats(n)["health"]["fallback"]["refusals"] for n in names}
    assert refused == dict.fromkeys(names, 0), "a live member's port refused a probe?"

    victim, survivors = names[-1], names[:-1]
    t1 = time.time()
    os.kill(lossy.procs[victim].pid, signal.SIGKILL)
    lossy.procs[victim].wait(5)

    def all_dead() -> bool:
        return all(lossy.stats(o)["states"].get(victim) == "dead" for o in survivors)

    # generous under a loaded machine; the benchmark holds the speed target
    assert wait_for(all_dead, 20.0, 0.1), "a killed member (no TCP either) was not declared dead"
    firsts = {
        e["observer"]: e["at"] - t1
        for e in sorted(lossy.events(t1), key=lambda e: -e["at"])
        if e["kind"] == "dead" and e["node"] == victim
    }
    assert set(firsts) == set(survivors)
    assert max(firsts.values()) < 15.0
    # 127.0.0.1 is up and the victim's port closed: a survivor's fallback was refused
    assert sum(lossy.stats(o)["health"]["fallback"]["refusals"] for o in survivors) >= 1
