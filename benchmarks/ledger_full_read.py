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

Also side by side: the chunked read copying each job with ``copy.deepcopy`` (as
until 2026-12-05) and with ``jsontypes.json_copy`` (shipped).

Prints one JSON line: per mode, the longest wait of the applier per round
(median / min / max over rounds) and the read's own duration; per dump level,
its time and size.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import io
import itertools
import json
import pickle
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ledger_growth import finish  # noqa: E402

from ringrift_fleet.consensus import api, state_json  # noqa: E402
from ringrift_fleet.consensus import ledger as sm  # noqa: E402
from ringrift_fleet.consensus.raft_state import DUMP_GZIP_LEVEL  # noqa: E402
from ringrift_fleet.jsontypes import json_copy  # noqa: E402
from tests.support.memory_ledger import Clock, MemoryLedger  # noqa: E402

KINDS = ("scheduler.config", "scheduler.summary")


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 1),
        "min": round(min(xs), 1),
        "max": round(max(xs), 1),
    }


def one_round(
    led: MemoryLedger, reader: Callable[[], object], serial: list[int]
) -> tuple[float, float]:
    """(longest applier stall in ms, read duration in ms) for one call of ``reader``.

    The stall is the longest time between two of the applier's writes beyond its
    10 ms pause: waiting for the lock *and* for the GIL, which a long C call (a
    ``json.dumps`` of the whole replica) keeps whether or not it holds the lock."""
    done: list[float] = []
    stop = threading.Event()
    pause = 0.01

    def applier() -> None:
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            with led.lock:
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
            done.append(time.perf_counter())
            time.sleep(pause)

    thread = threading.Thread(target=applier, daemon=True)
    thread.start()
    time.sleep(0.1)
    t0 = time.perf_counter()
    reader()
    took = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    thread.join(5)
    gaps = [b - a - pause for a, b in itertools.pairwise(done)]
    return max(0.0, *gaps) * 1000, took * 1000


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

    def read(chunk: int) -> Callable[[], object]:
        def run() -> object:
            api.FULL_READ_CHUNK = chunk
            return led.read_since(KINDS, -1)

        return run

    def json_under_lock() -> object:  # the Bully mirror and GET /consensus/ledger before
        with led.lock:
            return json.dumps(led.state, default=str)

    def frozen_then_encoded() -> object:  # ... and now (consensus/state_json.py)
        with led.lock:
            frozen = state_json.freeze(led.state)
        return state_json.encode(frozen)

    def chunked_deepcopy() -> object:  # the chunked read as it copied until json_copy
        api.FULL_READ_CHUNK = shipped
        api.json_copy = copy.deepcopy
        try:
            return led.read_since(KINDS, -1)
        finally:
            api.json_copy = json_copy

    modes: dict[str, Callable[[], object]] = {
        "one_hold": read(opts.jobs + 1),
        "chunked": read(shipped),
        "chunked_deepcopy": chunked_deepcopy,
        "json_under_lock": json_under_lock,
        "frozen_json": frozen_then_encoded,
    }
    out: dict[str, dict[str, list[float]]] = {m: {"wait": [], "read": []} for m in modes}
    for _ in range(opts.rounds):  # the modes take turns, round by round
        for mode, reader in modes.items():
            wait, took = one_round(led, reader, serial)
            out[mode]["wait"].append(wait)
            out[mode]["read"].append(took)
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
                "applier_max_stall_ms_one_hold": _stats(out["one_hold"]["wait"]),
                "applier_max_stall_ms_chunked": _stats(out["chunked"]["wait"]),
                "full_read_ms_one_hold": _stats(out["one_hold"]["read"]),
                "full_read_ms_chunked": _stats(out["chunked"]["read"]),
                "full_read_ms_chunked_deepcopy": _stats(out["chunked_deepcopy"]["read"]),
                "applier_max_stall_ms_json_under_lock": _stats(out["json_under_lock"]["wait"]),
                "applier_max_stall_ms_frozen_json": _stats(out["frozen_json"]["wait"]),
                "json_ms_under_lock": _stats(out["json_under_lock"]["read"]),
                "json_ms_frozen": _stats(out["frozen_json"]["read"]),
                "dump_ms_level_9": _stats([t for t, _ in dumps[9]]),
                f"dump_ms_level_{DUMP_GZIP_LEVEL}": _stats([t for t, _ in dumps[DUMP_GZIP_LEVEL]]),
                "dump_bytes_level_9": dumps[9][0][1],
                f"dump_bytes_level_{DUMP_GZIP_LEVEL}": dumps[DUMP_GZIP_LEVEL][0][1],
            }
        )
    )


if __name__ == "__main__":
    main()
