"""``ringrift-fleet up``: a whole fleet on this machine, running the training loop."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ringrift_fleet.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "up",
        help="run a one-machine fleet (Redis, coordinator, workers, Flower) and the training loop",
        description="Start an embedded Redis (or use RINGRIFT_BROKER_URL), a coordinator with "
        "the scheduler in demo profile, a worker per GPU (or a CPU worker) and Flower on "
        "loopback; print progress until the goal; Ctrl-C stops everything.",
    )
    p.add_argument(
        "--until-promotions", type=int, metavar="N", help="stop after N model promotions"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where state, artifacts and logs go (default: a new directory under "
        "$XDG_STATE_HOME/ringrift_fleet/up)",
    )
    p.add_argument(
        "--cpu-workers",
        type=int,
        default=0,
        metavar="N",
        help="CPU worker processes (default: cores)",
    )
    p.add_argument("--no-flower", action="store_true", help="do not start Flower")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ringrift_fleet.config import get_p2p_config
    from ringrift_fleet.local_fleet import LocalFleet, UpOptions

    if args.until_promotions is not None and args.until_promotions < 1:
        raise ConfigError(f"--until-promotions {args.until_promotions}: expected an integer >= 1")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"--duration {args.duration}: expected a positive number of seconds")
    if args.cpu_workers < 0:
        raise ConfigError(f"--cpu-workers {args.cpu_workers}: expected an integer >= 0")
    cfg = get_p2p_config()
    if args.state_dir:
        state = Path(args.state_dir)
        if state.exists() and not state.is_dir():
            raise ConfigError(f"--state-dir {state}: exists and is not a directory")
    else:
        state = Path(cfg.STATE_DIR) / "up" / time.strftime("%Y%m%d-%H%M%S")
        n = 1
        while state.exists() and n < 1000:
            state = state.with_name(f"{state.name.split('.')[0]}.{n}")
            n += 1
    broker = os.environ.get("RINGRIFT_BROKER_URL") or None
    opts = UpOptions(
        state_dir=state.resolve(),
        until_promotions=args.until_promotions,
        duration_s=args.duration,
        broker_url=broker,
        cpu_workers=args.cpu_workers,
        flower=not args.no_flower,
    )
    return LocalFleet(opts).run()
