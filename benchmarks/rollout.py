"""The gradual rollout and the instant rollback on 3 real coordinators, as one JSON line.

Runs tests/support/rollout.py's PLAN (stage 0 -> 1 -> 2 -> 3 -> 4 -> rollback, then the
Bully <-> Raft switch in every restart order: leader first, middle, last, all at once)
on 3 coordinators with the scheduler, one redis-server and a CPU Celery worker per host
running real 2 s self-play jobs (a command that records each start, stop and end),
sampling every node's /status every 0.25 s, and prints

  {"leaderless_max_s", "two_leaders_s", "false_dead_peers", "jobs_lost", "jobs_run_twice", ...}

leaderless_max_s is the longest stretch without a leader in any host-by-host step (the
all-at-once restarts have nobody up and are reported apart); two_leaders_s the sampled
seconds with two nodes claiming leadership; false_dead_peers the stretches where a live
peer (up 6 s, not told to stop) was missing from a live node's alive peers, each printed
to stderr with its observer, peer and host step; jobs_lost / jobs_run_twice over every
switch (the test's own ledger entries) and over the whole run (the scheduler's jobs:
from the ledger, each job's own records, Celery's results and the delivery counters).
With --verbose, each host step's leader timeline goes to stderr.

  python benchmarks/rollout.py [--rounds N] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.rollout import PLAN, JobSide, Rollout, Sampler, StagedFleet


def one_round(verbose: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        jobs = JobSide(Path(tmp) / "jobs")
        fleet = StagedFleet(
            Path(tmp) / "fleet", voters=3, scheduler=True, extra_env=jobs.coordinator_env()
        )
        jobs.ready_hosts(fleet)
        started = time.monotonic()
        log = (lambda m: print(m, file=sys.stderr)) if verbose else (lambda m: None)
        try:
            with Sampler(fleet) as sampler:
                rollout = Rollout(fleet, sampler, log, jobs)
                rollout.run(PLAN)
        finally:
            fleet.stop_all()
            jobs.close()
        steps = [s for s in rollout.steps if s.host != "all"]
        run = rollout.accounts
        false_dead = rollout.false_dead()
        for d in false_dead:
            print(f"false dead: {json.dumps(d)}", file=sys.stderr)
        return {
            "leaderless_max_s": round(max(s.leaderless_s for s in steps), 2),
            "leaderless_median_s": round(statistics.median(s.leaderless_s for s in steps), 2),
            "leaderless_all_at_once_max_s": round(
                max((s.leaderless_s for s in rollout.steps if s.host == "all"), default=0.0), 2
            ),
            "two_leaders_s": sum(s.two_leaders_s for s in rollout.steps),
            "false_dead_peers": len(false_dead),
            "jobs_lost": sum(sw["jobs_lost"] for sw in rollout.switches) + run["jobs_lost"],
            "jobs_run_twice": sum(sw["jobs_run_twice"] for sw in rollout.switches)
            + run["jobs_run_twice"],
            "jobs_completed": run["completed"],
            "jobs_replaced": run["replaced"],
            "attempts_stopped": run["stopped_attempts"],
            "ledger_unequal_switches": sum(not sw["ledger_equal"] for sw in rollout.switches),
            "host_steps": len(rollout.steps),
            "switches": len(rollout.switches),
            "wall_s": round(time.monotonic() - started, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    rounds = [one_round(args.verbose) for _ in range(max(1, args.rounds))]
    out: dict[str, object] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = statistics.median(values)
        if len(rounds) > 1:
            out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    out["rounds"] = len(rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
