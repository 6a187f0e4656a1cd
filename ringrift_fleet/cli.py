"""``ringrift-fleet``: the operator's command.  User errors print one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ringrift_fleet.errors import FleetError

# Subcommand modules under ringrift_fleet.commands, in the order --help lists them.
# Every one is imported to build the parser, so each keeps its module-level imports
# light and imports Celery, aiohttp, numpy, Redis, PyYAML... inside run()
# (tests/unit/test_import_weight.py holds them to that).
COMMANDS = ("up", "worker", "coordinator", "status", "inventory", "flower")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringrift-fleet",
        description="Run and inspect a RingRift AI-training fleet.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ringrift_fleet.commands.{name}")
        except ModuleNotFoundError as exc:  # a subcommand still being built
            if exc.name != f"ringrift_fleet.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except FleetError as exc:
        print(f"ringrift-fleet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
