"""Mixed membership modes interoperate: a host-by-host rollout and rollback reports
no live peer dead (issue 10).

Three real ``ringrift-fleet coordinator`` processes on 127.0.0.1, Bully
consensus, membership switched one host at a time (SIGTERM, restart with the new
RINGRIFT_SWIM_ENABLED / RINGRIFT_MEMBERSHIP_MODE): http -> swim (or hybrid) on
each host in turn, then back to http.  Every node's /status is sampled every
0.25 s; every node up for a few seconds must list every other such node in
``peers``.  Before the fix an HTTP node got 404 from a SWIM node's /heartbeat and
a SWIM node never heard an HTTP node: peers vanished for good.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.coordinators import LocalFleet
from tests.support.procs import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MODE_ENV = {
    "http": {"RINGRIFT_SWIM_ENABLED": "false", "RINGRIFT_MEMBERSHIP_MODE": "http"},
    "swim": {"RINGRIFT_SWIM_ENABLED": "true", "RINGRIFT_MEMBERSHIP_MODE": "swim"},
    "hybrid": {"RINGRIFT_SWIM_ENABLED": "true", "RINGRIFT_MEMBERSHIP_MODE": "hybrid"},
}
GRACE = 6.0  # s a (re)started node may take to see, and be seen by, everyone
WINDOW = 5.0  # s sampled after each step (over twice PEER_TIMEOUT=2 s)
SAMPLE = 0.25


@dataclass
class MixedFleet(LocalFleet):
    modes: dict[str, str] = field(default_factory=dict)
    up_since: dict[str, float] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    samples: int = 0

    def env(self, name: str) -> dict[str, str]:
        env = super().env(name)
        env.update(MODE_ENV[self.modes.get(name, "http")])
        return env

    def restart_as(self, name: str, mode: str) -> None:
        self.kill(name, signal.SIGTERM)
        self.up_since.pop(name, None)
        self.modes[name] = mode
        self.start(name)
        assert self.wait_up(name, 30.0), f"{name} did not come back as {mode}: {self.log(name)}"
        self.up_since[name] = time.monotonic()

    def sample_for(self, seconds: float, step: str) -> None:
        """Sample every node's /status; record each live peer a settled node misses."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            settled = [n for n, t in self.up_since.items() if now - t >= GRACE]
            for o in settled:
                s = self.status(o)
                if s is None:
                    self.misses.append(f"{step}: {o} did not answer /status")
                    continue
                seen = set(s.get("peers", []))
                for p in settled:
                    if p != o and p not in seen:
                        mode = (s.get("swim_raft") or {}).get("membership_mode")
                        self.misses.append(f"{step}: {o} ({mode}) misses live {p}: {sorted(seen)}")
            self.samples += 1
            time.sleep(SAMPLE)


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    f = MixedFleet(tmp_path, voters=3, mode="bully")
    try:
        yield f
    finally:
        f.stop_all()


@pytest.mark.parametrize("target", ["swim", "hybrid"])
def test_host_by_host_rollout_and_rollback_reports_no_live_peer_dead(
    fleet: MixedFleet, target: str
) -> None:
    fleet.modes = dict.fromkeys(fleet.nodes, "http")
    fleet.start_all()
    for n in fleet.nodes:
        fleet.up_since[n] = time.monotonic()
    fleet.sample_for(GRACE + 1.0, "all http")
    names = list(fleet.nodes)
    for n in names:  # rollout, one host at a time
        fleet.restart_as(n, target)
        fleet.sample_for(GRACE + WINDOW, f"{n} -> {target}")
    for n in names:  # rollback, one host at a time
        fleet.restart_as(n, "http")
        fleet.sample_for(GRACE + WINDOW, f"{n} -> http")
    assert fleet.samples > 100
    assert fleet.misses == [], "\n".join(fleet.misses[:20])


def test_an_http_only_peer_is_alive_only_while_its_heartbeats_arrive(fleet: MixedFleet) -> None:
    """A SWIM node holds an HTTP-only peer by its heartbeats: when the peer dies, it
    drops it within PEER_TIMEOUT (2 s here) plus a heartbeat, not never."""
    fleet.modes = {"n0": "swim", "n1": "hybrid", "n2": "http"}
    fleet.start_all()

    def everyone_sees_everyone() -> bool:
        for o in fleet.nodes:
            s = fleet.status(o)
            if s is None or set(s.get("peers", [])) != set(fleet.nodes) - {o}:
                return False
        return True

    assert wait_for(everyone_sees_everyone, 30.0, 0.25), [
        (o, (fleet.status(o) or {}).get("peers")) for o in fleet.nodes
    ]
    summary = fleet.status("n0")["membership"]  # type: ignore[index]
    assert summary["http_only_peers"] == ["n2"], summary
    assert summary["members"]["n2"]["via"] == "http"
    t0 = time.monotonic()
    fleet.kill("n2", signal.SIGKILL)

    def n2_gone() -> bool:
        return all(
            "n2" not in (fleet.status(o) or {"peers": ["n2"]})["peers"] for o in ("n0", "n1")
        )

    assert wait_for(n2_gone, 15.0, 0.1), "n2 stayed alive after it died"
    assert time.monotonic() - t0 <= 10.0
    # the two SWIM speakers still hold each other
    assert "n1" in fleet.status("n0")["peers"] and "n0" in fleet.status("n1")["peers"]  # type: ignore[index]
