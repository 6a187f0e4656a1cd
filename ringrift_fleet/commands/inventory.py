"""``ringrift-fleet inventory generate | validate | prometheus``: build and check
distributed_hosts.yaml, and write a Prometheus configuration from it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ringrift_fleet.config import get_p2p_config
from ringrift_fleet.errors import InventoryError

if TYPE_CHECKING:  # the loader pulls in PyYAML: imported by run(), not to build --help
    from ringrift_fleet import inventory


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inventory",
        help="generate or validate distributed_hosts.yaml",
        description="Build distributed_hosts.yaml from an Ansible inventory, or check one.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    gen = actions.add_parser(
        "generate",
        help="build distributed_hosts.yaml from an Ansible inventory",
        description="Read an Ansible inventory (INI or YAML, with group_vars) through "
        "ansible-inventory and write distributed_hosts.yaml (atomically).",
    )
    gen.add_argument("-i", "--inventory", required=True, help="Ansible inventory file")
    gen.add_argument(
        "-o", "--output", default="distributed_hosts.yaml", help="file to write ('-' = stdout)"
    )
    gen.set_defaults(func=run)

    val = actions.add_parser(
        "validate",
        help="check a distributed_hosts.yaml and print a summary",
        description="Check every host, voter and port; list every problem (exit 2) or "
        "print a summary table (exit 0).",
    )
    val.add_argument("file", help="distributed_hosts.yaml (or an Ansible inventory with --ansible)")
    val.add_argument(
        "--ansible", action="store_true", help="FILE is an Ansible inventory, not the YAML file"
    )
    val.set_defaults(func=run)

    prom = actions.add_parser(
        "prometheus",
        help="write a Prometheus scrape configuration (and alert rules) for the fleet",
        description="One scrape target per coordinator (every host not retired, "
        "address:status_port, labelled host) and Flower on the broker host; the alert "
        "rules (ringrift_fleet/alerts.yaml) are written beside it as alerts.yml "
        "(docs/operations.md).",
    )
    prom.add_argument("file", help="distributed_hosts.yaml")
    prom.add_argument(
        "-o", "--output", default="prometheus.yml", help="file to write ('-' = stdout)"
    )
    prom.add_argument("--scrape-interval", default="15s", help="Prometheus duration (default 15s)")
    prom.add_argument(
        "--alertmanager", action="append", default=[], metavar="HOST:PORT", help="repeatable"
    )
    prom.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ringrift_fleet import inventory

    get_p2p_config()  # a bad RINGRIFT_P2P_* variable fails here, before any file is read
    try:
        if args.action == "generate":
            return _generate(args.inventory, args.output)
        if args.action == "prometheus":
            return _prometheus(args)
        inv = (
            inventory.from_ansible(args.file, warn=False)
            if args.ansible
            else inventory.load(args.file, warn=False)
        )
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        tail = f"; {args.output} not written" if args.action == "generate" else ""
        print(
            f"ringrift-fleet inventory {args.action}: {count} problem{'s' * (count != 1)}{tail}",
            file=sys.stderr,
        )
        return 2
    _print_warnings(inv)
    print(summary_table(inv))
    return 0


def _generate(source: str, output: str) -> int:
    from ringrift_fleet import inventory

    inv = inventory.from_ansible(source, warn=False)
    text = inventory.dump(inv)
    _print_warnings(inv)
    if output == "-":
        sys.stdout.write(text)
        return 0
    try:
        inventory.write_atomic(output, text)
    except OSError as exc:
        raise InventoryError([f"{output}: cannot write: {exc.strerror or exc}"]) from None
    print(f"wrote {output}: {_counts(inv)}")
    return 0


def _prometheus(args: argparse.Namespace) -> int:
    import re
    import shutil
    from pathlib import Path

    from ringrift_fleet import inventory, monitoring

    if not re.fullmatch(r"\d+(ms|s|m|h)", args.scrape_interval):
        raise InventoryError([f"--scrape-interval {args.scrape_interval!r}: expected e.g. 15s, 1m"])
    inv = inventory.load(args.file, warn=False)
    _print_warnings(inv)
    doc = monitoring.scrape_config(
        inv,
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.scrape_interval,
        alertmanagers=args.alertmanager,
    )
    text = monitoring.dump(doc)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    rules = out.parent / "alerts.yml"
    try:
        inventory.write_atomic(str(out), text)
        if monitoring.RULES_FILE.exists():
            shutil.copyfile(monitoring.RULES_FILE, rules)
    except OSError as exc:
        raise InventoryError([f"{args.output}: cannot write: {exc.strerror or exc}"]) from None
    targets = len(doc["scrape_configs"][0]["static_configs"])
    print(f"wrote {out}: {targets} coordinator target(s)")
    if monitoring.RULES_FILE.exists():
        print(f"wrote {rules} (alert rules; runbook: docs/operations.md)")
    else:
        print(f"alert rules: copy ringrift_fleet/alerts.yaml from the repository to {rules}")
    return 0


def _print_warnings(inv: inventory.Inventory) -> None:
    for w in inv.warnings:
        print(f"warning: {w}", file=sys.stderr)


def _counts(inv: inventory.Inventory) -> str:
    gpus = sum(h.gpu_count for h in inv.active_hosts())
    voters = ", ".join(inv.raft_voters) or "none (Raft off: Bully election)"
    broker = inv.coordinator.broker_host or "none"
    return (
        f"{len(inv.hosts)} hosts ({len(inv.active_hosts())} ready, {gpus} GPUs); "
        f"voters: {voters}; broker: {broker}"
    )


def summary_table(inv: inventory.Inventory) -> str:
    """One row per host: what it is, how it is reached, what it will run."""
    header = ("HOST", "ADDRESS", "GPU", "VRAM", "TIER", "ROLE", "STATUS", "VOTER", "TRAIN")
    rows = [header]
    voters = set(inv.raft_voters)
    for h in inv.hosts:
        gpu = f"{h.gpu_count}x {h.gpu}" if h.gpu_count else "-"
        rows.append(
            (
                h.name,
                h.address,
                gpu,
                f"{h.gpu_vram_gb:g}" if h.gpu_count else "-",
                h.tier,
                h.role,
                h.status,
                "yes" if h.name in voters else "",
                "yes" if h.training_enabled else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([*lines, "", f"{inv.path}: {_counts(inv)}"])
