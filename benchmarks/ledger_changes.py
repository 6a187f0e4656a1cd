"""What "what changed since revision r" costs the lock holder, as the ledger grows.

A 30-host leader answers every non-voter's ``GET /consensus/ledger?since=r`` about
once a second each, every coordinator reads its replica's changes every tick
(``Ledger.read_since``), and ``/status`` counts the jobs by status up to four
times a second -- all under the lock the Raft thread applies entries under.
py-spy on the 30-host soak showed the leader's Raft thread and event loop waiting
on that lock behind these reads, each a scan of every held job.

This builds ledgers of ``--jobs`` finished self-play jobs (the real state machine,
results shaped like real ones), makes ``--changes`` changes (a few jobs added,
placed, started, finished), and then, side by side in one run, times each read
the way it was done before (a scan of every row, kept here as the reference) and
as it is done now (the maps in revision order, read from the end; the tally kept
up by revision).  The new reads' answers are checked against the old ones.

Prints one JSON line: per ledger size and read, the time of one call in
microseconds (median / min / max over ``--rounds``), old and new.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ledger_growth import finish  # noqa: E402

from ringrift_fleet.consensus import api  # noqa: E402
from ringrift_fleet.consensus import ledger as sm  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger  # noqa: E402

KINDS = ("scheduler.config", "scheduler.summary")
PRUNE_BATCH = 512  # SchedulerPolicy.prune_batch's default


def old_changes(state: sm.State, rev: int) -> dict[str, object]:
    """``ledger.changes`` as it was: every work item and assignment looked at."""
    return {
        "work": [w for w in state["work"].values() if w.get("rev", 0) > rev],
        "assign": [a for a in state["assign"].values() if a.get("rev", 0) > rev],
    }


def old_read_since(state: sm.State, rev: int) -> tuple[list[Any], frozenset[str], object]:
    """``Ledger.read_since`` as it was: a scan for the changed items, copies of them,
    every id held, and the records asked for."""
    return (
        [api._work_item(w) for w in state["work"].values() if w.get("rev", 0) > rev],
        frozenset(state["work"]),
        {k: copy.deepcopy(state["records"].get(k, {})) for k in KINDS},
    )


def old_prune_batch(state: sm.State, max_finished: int, batch: int) -> list[str]:
    """``Ledger.prunable`` as it was, for the cap alone: every finished job listed and
    sorted by age, then the batch taken from the front."""
    out = [
        w
        for w in state["work"].values()
        if w["status"] in sm.TERMINAL
        and sm._status_of(state["assign"].get(w["work_id"])) not in sm.ACTIVE
    ]
    over = max(0, len(out) - max_finished)
    out.sort(key=lambda w: (w["updated_at"], w["seq"]))
    return [w["work_id"] for w in out[:over]][:batch]


def _us(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 1),
        "min": round(min(xs), 1),
        "max": round(max(xs), 1),
    }


def measure(jobs: int, changes: int, rounds: int, calls: int) -> dict[str, Any]:
    led = MemoryLedger("bench")
    clock = Clock(1000.0)
    for i in range(jobs):
        finish(led, i, clock)
    tally = sm.Tally()
    times: dict[str, list[float]] = {}
    seq = jobs
    for _ in range(rounds):
        state = led.state
        tally.counts(state)
        rev = state["rev"]
        while state["rev"] - rev < changes:  # a few more jobs through their steps
            finish(led, seq, clock)
            seq += 1
        got: Any = sm.changes(state, rev)
        want: Any = old_changes(state, rev)
        assert got is not None and got["assign"] == want["assign"]
        assert got["work"] == want["work"]  # the same rows (ledger order was seq order)
        cap = len(state["work"]) - 2 * PRUNE_BATCH  # a leader behind the count cap
        assert led.prunable(0.0, frozenset(), cap, PRUNE_BATCH) == old_prune_batch(
            state, cap, PRUNE_BATCH
        )
        # the tally is read once per round, after the changes (as /status does)
        pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "delta": (
                lambda s=state, r=rev: old_changes(s, r),
                lambda s=state, r=rev: sm.changes(s, r),
            ),
            "read_since": (
                lambda s=state, r=rev: old_read_since(s, r),
                lambda r=rev: led.read_since(KINDS, r),
            ),
            # a leader catching up on the count cap: one batch beyond it, every tick
            "prune_batch": (
                lambda s=state, c=cap: old_prune_batch(s, c, PRUNE_BATCH),
                lambda c=cap: led.prunable(0.0, frozenset(), c, PRUNE_BATCH),
            ),
        }
        for name, (old, new) in pairs.items():
            times.setdefault(f"{name}_old_us", []).append(_us(old, calls))
            times.setdefault(f"{name}_new_us", []).append(_us(new, calls))
        t0 = time.perf_counter()
        counted = tally.counts(state)
        times.setdefault("counts_new_us", []).append((time.perf_counter() - t0) * 1e6)
        times.setdefault("counts_old_us", []).append(_us(lambda s=state: sm.counts(s), calls))
        assert counted == sm.counts(state)
    return {"jobs": jobs, "changes": changes, **{k: _stats(v) for k, v in sorted(times.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, nargs="+", default=[2_000, 20_000])
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20)
    opts = ap.parse_args()
    out = [measure(n, opts.changes, opts.rounds, opts.calls) for n in opts.jobs]
    print(json.dumps({"rounds": opts.rounds, "sizes": out}))


if __name__ == "__main__":
    main()
