"""A week of a 50-host fleet's finished jobs: does the coordinator's ledger stay bounded?

Drives the real ledger state machine (the one Raft and SQLite replicate, in
one process: tests/support/memory_ledger.py) and the real scheduler beat with
a simulated clock: every job is added, placed, started and completed through
the ``Ledger`` API with a result shaped like a real self-play result.  Once a
simulated hour the leader prunes (``Beat.prune``, as its tick does every
minute).  The same week runs twice, with pruning and without.

At each simulated day it records the jobs the ledger holds, the size of the
pickled state (what pysyncobj's dump and each follower's replica hold) and
the time of ``Beat.refresh`` (what every coordinator does every tick): a full
read (a new leader's first), a tick with nothing changed, and a tick after one
more job finished (medians of 9 ticks each).

It also records what a non-voter's read copy fetches from the leader each
second: the whole replica (``copy_whole_kb``, as before) or the changes since
its revision (``copy_delta_kb``, after one more job finished).

Prints one JSON line: ``{"days", "jobs_per_hour", "jobs", "prune": {...},
"no_prune": {...}}`` with ``items``, ``state_mb``, ``full_read_ms``,
``idle_tick_ms``, ``busy_tick_ms``, ``copy_whole_kb``, ``copy_delta_kb`` and
``rss_mb`` (the whole process: ledger replica, scheduler view, interpreter) per
day.

The pruned run keeps finished jobs a day (``--retention-hours``) and at most
``--max-finished`` of them (``SCHEDULER_LEDGER_MAX_FINISHED``, 20,000), the
oldest going into the history records first.  ``--busy`` is the bounded-memory
check at a busy fleet's rate: 3,500 jobs an hour for a week, pruned only,
``--repeat`` times in fresh processes; it adds ``"rss_mb_end": {"median",
"min", "max", "runs"}``, the target (150 MB) and whether every run met it.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.consensus.ledger import changes  # noqa: E402
from ringrift_fleet.scheduler.settings import SchedulerPolicy  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat  # noqa: E402

HOUR = 3600.0
SAMPLES = 9  # ticks timed per day; the median is reported
CONFIGS = [f"{b}_{p}p" for b in ("square8", "square19", "hex8", "hexagonal") for p in (2, 3, 4)]


def _result(job_id: str, config: str, node: str, attempt: int) -> dict[str, Any]:
    """Shaped like ringrift.selfplay's result (docs/execution.md)."""
    name = f"games/{config}/{job_id.replace(':', '_')}.jsonl.gz"
    return {
        "job_id": job_id,
        "job_type": "selfplay",
        "attempt": attempt,
        "fence": f"t1:{job_id}:a{attempt}",
        "node": node,
        "worker": f"{node}@gpu0",
        "status": "completed",
        "artifacts": [{"name": name, "size": 52311, "sha256": "ab" * 32}],
        "games": 16,
        "games_path": name,
        "config": config,
    }


def finish(ledger: MemoryLedger, seq: int, clock: Clock) -> None:
    """One self-play job through the Ledger API: added, placed, started, completed."""
    config = CONFIGS[seq % len(CONFIGS)]
    job_id = f"selfplay:{config}:{seq}"
    node = f"gpu-{seq % 50:02d}"
    payload = {
        "config": config,
        "kwargs": {"board_type": config.rsplit("_", 1)[0], "num_games": 16},
        "hard_limit_s": 7200.0,
    }
    ledger.add_work(job_id, payload, work_type="selfplay")
    a = ledger.assign(job_id, node, "selfplay")
    assert a is not None
    ledger.start_work(job_id, node)
    ledger.accept_result(job_id, a.fence_token, _result(job_id, config, node, 1))


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return round((time.perf_counter() - t0) * 1000, 2)


BUSY_JOBS_PER_HOUR = 3500
BUSY_RSS_TARGET_MB = 150.0


