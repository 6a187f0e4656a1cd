# mypy: disallow-any-explicit
"""A membership node as a process, for tests and the benchmark.

    python -m ringrift_fleet.membership.swim.agent --name n1 --port 7001 \\
        --seed 127.0.0.1:7002 --events-file n1.jsonl --stats-file n1.json

Every membership event is appended to ``--events-file`` as one JSON line with
the wall-clock time it was learned, so a test can measure detection latency
across processes.  ``--stats-file`` is rewritten atomically a few times a second
with the node's view and health.  SIGTERM leaves the cluster gracefully and
exits 0.  ``--backend swim-p2p`` runs the optional swim-p2p library behind the
same interface, so both backends are measured by one harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from ringrift_fleet.errors import FleetError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import Membership, MembershipEvent
from ringrift_fleet.membership.swim.protocol import SwimConfig

STATS_PERIOD = 0.25  # s between stats-file rewrites


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringrift-swim-agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind and advertise")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=_addr, action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--events-file", type=Path)
    p.add_argument("--stats-file", type=Path)
    p.add_argument("--key", default=os.environ.get("RINGRIFT_CLUSTER_KEY", ""))
    p.add_argument("--backend", choices=("swim", "swim-p2p"), default="swim")
    p.add_argument("--ping-interval", type=float, default=SwimConfig.ping_interval)
    p.add_argument("--ping-timeout", type=float, default=SwimConfig.ping_timeout)
    p.add_argument("--suspicion-mult", type=float, default=SwimConfig.suspicion_mult)
    p.add_argument(
        "--loss",
        type=float,
        default=None,
        help="drop this fraction of outgoing datagrams (default: $RINGRIFT_SWIM_INJECT_LOSS)",
    )
    p.add_argument(
        "--loss-in",
        type=float,
        default=None,
        help="drop this fraction of incoming datagrams (default: $RINGRIFT_SWIM_INJECT_LOSS_IN)",
    )
    p.add_argument(
        "--no-fallback",
        action="store_true",
        help="no fallback (TCP) probe: UDP only, as before the fallback existed",
    )
    p.add_argument("--metadata", type=json.loads, default={}, help="JSON object")
    return p


def _make_manager(args: argparse.Namespace) -> Membership:
    from ringrift_fleet.membership.swim_adapter import SwimMembershipManager, inject_loss_from_env

    loss = inject_loss_from_env() if args.loss is None else args.loss
    loss_in = (
        inject_loss_from_env("RINGRIFT_SWIM_INJECT_LOSS_IN")
        if args.loss_in is None
        else args.loss_in
    )
    if args.backend == "swim-p2p":
        from ringrift_fleet.membership.swim_p2p import SwimP2PMembership

        return SwimP2PMembership(
            args.name,
            bind=(args.host, args.port),
            seeds=args.seed,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            metadata=args.metadata,
            inject_loss=loss,
        )
    cfg = SwimConfig(
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        suspicion_mult=args.suspicion_mult,
        fallback_probe=not args.no_fallback,
    )
    return SwimMembershipManager(
        args.name,
        bind=(args.host, args.port),
        seeds=args.seed,
        cluster_key=args.key,
        swim_config=cfg,
        metadata=args.metadata,
        inject_loss=loss,
        inject_loss_in=loss_in,
    )


def _write_atomic(path: Path, data: JSONMapping) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def _run(args: argparse.Namespace) -> int:
    manager = _make_manager(args)
    events: TextIO | None = open(args.events_file, "a") if args.events_file else None  # noqa: SIM115

    def record(ev: MembershipEvent) -> None:
        if events is not None:
            line = {"observer": args.name, **ev.to_dict()}
            events.write(json.dumps(line) + "\n")
            events.flush()

    manager.add_listener(record)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await manager.start()
    try:
        while not stop.is_set():
            if args.stats_file:
                summary = manager.get_membership_summary()
                _write_atomic(
                    args.stats_file,
                    {
                        "t": time.time(),
                        "pid": os.getpid(),
                        "name": args.name,
                        "alive": manager.get_alive_peers(),
                        "states": {n: m["state"] for n, m in summary["members"].items()},
                        "health": manager.get_swim_health(),
                    },
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_PERIOD)
    finally:
        await manager.stop()
        if events is not None:
            events.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except FleetError as exc:
        print(f"swim agent {args.name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
