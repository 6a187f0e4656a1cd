"""A leader's tick of results into the Raft ledger: one write per job, or one batch.

Prints ONE JSON line.  Three Raft voters on 127.0.0.1 (one process: they share a
GIL, as a loaded host's threads share its cores).  Each round places ``--jobs``
jobs (added, assigned: not timed), then times the tick that records their
results as the scheduler does: a ``start_work`` and an ``accept_result`` per job,

* ``one_by_one``: each its own synchronous write (what the beat did before),
* ``batched``: all in one ``Ledger.write_many`` (one log entry when they fit).

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
from ringrift_fleet.consensus.raft_state import RaftLedger, wait_for_leader  # noqa: E402
from ringrift_fleet.consensus.voters import Voter  # noqa: E402
from ringrift_fleet.localhost import free_port  # noqa: E402

CONFIG = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "bench"})


def place(leader: RaftLedger, prefix: str, jobs: int) -> list[tuple[str, str, str]]:
    """``jobs`` self-play jobs added and assigned; (job, host, fence token) each."""
    out = []
    for i in range(jobs):
        job = f"{prefix}-{i}"
        assert leader.add_work(job, {"config": "hex8_2p"}, work_type="selfplay"), leader.last_error
        host = f"gpu-{i % 30:02d}"
        a = leader.assign(job, host, "selfplay")
        assert a is not None, leader.last_error
        out.append((job, host, a.fence_token))
    return out


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
            for r in range(args.rounds):
                for mode in ("one_by_one", "batched") if r % 2 == 0 else ("batched", "one_by_one"):
                    placed = place(leader, f"{mode}-{r}", args.jobs)
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
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