def run(
    days: int, jobs_per_hour: int, prune: bool, retention_s: float, max_finished: int = 20_000
) -> dict[str, Any]:
    clock = Clock(1_800_000_000.0)
    ledger = MemoryLedger("leader")
    ledger.clock = clock
    policy = SchedulerPolicy(ledger_retention_s=retention_s, ledger_max_finished=max_finished)
    beat = idle_beat(ledger, policy, clock)
    seq = 0
    out: dict[str, list[float]] = {
        "items": [],
        "state_mb": [],
        "full_read_ms": [],
        "idle_tick_ms": [],
        "busy_tick_ms": [],
        "copy_whole_kb": [],
        "copy_delta_kb": [],
        "rss_mb": [],
    }
    step = HOUR / jobs_per_hour
    for _day in range(days):
        for _hour in range(24):
            for _ in range(jobs_per_hour):
                seq += 1
                finish(ledger, seq, clock)
                clock.t += step
            if prune:
                for _ in range(10):  # bounded: a batch of 512 per call
                    if beat.prune() == 0:
                        break
        with ledger.reading() as state:
            out["items"].append(len(state["work"]))
            out["state_mb"].append(round(len(pickle.dumps(state)) / 2**20, 2))
            # what a non-voter's read copy fetches: the whole replica, or a second's changes
            out["copy_whole_kb"].append(round(len(json.dumps(state)) / 1024))
            rev = state["rev"]
        finish(ledger, seq + 1, clock)  # about a second's changes at this rate, and more
        seq += 1
        with ledger.reading() as state:
            out["copy_delta_kb"].append(round(len(json.dumps(changes(state, rev))) / 1024, 1))
        beat._next_full_read = 0.0  # this one reads everything, as a new leader does
        out["full_read_ms"].append(_timed(beat.refresh))
        idle, busy = [], []
        for _ in range(SAMPLES):
            idle.append(_timed(beat.refresh))  # nothing changed since the last tick
            seq += 1
            finish(ledger, seq, clock)  # a busy tick: one more job finished since
            busy.append(_timed(beat.refresh))
        out["idle_tick_ms"].append(statistics.median(idle))
        out["busy_tick_ms"].append(statistics.median(busy))
        gc.collect()
        out["rss_mb"].append(round(psutil.Process().memory_info().rss / 2**20, 1))
    games = sum(beat.view.games.values())
    assert games == 16 * seq, f"games counted {games}, played {16 * seq}"
    return {**out, "games_counted": games}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--jobs-per-hour", type=int, default=600)
    parser.add_argument("--plot", help="write a PNG of size and read times per day here")
    parser.add_argument(
        "--retention-hours", type=float, default=24.0, help="LEDGER_RETENTION of the pruned run"
    )
    parser.add_argument("--prune-only", action="store_true", help="skip the week without pruning")
    parser.add_argument(
        "--max-finished",
        type=int,
        default=20_000,
        help="SCHEDULER_LEDGER_MAX_FINISHED of the pruned run (default 20000)",
    )
    parser.add_argument(
        "--busy",
        action="store_true",
        help=f"{BUSY_JOBS_PER_HOUR} jobs/h, pruned only, RSS after the week vs "
        f"{BUSY_RSS_TARGET_MB:g} MB",
    )
    parser.add_argument("--repeat", type=int, default=1, help="pruned weeks to run (1..9)")
    args = parser.parse_args()
    if args.busy:
        args.jobs_per_hour, args.prune_only = BUSY_JOBS_PER_HOUR, True
    if not 1 <= args.repeat <= 9 or args.max_finished < 1:
        parser.error("--repeat 1..9, --max-finished >= 1")
    if not (1 <= args.days <= 30 and 1 <= args.jobs_per_hour <= 5000):
        parser.error("--days 1..30, --jobs-per-hour 1..5000")
    if args.plot and args.prune_only:
        parser.error("--plot draws both weeks: leave out --prune-only")
    retention_s = args.retention_hours * HOUR
    # each week in a fresh process, so one's memory does not hide in the other's RSS
    fork = multiprocessing.get_context("fork")
    weeks = []
    for _ in range(args.repeat):
        with ProcessPoolExecutor(max_workers=1, mp_context=fork) as pool:
            weeks.append(
                pool.submit(
                    run, args.days, args.jobs_per_hour, True, retention_s, args.max_finished
                ).result()
            )
    pruned = weeks[0]
    ends = [w["rss_mb"][-1] for w in weeks]
    result: dict[str, Any] = {
        "days": args.days,
        "jobs_per_hour": args.jobs_per_hour,
        "jobs": args.days * 24 * args.jobs_per_hour,
        "retention_hours": args.retention_hours,
        "max_finished": args.max_finished,
        "prune": pruned,
        "rss_mb_end": {
            "median": statistics.median(ends),
            "min": min(ends),
            "max": max(ends),
            "runs": ends,
        },
    }
    if args.busy:
        result["rss_target_mb"] = BUSY_RSS_TARGET_MB
        result["rss_target_met"] = max(ends) <= BUSY_RSS_TARGET_MB
    if not args.prune_only:
        with ProcessPoolExecutor(max_workers=1, mp_context=fork) as pool:
            result["no_prune"] = pool.submit(
                run, args.days, args.jobs_per_hour, False, retention_s
            ).result()
    if args.plot:
        plot(args.plot, result)
    print(json.dumps(result))


def plot(path: str, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = list(range(1, result["days"] + 1))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("prune", "pruned after 24 h", "-"), ("no_prune", "kept", "--")):
        r = result[key]
        left.plot(days, r["rss_mb"], style, marker="o", label=f"RSS, jobs {label}")
        left.plot(days, r["state_mb"], style, marker="x", label=f"pickled ledger, jobs {label}")
        right.plot(days, r["full_read_ms"], style, marker="o", label=f"full read, jobs {label}")
        right.plot(days, r["busy_tick_ms"], style, marker="s", label=f"tick, jobs {label}")
    left.set_xlabel("simulated day")
    left.set_ylabel("MB")
    left.set_title(f"Memory, {result['jobs_per_hour']} jobs/h")
    left.legend()
    right.set_yscale("log")
    right.set_xlabel("simulated day")
    right.set_ylabel("Beat.refresh (ms)")
    right.set_title("Reading the ledger: new leader vs every tick")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
