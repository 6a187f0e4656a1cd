"""False deaths in the SWIM simulation at 1,000 members and 10 % loss, over many seeds.

A live member declared dead is the failure operators remember; at this size
and loss about 15 false suspicions a second must each be refuted in time.
Each seed runs the deterministic simulator (real protocol, real codec) for
``--seconds`` of virtual time with nothing crashed, then counts "dead" events
about members that never crashed.  Prints one JSON line:
``{"n", "loss", "seconds", "seeds", "false_dead", "seeds_with_false_dead",
"all_converged"}``.  About 12 s per seed on one core.

Usage: python benchmarks/swim_false_dead.py [--seeds 40] [--seconds 8] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.membership.simulation import Simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, default=40, help="seeds 0..SEEDS-1")
    ap.add_argument("--seconds", type=float, default=8.0, help="virtual seconds per seed")
    ap.add_argument("--n", type=int, default=1000, help="members")
    ap.add_argument("--loss", type=float, default=0.10, help="datagram loss, 0..1")
    args = ap.parse_args()
    if not (1 <= args.seeds <= 1000 and 0 < args.seconds <= 600 and 2 <= args.n <= 5000):
        ap.error("--seeds 1..1000, --seconds (0, 600], --n 2..5000")
    per_seed: dict[int, int] = {}
    converged = True
    for seed in range(args.seeds):
        sim = Simulation(args.n, seed=seed, loss=args.loss)
        sim.run_for(args.seconds)
        per_seed[seed] = len(sim.false_dead())
        converged = converged and sim.converged()
    print(
        json.dumps(
            {
                "n": args.n,
                "loss": args.loss,
                "seconds": args.seconds,
                "seeds": args.seeds,
                "false_dead": sum(per_seed.values()),
                "seeds_with_false_dead": {str(s): c for s, c in per_seed.items() if c},
                "all_converged": converged,
            }
        )
    )


if __name__ == "__main__":
    main()
