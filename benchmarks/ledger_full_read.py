"""How long a full read of the ledger keeps the Raft thread from applying.

Every coordinator's scheduler view re-reads the whole ledger every 300 s
(``Beat.refresh``); on a voter the replica's lock it reads under is the one the
Raft thread applies entries under, and a Raft thread waiting there sends no
heartbeat and answers no append.  In the 60-minute 30-host soak, once the ledger
held ~10,000 jobs, voters and leaders went silent past the 2.4 s quorum check
and leadership churned.

This builds a ledger of ``--jobs`` finished self-play jobs (the real state
machine and ``Ledger`` API in one process, results shaped like real ones), then,
side by side in one run, reads it whole ``--rounds`` times with the lock held
once for everything (``FULL_READ_CHUNK`` set past the job count: the old read)
and in chunks (the shipped ``FULL_READ_CHUNK``), while a second thread plays the
Raft thread: it applies one small write every 10 ms and records how long each
wait for the lock took.

Also, side by side: the Raft full dump pysyncobj writes on the Raft thread (log
compaction), as its default writer does it (gzip level 9) and as ours does
(``DUMP_GZIP_LEVEL``), in milliseconds and bytes.

Prints one JSON line: per mode, the longest wait of the applier per round
(median / min / max over rounds) and the read's own duration; per dump level,
its time and size.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pickle
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ledger_growth import finish  # noqa: E402

from ringrift_fleet.consensus import api  # noqa: E402
from ringrift_fleet.consensus import ledger as sm  # noqa: E402
from ringrift_fleet.consensus.raft_state import DUMP_GZIP_LEVEL  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger  # noqa: E402

KINDS = ("scheduler.config", "scheduler.summary")


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 1),
        "min": round(min(xs), 1),
        "max": round(max(xs), 1),
    }


def one_round(led: MemoryLedger, chunk: int, serial: list[int]) -> tuple[float, float]:
    """(longest applier wait in ms, read duration in ms) for one full read."""
    api.FULL_READ_CHUNK = chunk
    waits: list[float] = []
    stop = threading.Event()

    def applier() -> None:
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            t0 = time.perf_counter()
            with led.lock:
                waits.append(time.perf_counter() - t0)
                serial[0] += 1
                op = sm.make_op(
                    "put_record.v1",
                    now=1.0,
                    term=1,
                    kind="bench",
                    key="tick",
                    value={"n": serial[0]},
                )
                sm.apply(led.state, op)
            time.sleep(0.01)

    thread = threading.Thread(target=applier, daemon=True)
    thread.start()
    time.sleep(0.1)
    t0 = time.perf_counter()
    led.read_since(KINDS, -1)
    took = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    thread.join(5)
    return max(waits) * 1000, took * 1000


def dump_ms(led: MemoryLedger, level: int) -> tuple[float, int]:
    """One full dump of the ledger as pysyncobj's file holds it, at ``level``."""
    data = ([{}, {"state": led.state}], ("e", 2, 1), ("e", 1, 1), set())
    t0 = time.perf_counter()
    with io.BytesIO() as buf:
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=level) as g:
            pickle.dump(data, g)
        size = len(buf.getvalue())
    return (time.perf_counter() - t0) * 1000, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=15_000)
    ap.add_argument("--rounds", type=int, default=7)
    opts = ap.parse_args()
    shipped = api.FULL_READ_CHUNK
    led = MemoryLedger("bench")
    clock = Clock(1000.0)
    for i in range(opts.jobs):
        finish(led, i, clock)
    serial = [0]
    out: dict[str, dict[str, list[float]]] = {
        "one_hold": {"wait": [], "read": []},
        "chunked": {"wait": [], "read": []},
    }
    for _ in range(opts.rounds):  # the two modes take turns, round by round
        for mode, chunk in (("one_hold", opts.jobs + 1), ("chunked", shipped)):
            wait, read = one_round(led, chunk, serial)
            out[mode]["wait"].append(wait)
            out[mode]["read"].append(read)
    api.FULL_READ_CHUNK = shipped
    dumps: dict[int, list[tuple[float, int]]] = {9: [], DUMP_GZIP_LEVEL: []}
    for _ in range(opts.rounds):
        for level in dumps:
            dumps[level].append(dump_ms(led, level))
    print(
        json.dumps(
            {
                "jobs": opts.jobs,
                "rounds": opts.rounds,
                "chunk": shipped,
                "applier_max_wait_ms_one_hold": _stats(out["one_hold"]["wait"]),
                "applier_max_wait_ms_chunked": _stats(out["chunked"]["wait"]),
                "full_read_ms_one_hold": _stats(out["one_hold"]["read"]),
                "full_read_ms_chunked": _stats(out["chunked"]["read"]),
                "dump_ms_level_9": _stats([t for t, _ in dumps[9]]),
                f"dump_ms_level_{DUMP_GZIP_LEVEL}": _stats([t for t, _ in dumps[DUMP_GZIP_LEVEL]]),
                "dump_bytes_level_9": dumps[9][0][1],
                f"dump_bytes_level_{DUMP_GZIP_LEVEL}": dumps[DUMP_GZIP_LEVEL][0][1],
            }
        )
    )


if __name__ == "__main__":
    main()
