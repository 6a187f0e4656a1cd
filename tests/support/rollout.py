"""Drive a 3-coordinator fleet through the gradual rollout and the rollback, host by host.

Used by tests/integration/test_consensus_rollout.py and benchmarks/rollout.py.
Every node's /status is sampled every 0.25 s in the background; each switch
of stage restarts the voters in a given order ("first": the leader first,
"last": the leader last, "middle": the leader second, "all": all at once)
and checks the ledger before and after.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.support.coordinators import LocalFleet, make_op
from tests.support.procs import wait_for

# docs/consensus.md, "Rollout stages" (each stage's whole environment)
STAGES: dict[str, dict[str, str]] = {
    "stage0": {  # HTTP heartbeats + Bully (the default)
        "RINGRIFT_SWIM_ENABLED": "false",
        "RINGRIFT_MEMBERSHIP_MODE": "http",
        "RINGRIFT_RAFT_ENABLED": "false",
        "RINGRIFT_CONSENSUS_MODE": "bully",
    },
    "stage1": {  # SWIM with HTTP heartbeats as fallback
        "RINGRIFT_SWIM_ENABLED": "true",
        "RINGRIFT_MEMBERSHIP_MODE": "hybrid",
        "RINGRIFT_RAFT_ENABLED": "false",
        "RINGRIFT_CONSENSUS_MODE": "bully",
    },
    "stage2": {  # SWIM only
        "RINGRIFT_SWIM_ENABLED": "true",
        "RINGRIFT_MEMBERSHIP_MODE": "swim",
        "RINGRIFT_RAFT_ENABLED": "false",
        "RINGRIFT_CONSENSUS_MODE": "bully",
    },
    "stage3": {  # Raft, Bully only where Raft cannot run
        "RINGRIFT_SWIM_ENABLED": "true",
        "RINGRIFT_MEMBERSHIP_MODE": "swim",
        "RINGRIFT_RAFT_ENABLED": "true",
        "RINGRIFT_CONSENSUS_MODE": "hybrid",
    },
    "stage4": {  # Raft only
        "RINGRIFT_SWIM_ENABLED": "true",
        "RINGRIFT_MEMBERSHIP_MODE": "swim",
        "RINGRIFT_RAFT_ENABLED": "true",
        "RINGRIFT_CONSENSUS_MODE": "raft",
    },
    "rollback": {  # the instant rollback: *_ENABLED=false wins over the modes
        "RINGRIFT_SWIM_ENABLED": "false",
        "RINGRIFT_MEMBERSHIP_MODE": "swim",
        "RINGRIFT_RAFT_ENABLED": "false",
        "RINGRIFT_CONSENSUS_MODE": "raft",
    },
}

FAST = {  # short leases and intervals, so a whole rollout fits in a few minutes
    "RINGRIFT_P2P_LEADER_LEASE_DURATION": "2.0",
    "RINGRIFT_P2P_HEARTBEAT_INTERVAL": "0.5",
    "RINGRIFT_P2P_PEER_TIMEOUT": "3.0",
}

# (from stage, to stage, restart order): the seed's rollout, then every order of the
# consensus switch in both directions
PLAN: list[tuple[str, str]] = [
    ("stage1", "first"),
    ("stage2", "last"),
    ("stage3", "last"),  # Bully -> Raft
    ("stage4", "middle"),
    ("rollback", "first"),  # Raft -> Bully (and SWIM -> HTTP)
    ("stage3", "first"),
    ("rollback", "middle"),
    ("stage3", "middle"),
    ("rollback", "last"),
    ("stage3", "all"),
    ("rollback", "all"),
]

SAMPLE_EVERY = 0.25


class StagedFleet(LocalFleet):
    """A LocalFleet whose every node has its own stage environment."""

    stage: dict[str, str]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stage = dict.fromkeys(self.nodes, "stage0")

    def env(self, name: str) -> dict[str, str]:
        env = super().env(name)
        env.update(STAGES[self.stage[name]])
        env.update(FAST)
        env.update(self.extra_env)
        return env


@dataclass
class Sample:
    at: float
    status: dict[str, dict[str, Any] | None]

    def leaders(self) -> list[str]:
        return sorted(n for n, s in self.status.items() if s and s.get("role") == "leader")


@dataclass
class StepReport:
    switch: str  # e.g. "stage2->stage3 (last)"
    host: str  # the host restarted ("all" for all at once)
    started: float
    ended: float = 0.0
    leaderless_s: float = 0.0
    two_leaders_s: float = 0.0
    two_leader_samples: list[dict[str, Any]] = field(default_factory=list)


class Sampler:
    """/status of every node every 0.25 s, in the background (bounded by stop())."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(len(fleet.nodes))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False)

    def _run(self) -> None:
        names = list(self.fleet.nodes)
        while not self._stop.is_set():
            started = time.monotonic()
            views = list(self._pool.map(self.fleet.status, names))
            self.samples.append(Sample(time.monotonic(), dict(zip(names, views, strict=True))))
            self._stop.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))

    def window(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def leaderless_runs(samples: list[Sample]) -> float:
    """The longest stretch without any leader: from the last sample with a leader to
    the next one with a leader (so it is over-estimated by up to one sample period)."""
    longest, last_led = 0.0, samples[0].at if samples else 0.0
    for s in samples:
        if s.leaders():
            longest = max(longest, s.at - last_led)
            last_led = s.at
    if samples:
        longest = max(longest, samples[-1].at - last_led)
    return longest


def two_leader_time(samples: list[Sample]) -> tuple[float, list[dict[str, Any]]]:
    """Seconds (samples x period) with two nodes claiming leadership, and those samples."""
    bad = [s for s in samples if len(s.leaders()) > 1]
    views = [
        {n: (v.get("term"), v.get("fence_token")) for n, v in s.status.items() if v}
        for s in bad[:5]
    ]
    return len(bad) * SAMPLE_EVERY, views


def ledger_view(state: dict[str, Any]) -> dict[str, Any]:
    """What must survive a switch: work items, attempts, records (revisions aside)."""

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "rev"}

    return {
        "work": {k: strip(v) for k, v in state["work"].items()},
        "assign": {k: strip(v) for k, v in state["assign"].items()},
        # the scheduler's leader mark names whoever leads now: it moves with the leader
        "records": {k: v for k, v in state["records"].items() if k != "scheduler.leader"},
    }


class Rollout:
    """Runs PLAN over a StagedFleet with a Sampler; collects a StepReport per host step."""

    def __init__(self, fleet: StagedFleet, sampler: Sampler, log: Callable[[str], None]) -> None:
        self.fleet = fleet
        self.sampler = sampler
        self.log = log
        self.steps: list[StepReport] = []
        self.switches: list[dict[str, Any]] = []
        self.jobs = 0

    # --- the cluster ---------------------------------------------------------------------

    def leader(self, timeout: float = 20.0) -> str | None:
        return self.fleet.wait_leader(timeout)

    def write_jobs(self, n: int) -> None:
        """Jobs in every state the ledger knows, plus records, through the leader."""
        leader = self.leader()
        assert leader, "no leader to write to"
        for _ in range(n):
            i = self.jobs
            self.jobs += 1
            wid = f"job-{i:03d}"
            r = self.fleet.op(leader, make_op("add_work.v1", work_id=wid, payload={"i": i}))
            assert r["ok"], (wid, r)
            if i % 3 == 1:  # claimed by a host outside the fleet (not reassigned on restarts)
                r = self.fleet.op(leader, make_op("claim_work.v1", work_id=wid, node="gpu-x"))
                assert r["ok"], (wid, r)
            if i % 3 == 2:  # an assignment with its fence, then completed
                r = self.fleet.op(
                    leader, make_op("assign.v1", job_id=wid, node="gpu-y", job_type="selfplay")
                )
                assert r["ok"], (wid, r)
                fence = r["assignment"]["fence_token"]
                r = self.fleet.op(
                    leader, make_op("accept_result.v1", job_id=wid, fence=fence, result={"ok": 1})
                )
                assert r["ok"], (wid, r)
        for kind, key in (("model", "champion"), ("training_cursor", "hex8_2p")):
            r = self.fleet.op(
                leader, make_op("put_record.v1", kind=kind, key=key, value={"n": self.jobs})
            )
            assert r["ok"], (kind, r)

    def settled_ledger(self) -> dict[str, Any]:
        """The leader's ledger once every running node holds the same copy (bounded)."""
        leader = self.leader()
        assert leader, "no leader"
        views: list[dict[str, Any]] = []

        def same() -> bool:
            views[:] = [ledger_view(self.fleet.ledger(n)) for n in self.fleet.running()]
            return all(v == views[0] for v in views)

        wait_for(same, 10, 0.2)
        return ledger_view(self.fleet.ledger(leader))

    # --- one switch ------------------------------------------------------------------------

    def order(self, how: str) -> list[list[str]]:
        leader = self.leader()
        assert leader, "no leader before the switch"
        others = sorted(n for n in self.fleet.nodes if n != leader)
        return {
            "first": [[leader], [others[0]], [others[1]]],
            "last": [[others[0]], [others[1]], [leader]],
            "middle": [[others[0]], [leader], [others[1]]],
            "all": [sorted(self.fleet.nodes)],
        }[how]

    def restart(self, names: list[str], stage: str) -> None:
        for name in names:
            self.fleet.kill(name, signal.SIGTERM)
        for name in names:
            self.fleet.stage[name] = stage
            self.fleet.start(name)
        for name in names:
            assert self.fleet.wait_up(name, 30), self.fleet.log(name)

    def switch(self, to: str, how: str) -> dict[str, Any]:
        before_stage = next(iter(self.fleet.stage.values()))
        label = f"{before_stage}->{to} ({how})"
        before = self.settled_ledger()
        term_before = self._leader_term()
        self.log(f"switch {label}: {len(before['work'])} jobs, term {term_before}")
        for group in self.order(how):
            step = StepReport(label, ",".join(group) if how != "all" else "all", time.monotonic())
            self.restart(group, to)
            ok = self.leader(20) is not None
            time.sleep(0.3)  # a sample after the leader settles
            step.ended = time.monotonic()
            window = self.sampler.window(step.started - SAMPLE_EVERY, step.ended)
            step.leaderless_s = leaderless_runs(window) if ok else float("inf")
            step.two_leaders_s, step.two_leader_samples = two_leader_time(window)
            self.steps.append(step)
            self.log(
                f"  {step.host}: leaderless {step.leaderless_s:.2f}s, "
                f"two leaders {step.two_leaders_s:.2f}s"
            )
        after = self.settled_ledger()
        term_after = self._leader_term()
        lost = sorted(set(before["work"]) - set(after["work"]))
        rerun = sorted(
            w
            for w, a in before["assign"].items()
            if w in after["assign"] and after["assign"][w]["attempt"] != a["attempt"]
        )
        report = {
            "switch": label,
            "jobs_before": len(before["work"]),
            "jobs_after": len(after["work"]),
            "ledger_equal": before == after,
            "jobs_lost": len(lost),
            "jobs_run_twice": len(rerun),
            "term_before": term_before,
            "term_after": term_after,
        }
        self.switches.append(report)
        self.write_jobs(3)  # the new backend takes writes (fences not refused as stale)
        return report

    def _leader_term(self) -> int:
        leader = self.leader()
        s = self.fleet.status(leader) if leader else None
        return int(s["term"]) if s else -1

    def run(self, plan: list[tuple[str, str]] = PLAN) -> None:
        self.fleet.start_all()
        assert self.leader(30), "stage 0 elected no leader"
        self.write_jobs(12)
        for to, how in plan:
            self.switch(to, how)

    def false_dead_peers(self, warmup: float = 6.0) -> int:
        """(observer, peer) pairs where a peer up for `warmup` s was missing from
        the observer's alive peers in some sample (membership interop)."""
        ups: dict[str, list[float]] = {n: [] for n in self.fleet.nodes}
        for s in self.sampler.samples:
            for n, v in s.status.items():
                if v is not None:
                    ups[n].append(s.at)
        bad: set[tuple[str, str, int]] = set()
        for i, s in enumerate(self.sampler.samples):
            for obs, v in s.status.items():
                if v is None or float(v.get("uptime_s", warmup) or 0) < warmup:
                    continue
                for peer, pv in s.status.items():
                    if peer == obs or pv is None or float(pv.get("uptime_s", 0) or 0) < warmup:
                        continue
                    if peer not in (v.get("peers") or []):
                        bad.add((obs, peer, i // 40))  # once per pair per 10 s
        return len(bad)
