"""A stand-in for RingRift's gauntlet script, run by command-workload tests.

``--candidate fake/<mode>`` picks what it does: ``ok`` (writes a report and
result.json), ``fail`` (exits 3), ``slow`` (writes one finished file every 0.2 s
for up to 60 s, recording its pid), ``kill-parent`` (SIGKILLs the worker process
that started it, as a job that crashes its worker would).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--candidate", required=True)
    p.add_argument("--champion", required=True)
    p.add_argument("--games", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = Path(a.out)
    mode = a.candidate.split("/")[-1]
    print(f"gauntlet {a.candidate} vs {a.champion}, {a.games} games, mode {mode}", flush=True)
    (out / "pid").write_text(str(os.getpid()))
    if mode == "ok":
        (out / "report.txt").write_text(f"{a.games} games\n")
        (out / "result.json").write_text(json.dumps({"win_rate": 0.75, "games": a.games}))
        return 0
    if mode == "fail":
        print("something broke", file=sys.stderr, flush=True)
        return 3
    if mode == "kill-parent":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
        return 0
    if mode == "slow":
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline:
            tmp = out / f"part-{i}.tmp"
            tmp.write_text(f"part {i}\n")
            tmp.rename(out / f"part-{i}.txt")
            i += 1
            time.sleep(0.2)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
