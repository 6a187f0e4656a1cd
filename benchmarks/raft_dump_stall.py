"""How long the Raft full dump (log compaction) holds the Raft thread.

In the 60-minute 30-host soak the dump, written on the Raft thread, took 2.1-12.4 s
(6-8 MB of ledger on a loaded 2-core machine); with no heartbeat sent and no vote
answered meanwhile, the fleet was leaderless for up to 20 s.  The dump is now written
by a forked child (``consensus/dump_child.py``).

This builds a ledger of ``--jobs`` finished self-play jobs (the real state machine
through the ``Ledger`` API, results shaped like real ones) and, side by side in one
run, round by round, writes the real dump (``raft_state._write_dump``) both ways:

* ``in_process``: on the calling thread, as before (the thread is held the whole
  write; the GIL also keeps other threads from running Python much of it);
* ``forked``: ``ForkedDump.start`` (the caller is held for the fork only), then
  polled every 10 ms as the Raft thread's ticks do, until the child is done.

Meanwhile a second thread plays a heartbeat: it wakes every 10 ms and records its
longest gap, i.e. how long any other thread of the coordinator could not run.

Prints one JSON line: per mode the caller's stall, the heartbeat's longest gap and
the dump's wall time, in ms (median / min / max over rounds), and the RSS the fork
copied page tables for.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ledger_growth import finish  # noqa: E402

from ringrift_fleet.consensus.dump_child import ForkedDump, Progress  # noqa: E402
from ringrift_fleet.consensus.raft_state import _LedgerState, _write_dump  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger  # noqa: E402

TICK_S = 0.01
REST = (("e", 2, 1), ("e", 1, 1), set())


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 1),
        "min": round(min(xs), 1),
        "max": round(max(xs), 1),
    }


class Heartbeat:
    """A thread that wakes every TICK_S; its longest gap beyond that is the stall."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.beats: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < end:
            self.beats.append(time.perf_counter())
            time.sleep(TICK_S)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self.stop.set()
        self.thread.join(5)

    def max_gap_ms(self) -> float:
        gaps = [b - a - TICK_S for a, b in itertools.pairwise(self.beats)]
        return max(0.0, *gaps) * 1000


def in_process(state: _LedgerState, path: str) -> tuple[float, float, float]:
    with Heartbeat() as hb:
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            _write_dump(f, state, REST)
            f.flush()
            os.fsync(f.fileno())
        held = time.perf_counter() - t0
    return held * 1000, hb.max_gap_ms(), held * 1000


def forked(state: _LedgerState, path: str) -> tuple[float, float, float]:
    dump = ForkedDump(path, timeout=300)
    with Heartbeat() as hb:
        t0 = time.perf_counter()
        dump.start(lambda f: _write_dump(f, state, REST))
        held = time.perf_counter() - t0
        progress = Progress.RUNNING
        deadline = time.monotonic() + 300
        while progress is Progress.RUNNING and time.monotonic() < deadline:
            time.sleep(TICK_S)
            progress = dump.poll()
        took = time.perf_counter() - t0
    if progress is not Progress.DONE:
        raise SystemExit(f"the forked dump ended {progress.value}")
    return held * 1000, hb.max_gap_ms(), took * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    led = MemoryLedger("bench")
    clock = Clock(1000.0)
    for i in range(opts.jobs):
        finish(led, i, clock)
    state = _LedgerState()
    state.state = led.state
    modes = {"in_process": in_process, "forked": forked}
    out: dict[str, dict[str, list[float]]] = {m: {"held": [], "gap": [], "took": []} for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.dump")
        for _ in range(opts.rounds):  # the modes take turns, round by round
            for mode, run in modes.items():
                held, gap, took = run(state, path)
                out[mode]["held"].append(held)
                out[mode]["gap"].append(gap)
                out[mode]["took"].append(took)
        size = os.path.getsize(path)
    result: dict[str, object] = {
        "jobs": opts.jobs,
        "rounds": opts.rounds,
        "dump_bytes": size,
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }
    for mode in modes:
        result[f"caller_held_ms_{mode}"] = _stats(out[mode]["held"])
        result[f"other_thread_max_gap_ms_{mode}"] = _stats(out[mode]["gap"])
        result[f"dump_wall_ms_{mode}"] = _stats(out[mode]["took"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
