"""Our SWIM as separate processes on 127.0.0.1: kill, restart, and junk on the wire."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ringrift_fleet.membership.swim import codec
from tests.support.procs import PYTHON, free_port, spawn, stop, wait_for

pytestmark = pytest.mark.integration

KEY = "integration-key"


@dataclass
class Cluster:
    dir: Path
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        seeds = [f"127.0.0.1:{p}" for n, p in self.ports.items() if n != name][:2]
        argv = [PYTHON, "-m", "ringrift_fleet.membership.swim.agent", "--name", name]
        argv += ["--port", str(self.ports[name]), "--key", KEY]
        argv += ["--events-file", str(self.dir / f"{name}.jsonl")]
        argv += ["--stats-file", str(self.dir / f"{name}.json")]
        for s in seeds:
            argv += ["--seed", s]
        self.procs[name] = spawn(argv, log=self.dir / f"{name}.log")

    def stats(self, name: str) -> dict:  # type: ignore[type-arg]
        return json.loads((self.dir / f"{name}.json").read_text())

    def state(self, observer: str, member: str) -> str | None:
        return self.stats(observer)["states"].get(member)

    def alive_everywhere(self, names: list[str]) -> bool:
        return all(sorted(self.stats(o)["alive"]) == sorted(set(names) - {o}) for o in names)

    def events(self, observer: str) -> list[dict]:  # type: ignore[type-arg]
        path = self.dir / f"{observer}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    names = [f"n{i}" for i in range(4)]
    c = Cluster(tmp_path, {n: free_port(socket.SOCK_DGRAM) for n in names})
    try:
        for n in names:
            c.start(n)
        assert wait_for(lambda: c.alive_everywhere(names), 20), "the cluster did not form"
        yield c
    finally:
        for p in c.procs.values():
            stop(p)


@pytest.mark.timeout(90)
def test_sigkill_is_seen_dead_by_every_survivor_and_a_restart_alive_again(cluster: Cluster) -> None:
    names = list(cluster.ports)
    victim, survivors = names[-1], names[:-1]
    os.kill(cluster.procs[victim].pid, signal.SIGKILL)
    cluster.procs[victim].wait(5)
    assert wait_for(lambda: all(cluster.state(o, victim) == "dead" for o in survivors), 20)
    for o in survivors:
        assert any(e["kind"] == "dead" and e["node"] == victim for e in cluster.events(o))

    cluster.start(victim)  # same name, same port, a fresh process
    assert wait_for(lambda: cluster.alive_everywhere(names), 20), (
        "the restarted node is not alive everywhere"
    )
    for o in survivors:
        kinds = [e["kind"] for e in cluster.events(o) if e["node"] == victim]
        assert kinds[-1] == "alive", f"{o} saw {kinds}"
    # No survivor was ever declared dead along the way.
    for o in names:
        assert not [e for e in cluster.events(o) if e["kind"] == "dead" and e["node"] != victim]


@pytest.mark.timeout(60)
def test_garbage_and_forged_datagrams_change_nothing_and_are_counted(cluster: Cluster) -> None:
    names = list(cluster.ports)
    target = names[0]
    events_before = {n: len(cluster.events(n)) for n in names}
    forged_dead = codec.encode(
        codec.Message(
            codec.PING,
            "intruder",
            1,
            target=target,
            updates=[codec.Update(codec.DEAD, names[1], 2**40, origin="intruder")],
        ),
        b"not-the-cluster-key",
    )
    junk = [
        b"",
        b"\x00" * 64,
        b"GET /status HTTP/1.1\r\n\r\n",
        os.urandom(900),
        b"RS1" + os.urandom(3000),
        forged_dead,
        forged_dead[:30],
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            for data in junk:
                s.sendto(data, ("127.0.0.1", cluster.ports[target]))

    def dropped() -> int:
        return sum(cluster.stats(target)["health"]["dropped"].values())

    # Empty datagrams may not be delivered at all; everything else must be counted.
    assert wait_for(lambda: dropped() >= 20 * (len(junk) - 1), 10), cluster.stats(target)["health"]
    health = cluster.stats(target)["health"]
    assert health["healthy"] and health["core_errors"] == 0
    assert {"forged", "garbage", "oversized", "truncated"} <= set(health["dropped"])
    assert cluster.procs[target].poll() is None
    assert wait_for(lambda: cluster.alive_everywhere(names), 5)
    for n in names:
        assert len(cluster.events(n)) == events_before[n], f"{n} saw a membership change"


@pytest.mark.timeout(30)
def test_sigterm_leaves_gracefully(cluster: Cluster) -> None:
    names = list(cluster.ports)
    leaver = names[1]
    cluster.procs[leaver].send_signal(signal.SIGTERM)
    assert cluster.procs[leaver].wait(10) == 0
    others = [n for n in names if n != leaver]
    assert wait_for(lambda: all(cluster.state(o, leaver) == "left" for o in others), 10)
