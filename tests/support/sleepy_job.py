"""A command workload for transition tests: sleeps, records each start, SIGTERM and end.

    python sleepy_job.py --seconds S --out DIR --record FILE --job ID --attempt N

Appends ``start|term|done <job> <attempt> <pid> <time>`` lines to FILE, so a test
can count how often each attempt really ran and when a stop reached it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--attempt", required=True)
    a = ap.parse_args()

    def note(what: str) -> None:
        with open(a.record, "a") as f:
            f.write(f"{what} {a.job} {a.attempt} {os.getpid()} {time.time():.3f}\n")

    def on_term(signum: int, frame: object) -> None:
        note("term")
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    note("start")
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:  # bounded by --seconds
        time.sleep(0.05)
    Path(a.out, "games.txt").write_text(f"{a.job} {a.attempt}\n")
    note("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
