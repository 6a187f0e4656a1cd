"""``ringrift-fleet coordinator``: run this host's coordinator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from ringrift_fleet.config import unknown_env_warnings
from ringrift_fleet.errors import ConfigError

if TYPE_CHECKING:
    from ringrift_fleet.node import CoordinatorNode


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "coordinator",
        help="run membership, consensus and the :8770 status server for this host",
        description="Run this host's coordinator: SWIM/HTTP membership, Raft (or Bully) "
        "consensus over the inventory's voters, and the status server. Configuration "
        "comes from RINGRIFT_P2P_* and the feature flags; the inventory from --hosts-file, "
        "else RINGRIFT_P2P_HOSTS_FILE, else /etc/ringrift/distributed_hosts.yaml or "
        "./distributed_hosts.yaml. A named inventory that cannot be read is an error; "
        "no inventory at all needs --standalone. The status server, SWIM and Raft listen on "
        "RINGRIFT_P2P_BIND_HOST, by default this host's address in the inventory (its "
        "private/Tailscale address), or 127.0.0.1 without one; 0.0.0.0 only if you set it. "
        "On a private address the status server also answers on 127.0.0.1.",
    )
    parser.add_argument("--node", help="this host's name in the inventory (default: NODE_ID)")
    parser.add_argument(
        "--hosts-file", help="distributed_hosts.yaml (default: RINGRIFT_P2P_HOSTS_FILE)"
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no inventory: a fleet of one on loopback (also: RINGRIFT_P2P_HOSTS_FILE= empty)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="consensus only: no broker; the scheduler's policy places no work and only "
        "re-enqueues the jobs of hosts membership declares dead",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the one-machine demo's policy (small thresholds, CPU training; ringrift-fleet up)",
    )
    parser.add_argument(
        "--slots", type=int, default=1, help="without an inventory: this machine's worker slots"
    )
    parser.add_argument(
        "--gpu-type", default="CPU", help="without an inventory: this machine's GPU"
    )
    parser.add_argument(
        "--gpu-vram-gb", type=float, default=0.0, help="without an inventory: its VRAM in GB"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # assembly pulls in aiohttp, pysyncobj and the scheduler: imported only when
    # serving, so `ringrift-fleet --help` stays light (tests/unit/test_import_weight.py)
    from ringrift_fleet.assembly import Scheduling, build_coordinator, coordinator_inputs

    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        raise ConfigError(f"--log-level {args.log_level!r}: expected DEBUG, INFO or WARNING")
    if args.slots < 1:
        raise ConfigError(f"--slots {args.slots}: expected an integer >= 1")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inputs = coordinator_inputs(args.node, args.hosts_file, standalone=args.standalone)
    for warning in [*unknown_env_warnings(), *inputs.flags.warnings]:
        logging.getLogger("ringrift_fleet").warning(warning)
    scheduling = Scheduling(
        place_work=not args.no_scheduler,
        demo=args.demo,
        slots=args.slots,
        gpu_type=args.gpu_type,
        gpu_vram_gb=args.gpu_vram_gb,
    )
    node = build_coordinator(
        inputs.config,
        inputs.inventory,
        inputs.node_id,
        flags=inputs.flags,
        scheduling=scheduling,
    )
    import asyncio  # with ssl, a tenth of --help's import time: only when serving

    asyncio.run(_serve(node))
    return 0


async def _serve(node: CoordinatorNode) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()
