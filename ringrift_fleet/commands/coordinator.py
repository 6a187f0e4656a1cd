"""``ringrift-fleet coordinator``: run this host's coordinator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ringrift_fleet.config import (
    check_state_dirs,
    get_feature_flags,
    get_p2p_config,
    resolve_bind_host,
    resolve_hosts_file,
    unknown_env_warnings,
)
from ringrift_fleet.errors import ConfigError


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
        "private/Tailscale address), or 127.0.0.1 without one; 0.0.0.0 only if you set it.",
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
        help="membership and consensus only: do not attach the scheduler (the leader then "
        "only re-enqueues the jobs of hosts membership declares dead)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ringrift_fleet.consensus.voters import load_inventory
    from ringrift_fleet.node import CoordinatorNode

    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        raise ConfigError(f"--log-level {args.log_level!r}: expected DEBUG, INFO or WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = get_p2p_config()
    flags = get_feature_flags()
    for warning in [*unknown_env_warnings(), *flags.warnings]:
        logging.getLogger("ringrift_fleet").warning(warning)
    node_id = args.node or config.NODE_ID
    hosts_file = resolve_hosts_file(args.hosts_file, standalone=args.standalone)
    check_state_dirs(config)
    inventory = None
    if hosts_file is not None:
        inventory = load_inventory(hosts_file)
        if node_id not in inventory.names():
            raise ConfigError(
                f"--node {node_id!r} is not a host in {hosts_file} "
                f"(hosts: {', '.join(inventory.names())})"
            )
    if inventory is not None and len(inventory.hosts) > 1 and not config.CLUSTER_KEY:
        raise ConfigError(
            f"RINGRIFT_CLUSTER_KEY is empty but {hosts_file} lists {len(inventory.hosts)} hosts: "
            "set the same secret on every host (it authenticates Raft's pickle wire format, "
            "SWIM and every mutating HTTP route)"
        )
    address = None
    if inventory is not None:
        address = inventory.host(node_id).address
    config = config.replace(
        NODE_ID=node_id,
        HOSTS_FILE=hosts_file or "",
        BIND_HOST=resolve_bind_host(config, address),
    )
    scheduler = None if args.no_scheduler or inventory is None else _scheduler()
    node = CoordinatorNode(config, inventory, node_id, flags=flags, reassign_dead=scheduler is None)
    if scheduler is not None:
        scheduler(node)
    elif not args.no_scheduler:
        logging.getLogger("ringrift_fleet").warning(
            "no inventory: the scheduler is not attached (use `ringrift-fleet up` on one machine)"
        )
    import asyncio  # with ssl, a tenth of --help's import time: only when serving

    asyncio.run(_serve(node))
    return 0


def _scheduler() -> Any:
    """The scheduler's ``attach(node)``, or None (logged) if it cannot be imported."""
    try:
        from ringrift_fleet.scheduler.service import attach
    except ImportError as exc:
        logging.getLogger("ringrift_fleet").error("scheduler unavailable: %s", exc)
        return None
    return attach


async def _serve(node: Any) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()
