"""A simulated day of a 50-host fleet under the production scheduler; prints one JSON line.

Hosts of mixed GPUs fail at random (crashes and partitions that leave zombie
attempts), a few jobs hang, a few disks fill, the broker fails sends and
``|sent`` marks, and leaders die between taking a send slot and sending.  The
production scheduler runs it all: the real Beat (read model, ``plan``, and the
Interpreter that applies every action) on the real ledger state machine, through
in-memory ports (scheduler/slots.py's MemorySlots: ``SET NX`` semantics).  The
injected faults that struck are printed to stderr.  Keys: gpu_busy_fraction (steady state: after the first half hour, over
healthy reachable slots), min_config_share_ratio (worst config's share of
self-play compute over any hour, divided by its weight's share), lost_jobs,
duplicate_executions (jobs whose result was kept twice), requeue_p50_s /
requeue_p99_s (membership's death declaration to the job's new attempt being
placed: the wall time of the beat tick that places it), plan_ms_p50 (``plan``
alone), and the counts behind them.

    .venv/bin/python benchmarks/fleet_sim.py [--seed N] [--hosts N] [--hours H]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringrift_fleet.scheduler.fairshare import share_ratios, window_totals
from ringrift_fleet.scheduler.interpreter import Interpreter  # what production runs
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.simulation import FleetSim, SimParams


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--plot", metavar="PNG", help="also draw each config's hourly share ratio")
    args = ap.parse_args()
    # the injected broker faults would log a line a minute each
    logging.getLogger("ringrift_fleet").setLevel(logging.CRITICAL)
    t0 = time.perf_counter()
    sim = FleetSim(
        SimParams(hosts=args.hosts, duration_s=args.hours * 3600.0, seed=args.seed),
        SchedulerPolicy(),
    )
    result = sim.run()
    assert isinstance(sim.beat.effects, Interpreter)
    print(json.dumps({"faults_injected": dict(sim.faults)}), file=sys.stderr)
    if args.plot:
        plot(sim, Path(args.plot))
    out = result.to_json()
    out.update(
        {
            "hosts": args.hosts,
            "hours": args.hours,
            "seed": args.seed,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )
    print(json.dumps(out))
    ok = out["lost_jobs"] == 0 and out["duplicate_executions"] == 0
    return 0 if ok else 1


def plot(sim: FleetSim, path: Path) -> None:
    """Each config's share of self-play compute over the trailing hour, ÷ its weight's share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window, step = sim.p.share_window_s, sim.p.share_step_s
    times, series = [], {c.key: [] for c in sim.policy.configs}
    t = window
    while t <= sim.p.duration_s:
        ratios = share_ratios(window_totals(sim.intervals, t - window, t), sim.policy.configs)
        times.append(t / 3600.0)
        for k in series:
            series[k].append(ratios.get(k, 0.0))
        t += step
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, ys in sorted(series.items()):
        ax.plot(times, ys, linewidth=1, label=k)
    ax.axhline(0.5, color="red", linestyle="--", linewidth=1, label="floor (half its weight)")
    ax.set_xlabel("simulated hour")
    ax.set_ylabel("share over the last hour ÷ weight share")
    ax.set_ylim(0, 1.6)
    ax.set_title(f"Fair share, {sim.p.hosts} hosts, seed {sim.p.seed}")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
