"""Kill to "dead" at every survivor in the SWIM simulation, with and without pushed
verdicts, for a vanished host and for a process killed on a live host.

Each seed (a round) runs the deterministic simulator (real protocol, real codec)
with ``--n`` members, lets it settle for 8 s of virtual time, crashes one member
and records when each survivor first reports it dead.  Three modes, the same
seeds: ``piggyback`` (``verdict_push=0``, the host gone: the protocol before
pushes), ``pushed`` (the default, the host gone: silence) and ``refused`` (the
default, only the process gone: its host refuses the fallback connection).

Prints one JSON line: per mode, over all observers of all rounds pooled
(``median_s``, ``p99_s``, ``max_s``), and per round the median observer's time
and the spread from the first observer to the last, as the median of rounds with
min and max.  About 1 s per seed and mode on one core.

Usage: python benchmarks/swim_detection.py [--seeds 8] [--n 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.membership.simulation import Simulation  # noqa: E402
from ringrift_fleet.membership.swim.config import SwimConfig  # noqa: E402

MODES = {"piggyback": (0, False), "pushed": (3, False), "refused": (3, True)}
VICTIM = "n7"


def rounds(n: int, seeds: int, push: int, host_up: bool) -> list[list[float]]:
    out = []
    for seed in range(1, seeds + 1):
        sim = Simulation(n, seed=seed, config=SwimConfig(verdict_push=push))
        sim.run_for(8.0)
        t0 = sim.now
        sim.crash(VICTIM, host_up=host_up)
        sim.run_for(20.0)
        seen = sim.detections(VICTIM, t0)
        if len(seen) != n - 1:
            raise SystemExit(f"seed {seed}: {n - 1 - len(seen)} survivors never saw the death")
        out.append(sorted(seen.values()))
    return out


def spread(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 2),
        "min": round(min(xs), 2),
        "max": round(max(xs), 2),
    }


def summary(per_round: list[list[float]]) -> dict[str, Any]:
    pooled = sorted(x for r in per_round for x in r)
    return {
        "median_s": round(statistics.median(pooled), 2),
        "p99_s": round(pooled[int(0.99 * (len(pooled) - 1))], 2),
        "max_s": round(pooled[-1], 2),
        "round_median_s": spread([statistics.median(r) for r in per_round]),
        "round_first_to_last_s": spread([r[-1] - r[0] for r in per_round]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, default=8, help="rounds, seeds 1..SEEDS")
    ap.add_argument("--n", type=int, default=30, help="members")
    args = ap.parse_args()
    if not (1 <= args.seeds <= 200 and 10 <= args.n <= 1000):
        ap.error("--seeds 1..200, --n 10..1000")
    line: dict[str, Any] = {"n": args.n, "seeds": args.seeds}
    for mode, (push, host_up) in MODES.items():
        line[mode] = summary(rounds(args.n, args.seeds, push, host_up))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
