"""``ringrift-fleet worker``: start this host's Celery worker with the right queues.

    ringrift-fleet worker [--node NAME] [--gpu-index I | --cpu] [--queues Q1,Q2]
                          [--concurrency N] [--loglevel L] [--dry-run]
                          [--gpu-type NAME [--gpu-vram-gb GB]]

It detects GPUs (:func:`ringrift_fleet.resources.detect_gpus`; CPU-only when
none), works out the queues (:func:`ringrift_fleet.execution.queues.worker_queues`),
the Celery node name (``<node>@gpu<I>``, ``<node>@gpus`` or ``<node>@cpu``) and the
concurrency (one process per GPU), then replaces itself with
``python -m celery -A ringrift_fleet worker …``.  ``--gpu-index I`` serves one GPU
(systemd ``ringrift-worker@I``; sets ``CUDA_VISIBLE_DEVICES``), ``--cpu`` makes a
CPU worker even on a GPU host.  ``--gpu-type`` states the GPU instead of asking
NVML (hosts where NVML is hidden, and tests that play a GPU fleet on a CPU box).
These flags are what systemd units and ``ringrift-fleet up`` call: keep them stable.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from ringrift_fleet.config import get_p2p_config
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.execution.queues import worker_queues
from ringrift_fleet.placement import can_train, gpu_tier, normalize_gpu_name

LOGLEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    vram_gb: float


@dataclass(frozen=True)
class WorkerPlan:
    argv: list[str]
    env: dict[str, str]
    hostname: str
    queues: tuple[str, ...]
    concurrency: int
    tier: str
    trains: bool


def detected_gpus() -> list[Gpu]:
    """This host's GPUs, through the one NVML seam (resources.detect_gpus)."""
    from ringrift_fleet.resources import detect_gpus

    return [Gpu(g.index, g.name, g.memory_total_gb) for g in detect_gpus()]


def plan_worker(
    *,
    node: str,
    gpus: list[Gpu],
    gpu_index: int | None = None,
    cpu: bool = False,
    queues: str | None = None,
    concurrency: int | None = None,
    loglevel: str = "info",
    python: str = sys.executable,
    cpu_count: int | None = None,
) -> WorkerPlan:
    """The command and environment for this host's worker (pure)."""
    if not node or any(c.isspace() or c == "@" for c in node):
        raise ConfigError(f"--node {node!r}: a node name has no spaces or '@'")
    env = {"RINGRIFT_WORKER_NODE": node}
    if cpu or not gpus:
        if gpu_index is not None:
            raise ConfigError(f"--gpu-index {gpu_index}: this host has no GPU (or --cpu given)")
        tier, trains, hostname = "cpu", False, f"{node}@cpu"
        default_conc = max(1, (cpu_count or os.cpu_count() or 2) // 2)
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker must not touch a GPU
    else:
        chosen = gpus
        if gpu_index is not None:
            chosen = [g for g in gpus if g.index == gpu_index]
            if not chosen:
                have = ", ".join(str(g.index) for g in gpus)
                raise ConfigError(f"--gpu-index {gpu_index}: this host has GPUs {have}")
            hostname = f"{node}@gpu{gpu_index}"
            env["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
        else:
            hostname = f"{node}@gpus"
            env["RINGRIFT_WORKER_GPUS"] = ",".join(str(g.index) for g in chosen)
        # Mixed GPUs in one worker: plan for the weakest, never over-promise.
        weakest = min(chosen, key=lambda g: (_tier_rank(gpu_tier(g.name)), g.vram_gb))
        tier = gpu_tier(weakest.name)
        trains = all(can_train(normalize_gpu_name(g.name), g.vram_gb) for g in chosen)
        default_conc = len(chosen)
    env["RINGRIFT_WORKER_TIER"] = tier
    q = worker_queues(node, tier, trains=trains).queues
    if queues:
        q = tuple(s.strip() for s in queues.split(",") if s.strip())
        if not q:
            raise ConfigError(f"--queues {queues!r}: no queue names")
    conc = concurrency if concurrency is not None else default_conc
    if conc < 1:
        raise ConfigError(f"--concurrency {conc}: must be at least 1")
    if loglevel.lower() not in LOGLEVELS:
        raise ConfigError(f"--loglevel {loglevel!r}: expected one of {', '.join(LOGLEVELS)}")
    argv = [
        python,
        "-m",
        "celery",
        "-A",
        "ringrift_fleet",
        "worker",
        "--hostname",
        hostname,
        "--queues",
        ",".join(q),
        "--concurrency",
        str(conc),
        "--loglevel",
        loglevel.upper(),
        "--task-events",
        "--prefetch-multiplier",
        "1",
        "-O",
        "fair",
    ]
    return WorkerPlan(argv, env, hostname, q, conc, tier, trains)


def _tier_rank(tier: str) -> int:
    from ringrift_fleet.placement import TIERS

    return -TIERS.index(tier) if tier in TIERS else -len(TIERS)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker",
        help="start this host's Celery worker (queues from its GPUs)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--node", help="node name (default: NODE_ID, the hostname)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--gpu-index", type=int, metavar="I", help="serve only GPU I")
    which.add_argument("--cpu", action="store_true", help="a CPU-only worker")
    p.add_argument("--queues", metavar="Q1,Q2", help="consume exactly these queues")
    p.add_argument("--concurrency", type=int, metavar="N", help="processes (default: 1 per GPU)")
    p.add_argument("--loglevel", default="info", help="celery log level (default info)")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.add_argument("--gpu-type", metavar="NAME", help="state the GPU model instead of NVML")
    p.add_argument("--gpu-vram-gb", type=float, metavar="GB", help="with --gpu-type: its VRAM")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = get_p2p_config()
    node = args.node or cfg.NODE_ID
    if cfg.WORKLOADS_FILE:  # a bad template stops the worker here, not its first job
        # Imported here: the workloads pull in numpy and aiohttp, which --help must not.
        from ringrift_fleet.execution.workloads.commands import load_templates

        load_templates(cfg.WORKLOADS_FILE)
    if args.gpu_vram_gb is not None and not args.gpu_type:
        raise ConfigError("--gpu-vram-gb needs --gpu-type")
    if args.gpu_type:
        key = normalize_gpu_name(args.gpu_type)
        if key == "CPU":
            raise ConfigError(f"--gpu-type {args.gpu_type!r}: use --cpu for a CPU worker")
        vram = args.gpu_vram_gb if args.gpu_vram_gb is not None else 0.0
        gpus = [Gpu(args.gpu_index or 0, args.gpu_type, vram)]
    elif args.cpu:
        gpus = []
    else:
        gpus = detected_gpus()
    plan = plan_worker(
        node=node,
        gpus=gpus,
        gpu_index=args.gpu_index,
        cpu=args.cpu,
        queues=args.queues,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
    )
    if args.dry_run:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(plan.env.items()))
        print(f"{env} {shlex.join(plan.argv)}")
        return 0
    os.environ.update(plan.env)
    sys.stdout.flush()
    os.execvp(plan.argv[0], plan.argv)
    return 0  # not reached
