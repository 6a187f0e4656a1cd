"""Drive a 3-coordinator fleet through the gradual rollout and the rollback, host by host.

Used by tests/integration/test_consensus_rollout.py and benchmarks/rollout.py.
Every node's /status is sampled every 0.25 s in the background; each switch
of stage restarts the voters in a given order ("first": the leader first,
"last": the leader last, "middle": the leader second, "all": all at once)
and checks the ledger before and after.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.coordinators import LocalFleet, make_op
from tests.support.procs import PYTHON, REPO, stop, wait_for

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
    timeline: str = ""


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


def timeline(samples: list[Sample], t0: float) -> str:
    """Who led when, run-length encoded: "n0 0.0-1.2 | - 1.2-1.7 | n2 1.7-3.0"
    (seconds from t0; "-" nobody, "?" a node that did not answer)."""
    runs: list[tuple[str, float, float]] = []
    for s in samples:
        down = ",".join(sorted(n for n, v in s.status.items() if v is None))
        who = "+".join(s.leaders()) or "-"
        label = f"{who}{' (down ' + down + ')' if down else ''}"
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], s.at - t0)
        else:
            runs.append((label, s.at - t0, s.at - t0))
    return " | ".join(f"{lb} {a:.2f}-{b:.2f}" for lb, a, b in runs)


def two_leader_time(samples: list[Sample]) -> tuple[float, list[dict[str, Any]]]:
    """Seconds (samples x period) with two nodes claiming leadership, and those samples."""
    bad = [s for s in samples if len(s.leaders()) > 1]
    views = [
        {n: (v.get("term"), v.get("fence_token")) for n, v in s.status.items() if v}
        for s in bad[:5]
    ]
    return len(bad) * SAMPLE_EVERY, views


SYNTHETIC = "job-"  # the jobs Rollout.write_jobs puts in the ledger itself


def ledger_view(state: dict[str, Any]) -> dict[str, Any]:
    """What must survive a switch unchanged: the jobs and records written by
    Rollout.write_jobs (work items, attempts and fences, model registry, training
    cursors; revisions aside).  The scheduler's own jobs move on during a switch:
    fleet_jobs() and JobSide check those."""

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "rev"}

    return {
        "work": {k: strip(v) for k, v in state["work"].items() if k.startswith(SYNTHETIC)},
        "assign": {k: strip(v) for k, v in state["assign"].items() if k.startswith(SYNTHETIC)},
        # the scheduler's records (leader mark, cycles, history) move on by themselves
        "records": {k: v for k, v in state["records"].items() if not k.startswith("scheduler.")},
    }


def fleet_jobs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scheduler's jobs: status, attempts, and the attempt whose result was accepted."""
    out = {}
    for k, w in state["work"].items():
        if k.startswith(SYNTHETIC):
            continue
        result = w.get("result") if isinstance(w.get("result"), dict) else {}
        out[k] = {"status": w["status"], "attempts": w["attempts"], "won": result.get("attempt")}
    return out


