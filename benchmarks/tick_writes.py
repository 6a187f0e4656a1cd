"""A leader's tick into the Raft ledger: one write per job, or one batch.

Prints ONE JSON line.  Three Raft voters on 127.0.0.1 (one process: they share a
GIL, as a loaded host's threads share its cores).  Each round times the tick that
places ``--jobs`` new jobs (an ``add_work`` and an ``assign`` each: ``place_*``),
then the tick that records their results as the scheduler does (a
``start_work`` and an ``accept_result`` per job), each

* ``one_by_one``: each its own synchronous write (what the beat did before),
* ``batched``: ``Ledger.add_and_assign`` (two commits) and ``Ledger.write_many``
  (one log entry when they fit).

The modes alternate round by round, side by side in one run; the figures are the
median of rounds with min and max.  The fleet soak's 20 s-job run showed the
cost this removes: 60 results one after another, ~0.1 s each, hosts idle.

Usage: python benchmarks/tick_writes.py [--jobs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.config import load_config  # noqa: E402
from ringrift_fleet.consensus.api import NewJob  # noqa: E402
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader  # noqa: E402
from ringrift_fleet.consensus.voters import Voter  # noqa: E402
from ringrift_fleet.localhost import free_port  # noqa: E402

CONFIG = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "bench"})


def place(
    leader: RaftLedger, prefix: str, jobs: int, batched: bool
) -> tuple[list[tuple[str, str, str]], float]:
    """``jobs`` self-play jobs added and assigned; (job, host, fence token) each, and
    the seconds it took."""
    new = [
        NewJob(f"{prefix}-{i}", {"config": "hex8_2p"}, "selfplay", f"gpu-{i % 30:02d}")
        for i in range(jobs)
    ]
    started = time.perf_counter()
    if batched:
        answers = leader.add_and_assign(new)
    else:
        answers = []
        for j in new:
            added = leader.add_work(j.work_id, j.payload, work_type=j.work_type)
            answers.append((added, leader.assign(j.work_id, j.node_id, j.work_type)))
    took = time.perf_counter() - started
    out = []
    for j, (added, a) in zip(new, answers, strict=True):
        assert added and a is not None, leader.last_error
        out.append((j.work_id, j.node_id, a.fence_token))
    return out, took


def tick(leader: RaftLedger, placed: list[tuple[str, str, str]], batched: bool) -> float:
    """Seconds to record every placed job's start and result."""
    started = time.perf_counter()
    if batched:
        calls: list[tuple[str, dict[str, object]]] = []
        for job, host, token in placed:
            calls.append(("start_work.v1", {"work_id": job, "node": host}))
            result = {"status": "completed", "fence": {"token": token}, "games": 8}
            calls.append(("accept_result.v1", {"job_id": job, "fence": token, "result": result}))
        oks = leader.write_many(calls)
    else:
        oks = []
        for job, host, token in placed:
            oks.append(leader.start_work(job, host))
            result = {"status": "completed", "fence": {"token": token}, "games": 8}
            oks.append(leader.accept_result(job, token, result))
    took = time.perf_counter() - started
    assert all(oks), leader.last_error
    return took


def summary(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 4),
        "min": round(min(xs), 4),
        "max": round(max(xs), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60, help="results in one tick (60)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each mode (7)")
    args = parser.parse_args()
    voters = [Voter(f"v{i}", "127.0.0.1", free_port(), 0) for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="tick-writes-") as tmp:
        ledgers = [
            RaftLedger(v.name, voters, config=CONFIG, state_dir=Path(tmp) / v.name) for v in voters
        ]
        try:
            if not wait_for_leader(ledgers[0], 15):
                raise SystemExit("no Raft leader within 15 s")
            leader = next(x for x in ledgers if x.is_leader())
            times: dict[str, list[float]] = {"one_by_one": [], "batched": []}
            entries: dict[str, list[int]] = {"one_by_one": [], "batched": []}
            placing: dict[str, list[float]] = {"one_by_one": [], "batched": []}
            place_entries: dict[str, list[int]] = {"one_by_one": [], "batched": []}
            for r in range(args.rounds):
                for mode in ("one_by_one", "batched") if r % 2 == 0 else ("batched", "one_by_one"):
                    before = leader.raft_status()["commit_idx"]
                    placed, took = place(leader, f"{mode}-{r}", args.jobs, mode == "batched")
                    placing[mode].append(took)
                    place_entries[mode].append(leader.raft_status()["commit_idx"] - before)
                    before = leader.raft_status()["commit_idx"]
                    times[mode].append(tick(leader, placed, batched=mode == "batched"))
                    entries[mode].append(leader.raft_status()["commit_idx"] - before)
        finally:
            for ledger in ledgers:
                ledger.close()
    seq, bat = statistics.median(times["one_by_one"]), statistics.median(times["batched"])
    out = {
        "voters": 3,
        "jobs_per_tick": args.jobs,
        "rounds": args.rounds,
        "one_by_one_s": summary(times["one_by_one"]),
        "batched_s": summary(times["batched"]),
        "log_entries_one_by_one": statistics.median(entries["one_by_one"]),
        "log_entries_batched": statistics.median(entries["batched"]),
        "speedup_median": round(seq / bat, 1) if bat > 0 else None,
        "place_one_by_one_s": summary(placing["one_by_one"]),
        "place_batched_s": summary(placing["batched"]),
        "place_log_entries_one_by_one": statistics.median(place_entries["one_by_one"]),
        "place_log_entries_batched": statistics.median(place_entries["batched"]),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
