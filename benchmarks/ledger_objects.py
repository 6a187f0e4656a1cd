"""Do Python objects grow once the ledger's count cap holds?  (Allocator vs. leak.)

Drives the real ledger state machine and beat as ``ledger_growth.py`` does, at
3,500 jobs/h with a small cap (``--max-finished``, 2,000) so the steady state
comes quickly, and every ``--hours-per-step`` simulated hours records the live
object count (after a collection) and the largest ``tracemalloc`` growth since
the step before.  Prints one JSON line: ``{"objects": [...], "work_items":
[...], "largest_growth_kb": [...]}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ledger_growth import HOUR, finish  # noqa: E402

from ringrift_fleet.scheduler.settings import SchedulerPolicy  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--hours-per-step", type=int, default=8)
    ap.add_argument("--jobs-per-hour", type=int, default=3500)
    ap.add_argument("--max-finished", type=int, default=2000)
    args = ap.parse_args()
    if not (1 <= args.steps <= 50 and 1 <= args.hours_per_step <= 48):
        ap.error("--steps 1..50, --hours-per-step 1..48")
    clock = Clock(1_800_000_000.0)
    ledger = MemoryLedger("leader")
    ledger.clock = clock
    beat = idle_beat(ledger, SchedulerPolicy(ledger_max_finished=args.max_finished), clock)
    step = HOUR / args.jobs_per_hour
    seq = 0
    tracemalloc.start()
    out: dict[str, list[float]] = {"objects": [], "work_items": [], "largest_growth_kb": []}
    before = None
    for _ in range(args.steps):
        for _hour in range(args.hours_per_step):
            for _job in range(args.jobs_per_hour):
                seq += 1
                finish(ledger, seq, clock)
                clock.t += step
            for _batch in range(10):  # bounded, as the benchmark's leader does
                if beat.prune() == 0:
                    break
            beat.refresh()
        gc.collect()
        objects = gc.get_objects()
        out["objects"].append(len(objects))
        out["work_items"].append(sum(1 for o in objects if type(o).__name__ == "WorkItem"))
        del objects
        snap = tracemalloc.take_snapshot()
        if before is not None:
            diffs = snap.compare_to(before, "lineno")
            out["largest_growth_kb"].append(round(max(d.size_diff for d in diffs) / 1024, 1))
        before = snap
    print(json.dumps(out))


if __name__ == "__main__":
    main()