class Rollout:
    """Runs PLAN over a StagedFleet with a Sampler; collects a StepReport per host step."""

    def __init__(
        self,
        fleet: StagedFleet,
        sampler: Sampler,
        log: Callable[[str], None],
        jobs: JobSide | None = None,
    ) -> None:
        self.fleet = fleet
        self.job_side = jobs
        self.seen: set[str] = set()  # the scheduler's jobs any switch saw
        self.kills: dict[str, list[float]] = {}  # when each node was told to stop
        self.accounts: dict[str, Any] = {}
        self.sampler = sampler
        self.log = log
        self.steps: list[StepReport] = []
        self.switches: list[dict[str, Any]] = []
        self.jobs = 0
        self.t0 = time.monotonic()

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
            # "sync" jobs with no training cycle: the scheduler never places them
            r = self.fleet.op(
                leader, make_op("add_work.v1", work_id=wid, payload={"i": i}, work_type="sync")
            )
            assert r["ok"], (wid, r)
            if i % 3 == 1:  # claimed by a host outside the fleet (not reassigned on restarts)
                r = self.fleet.op(leader, make_op("claim_work.v1", work_id=wid, node="gpu-x"))
                assert r["ok"], (wid, r)
            if i % 3 == 2:  # an assignment with its fence, then completed
                r = self.fleet.op(
                    leader, make_op("assign.v1", job_id=wid, node="gpu-y", job_type="sync")
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
            self.kills.setdefault(name, []).append(time.monotonic())
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
        jobs_before = self.fleet_jobs()
        term_before = self._leader_term()
        self.log(
            f"switch {label}: {len(before['work'])} + {len(jobs_before)} jobs, term {term_before}"
        )
        for group in self.order(how):
            step = StepReport(label, ",".join(group) if how != "all" else "all", time.monotonic())
            self.restart(group, to)
            ok = self.leader(20) is not None
            time.sleep(0.3)  # a sample after the leader settles
            step.ended = time.monotonic()
            window = self.sampler.window(step.started - SAMPLE_EVERY, step.ended)
            step.leaderless_s = leaderless_runs(window) if ok else float("inf")
            step.two_leaders_s, step.two_leader_samples = two_leader_time(window)
            step.timeline = timeline(window, step.started)
            self.steps.append(step)
            self.log(
                f"  {step.host}: leaderless {step.leaderless_s:.2f}s, "
                f"two leaders {step.two_leaders_s:.2f}s; {step.timeline}"
            )
        after = self.settled_ledger()
        jobs_after = self.fleet_jobs()
        self.seen |= set(jobs_before) | set(jobs_after)
        term_after = self._leader_term()
        lost = sorted(set(before["work"]) - set(after["work"]))
        rerun = sorted(
            w
            for w, a in before["assign"].items()
            if w in after["assign"] and after["assign"][w]["attempt"] != a["attempt"]
        )
        # the scheduler's jobs: every one held before is held after, none went back
        # (a completed job keeps the attempt it was accepted from)
        kept = [j for j in jobs_before if j in jobs_after]
        went_back = sorted(
            j
            for j in kept
            if jobs_before[j]["status"] == "completed"
            and (jobs_after[j]["status"], jobs_after[j]["won"])
            != ("completed", jobs_before[j]["won"])
        )
        report = {
            "switch": label,
            "jobs_before": len(before["work"]) + len(jobs_before),
            "jobs_after": len(after["work"]) + len(kept),  # of those held before
            "jobs_added": len(set(jobs_after) - set(jobs_before)),  # placed meanwhile
            "jobs_replaced": sum(
                jobs_after[j]["attempts"] > jobs_before[j]["attempts"] for j in kept
            ),
            "ledger_equal": before == after,
            "jobs_lost": len(lost) + len(jobs_before) - len(kept) + len(went_back),
            "jobs_run_twice": len(rerun),
            "term_before": term_before,
            "term_after": term_after,
        }
        self.switches.append(report)
        self.log(f"  {json.dumps(report)}")
        self.write_jobs(3)  # the new backend takes writes (fences not refused as stale)
        return report

    def fleet_jobs(self) -> dict[str, dict[str, Any]]:
        leader = self.leader()
        assert leader, "no leader"
        return fleet_jobs(self.fleet.ledger(leader))

    def _leader_term(self) -> int:
        leader = self.leader()
        s = self.fleet.status(leader) if leader else None
        return int(s["term"]) if s else -1

    def run(self, plan: list[tuple[str, str]] = PLAN) -> None:
        self.fleet.start_all()
        assert self.leader(30), "stage 0 elected no leader"
        if self.job_side is not None:
            self.job_side.start_workers(sorted(self.fleet.nodes))
            running = lambda: any(  # noqa: E731
                w["status"] == "completed" for w in self.fleet_jobs().values()
            )
            # 120 s: workers and the first placements start beside a parallel test lane in CI
            assert wait_for(running, 120, 0.5), "no self-play job completed before the rollout"
        self.write_jobs(12)
        for to, how in plan:
            self.switch(to, how)
        if self.job_side is not None:
            self.accounts = self.account()

    def account(self) -> dict[str, Any]:
        """The whole run's lost and run-twice, once the results of every attempt that
        ran to its end are in the ledger (bounded wait)."""
        assert self.job_side is not None
        side = self.job_side
        out: dict[str, Any] = {}

        def settled() -> bool:
            leader = self.leader()
            assert leader
            out.update(side.account(self.seen, self.fleet.ledger(leader)))
            return int(out["jobs_lost"]) == 0

        wait_for(settled, 20, 1.0)
        self.log(f"jobs over the run: {json.dumps(out)}")
        return out

    def false_dead(self, warmup: float = 6.0) -> list[dict[str, Any]]:
        """Stretches where a peer up for ``warmup`` s (it answered /status) was missing
        from an observer's alive peers (the observer up for ``warmup`` s too), each
        with the host step it began in: membership interop during the rollout."""
        spans: dict[tuple[str, str], list[float]] = {}
        out: list[dict[str, Any]] = []

        def close(key: tuple[str, str], at: float) -> None:
            start, last = spans.pop(key)
            out.append(
                {
                    "observer": key[0],
                    "peer": key[1],
                    "at": round(start - self.t0, 2),
                    "seconds": round(last - start + SAMPLE_EVERY, 2),
                    "step": self.step_at(start),
                }
            )

        for s in self.sampler.samples:
            missing: set[tuple[str, str]] = set()
            live = {n for n, v in s.status.items() if self._live(n, v, s.at, warmup)}
            for obs in live:
                v = s.status[obs]
                assert v is not None
                for peer in live - {obs}:
                    if peer not in (v.get("peers") or []):
                        missing.add((obs, peer))
            for key in missing:
                spans.setdefault(key, [s.at, s.at])[1] = s.at
            for key in [k for k in spans if k not in missing]:
                close(key, s.at)
        for key in list(spans):
            close(key, spans[key][1])
        return sorted(out, key=lambda d: d["at"])

    def _live(self, name: str, v: dict[str, Any] | None, at: float, warmup: float) -> bool:
        """Up for ``warmup`` s and not stopping: a process told to stop (SIGTERM) leaves
        membership gracefully before it exits, so from then on it is no live peer."""
        if v is None:
            return False
        up = float(v.get("uptime_s", 0) or 0)
        stopping = any(k <= at and up > at - k for k in self.kills.get(name, []))
        return up >= warmup and not stopping

    def step_at(self, at: float) -> str:
        """The host step running at ``at`` (or the one that ended last before it)."""
        label = "before the first switch"
        for step in self.steps:
            if step.started <= at:
                label = f"{step.switch} restarting {step.host}"
                if at > step.ended:
                    label += " (after it)"
        return label


JOB_SECONDS = 2.0  # each self-play job: a command that sleeps (tests/support/sleepy_job.py)


class JobSide:
    """The scheduler's side of a rollout: one redis-server, a CPU Celery worker per host,
    and self-play jobs that are a short command recording every start, stop and end,
    so "ran once" is counted from what really ran, beside the ledger and Celery."""

    def __init__(self, root: Path, job_seconds: float = JOB_SECONDS) -> None:
        from tests.support.celery_worker import fleet_env
        from tests.support.redis_server import start_redis

        self.root = root
        self.server = start_redis(root / "redis")
        self.record = root / "runs.txt"
        self.record.touch()
        workloads = root / "workloads.yaml"
        script = REPO / "tests" / "support" / "sleepy_job.py"
        workloads.write_text(
            "selfplay:\n"
            f"  command: [{PYTHON}, {script}, --seconds, '{job_seconds}', --out,"
            f" '{{output_dir}}', --record, '{self.record}', --job, '{{job_id}}',"
            " --attempt, '{attempt}']\n"
        )
        self.worker_env = fleet_env(
            self.server.url,
            root,
            RINGRIFT_P2P_WORKLOADS_FILE=str(workloads),
            RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS="hex8_2p",
            RINGRIFT_P2P_LOAD_MAX_FOR_NEW_JOBS="1.0",
            RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD="100",
        )
        self.workers: list[Any] = []

    def coordinator_env(self) -> dict[str, str]:
        env = dict(self.worker_env)
        env.pop("RINGRIFT_P2P_STATE_DIR")  # each coordinator has its own
        return env

    def ready_hosts(self, fleet: LocalFleet) -> None:
        """The inventory says every host has CPUs and is ready for work."""
        import yaml

        doc = yaml.safe_load(fleet.hosts_file.read_text())
        for spec in doc["hosts"].values():
            spec.update({"cpus": 2, "status": "ready"})
        fleet.hosts_file.write_text(yaml.safe_dump(doc))

    def start_workers(self, names: list[str]) -> None:
        from tests.support.celery_worker import cpu_worker_args, start_workers

        specs = [(cpu_worker_args(n), f"{n}@cpu", self.root / f"w-{n}.log") for n in names]
        self.workers = start_workers(specs, self.worker_env)

    def close(self) -> None:
        for w in self.workers:
            stop(w.proc, timeout=15)
        self.server.stop()

    def runs(self) -> list[tuple[str, str, int]]:
        out = []
        for line in self.record.read_text().splitlines():
            what, job, attempt, _pid, _at = line.split()
            out.append((what, job, int(attempt)))
        return out

    def celery_results(self, job: str, attempts: int) -> list[dict[str, Any]]:
        """The results Celery holds for a job's attempts (the task id is <job>.a<n>)."""
        import redis

        r = redis.Redis.from_url(self.server.url)
        out = []
        for attempt in range(1, attempts + 1):
            raw: Any = r.get(f"celery-task-meta-{job}.a{attempt}")
            body = json.loads(raw) if raw else None
            if isinstance(body, dict) and isinstance(body.get("result"), dict):
                out.append({**body["result"], "task_state": body.get("status")})
        return out

    def deliveries(self, job: str, attempts: int) -> list[int]:
        import redis

        r = redis.Redis.from_url(self.server.url)
        counts: list[Any] = [
            r.get(f"ringrift:deliveries:{job}:{a}") for a in range(1, attempts + 1)
        ]
        return [int(c or 0) for c in counts]

    def account(self, seen: set[str], final: dict[str, Any]) -> dict[str, Any]:
        """Lost and run-twice over the whole run, from the final ledger, what ran
        (the job's own records) and Celery's results.  ``seen``: every job id any
        switch saw in the ledger."""
        jobs = fleet_jobs(final)
        done: dict[str, list[int]] = {}
        started: dict[str, list[int]] = {}
        stopped = 0
        for what, job, attempt in self.runs():
            if what == "done":
                done.setdefault(job, []).append(attempt)
            elif what == "start":
                started.setdefault(job, []).append(attempt)
            elif what == "term":
                stopped += 1
        lost = sorted(j for j in seen if j not in jobs)  # forgotten by the ledger
        lost += sorted(j for j, w in jobs.items() if w["status"] == "failed")
        # ran to the end, but the ledger never took the result
        lost += sorted(j for j in done if j in jobs and jobs[j]["status"] != "completed")
        # started on a worker (so it was placed and sent) but unknown to the ledger
        lost += sorted(j for j in set(started) | set(done) if j not in jobs and j not in seen)
        twice = {j for j, a in done.items() if len(a) > 1}  # ran to the end twice
        for j, w in jobs.items():
            results = self.celery_results(j, w["attempts"])
            finished = [x for x in results if x.get("status") == "completed"]
            if len([x for x in finished if not x.get("duplicate")]) > 1:
                twice.add(j)
            if any(n > 1 for n in self.deliveries(j, w["attempts"])):
                twice.add(j)  # an attempt started twice
            if w["status"] == "completed" and w["won"] not in done.get(j, []):
                lost.append(j)  # accepted from an attempt that never finished
        ids = sorted(int(m.group(1)) for j in jobs if (m := re.search(r":(\d+)$", j)))
        return {
            "jobs": len(jobs),
            "completed": sum(w["status"] == "completed" for w in jobs.values()),
            "jobs_lost": len(set(lost)),
            "lost": sorted(set(lost))[:10],
            "jobs_run_twice": len(twice),
            "twice": sorted(twice)[:10],
            "replaced": sum(w["attempts"] > 1 for w in jobs.values()),
            "stopped_attempts": stopped,
            # ids a leader numbered but never committed (a write lost with a stopping
            # leader): no job behind them ran (that would count as lost above)
            "ids_skipped": sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))[:20] if ids else [],
        }
