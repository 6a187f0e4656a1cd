"""``ringrift-fleet flower``: Flower for the fleet's broker, bound safely.

    ringrift-fleet flower [--address A] [--port P] [--dry-run]

Defaults come from ``FLOWER_ADDRESS`` (127.0.0.1) and ``FLOWER_PORT`` (5555).
Basic auth comes from ``RINGRIFT_P2P_FLOWER_BASIC_AUTH="user:pass[,user2:pass2]"``;
with none configured, Flower may only bind a loopback address, since its API
can revoke and terminate every job in the fleet.  The credentials reach Flower
through its environment, never its command line (where ``ps`` would show them).

The equivalent by hand: ``FLOWER_BASIC_AUTH=user:pass celery -A ringrift_fleet
flower --address=0.0.0.0 --port=5555``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from typing import Any

from ringrift_fleet.config import get_p2p_config
from ringrift_fleet.errors import ConfigError


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_basic_auth(value: str) -> list[str]:
    """``user:pass,user2:pass2`` -> entries; the error names the variable, not the secret."""
    entries = [e.strip() for e in value.split(",") if e.strip()]
    for i, entry in enumerate(entries):
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"RINGRIFT_P2P_FLOWER_BASIC_AUTH: entry {i + 1} is not user:password")
    return entries


def plan_flower(
    address: str, port: int, basic_auth: str, python: str = sys.executable
) -> tuple[list[str], dict[str, str]]:
    """The Flower command and the environment it needs (pure)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 1-65535")
    entries = check_basic_auth(basic_auth)
    if not entries and not is_loopback(address):
        raise ConfigError(
            f"--address {address}: Flower without credentials binds loopback only; set "
            "RINGRIFT_P2P_FLOWER_BASIC_AUTH=user:password to serve other addresses"
        )
    argv = [
        python,
        "-m",
        "celery",
        "-A",
        "ringrift_fleet",
        "flower",
        f"--address={address}",
        f"--port={port}",
    ]
    env = {"FLOWER_BASIC_AUTH": ",".join(entries)} if entries else {}
    return argv, env


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("flower", help="run Flower (basic auth; loopback without it)")
    p.add_argument("--address", help="bind address (default FLOWER_ADDRESS, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default FLOWER_PORT, 5555)")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = get_p2p_config()
    address = args.address or cfg.FLOWER_ADDRESS
    port = args.port if args.port is not None else cfg.FLOWER_PORT
    argv, env = plan_flower(address, port, cfg.FLOWER_BASIC_AUTH)
    if args.dry_run:
        auth = " (basic auth from RINGRIFT_P2P_FLOWER_BASIC_AUTH)" if env else ""
        print(shlex.join(argv) + auth)
        return 0
    os.environ.pop("FLOWER_BASIC_AUTH", None)  # only ours, never a stray one
    os.environ.update(env)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached
