"""Plugging the scheduler into a coordinator, and a coordinator process that has it.

:func:`attach` is the whole integration: a tick handler (run off the event
loop, since ledger writes block), a ``scheduler`` section in ``/status`` and a
membership listener for deaths.  ``python -m ringrift_fleet.scheduler.service``
runs a coordinator with the scheduler attached; ``ringrift-fleet up`` starts it
with ``--demo`` (small thresholds, CPU training) on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ringrift_fleet.config import P2PConfig, get_feature_flags, get_p2p_config
from ringrift_fleet.errors import FleetError
from ringrift_fleet.models import JobType
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.hosts import PROBE_EVERY_S, FleetHosts, LocalHosts, MetricsBoard
from ringrift_fleet.scheduler.settings import SchedulerPolicy

log = logging.getLogger(__name__)

# The one-machine demo: small enough that a 2-core box without a GPU goes from
# the first self-play game to a promoted model in a couple of minutes.
DEMO_MIN_GAMES = 48
DEMO_GAMES_PER_JOB = 8
DEMO_EVAL_GAMES = 24


def demo_policy(config: P2PConfig, **overrides: Any) -> SchedulerPolicy:
    from ringrift_fleet.training import TrainingThresholds

    values: dict[str, Any] = {
        "thresholds": TrainingThresholds(
            MIN_GAMES=DEMO_MIN_GAMES,
            MIN_GAMES_WHEN_STALE=DEMO_MIN_GAMES,
            STALENESS_HOURS=24.0,
            MIN_HOURS_BETWEEN_RUNS=0.0,
        ),
        "allow_cpu_training": True,
        "games_per_job": DEMO_GAMES_PER_JOB,
        "eval_games": DEMO_EVAL_GAMES,
        "retry_backoff_s": 5.0,
        "load_max": 1.0,  # the demo's own jobs saturate the 2 cores; that is not overload
        "disk_critical": 100.0,
        "prefetch": 0.0,
    }
    values.update(overrides)
    return SchedulerPolicy.from_config(config, **values)


def _celery_reader() -> Any:
    from celery.result import AsyncResult

    from ringrift_fleet.celery import app

    def read(task_id: str) -> tuple[str, Any]:
        r = AsyncResult(task_id, app=app)
        state = r.state
        return state, (r.result if state in ("SUCCESS", "FAILURE", "REVOKED") else None)

    return read


def _celery_sender() -> Any:
    from ringrift_fleet.execution.dispatch import send_job

    def send(
        job_type: JobType,
        kwargs: Mapping[str, Any],
        *,
        queue: str,
        job_id: str,
        fence: Mapping[str, Any],
    ) -> str:
        return send_job(job_type, kwargs, queue=queue, job_id=job_id, fence=fence)

    return send


def build_beat(node: Any, policy: SchedulerPolicy, hosts: Any) -> Beat:
    """A Beat on this coordinator's ledger and leadership, sending through Celery."""
    from ringrift_fleet.execution.redis_clients import redis_client, replica_wait
    from ringrift_fleet.notifications import send_webhook_notification

    client = redis_client(node.config, timeout=5)
    beat = Beat(
        ledger=node.ledger,
        leadership=node.leadership,
        redis=client,
        policy=policy,
        hosts=hosts,
        send=_celery_sender(),
        read_result=_celery_reader(),
        address=hosts.address,
        notify=send_webhook_notification,
    )
    beat.replicate = replica_wait(node.config, client)
    return beat


def attach(node: Any, policy: SchedulerPolicy | None = None, hosts: Any = None) -> Beat:
    """Run the scheduler on ``node`` (a CoordinatorNode); call before ``node.run()``.

    Consensus objects exist only once the node prepares, so the Beat is built
    lazily on the first tick.
    """
    from ringrift_fleet.execution.redis_clients import FailoverWatch, redis_client
    from ringrift_fleet.notifications import send_webhook_notification

    holder: dict[str, Beat] = {}
    policy = policy or SchedulerPolicy.from_config(node.config)
    board = MetricsBoard(redis_client(node.config, timeout=5))
    # The Sentinels' view (primary, replicas) for /status, and the broker_failover event.
    failover = FailoverWatch(node.config, notify=send_webhook_notification, client=board.redis)
    last_post = {"at": -PROBE_EVERY_S}

    def beat() -> Beat:
        if "beat" not in holder:
            directory = hosts or FleetHosts(
                node.node_id, node.config, node.inventory, node.membership, board
            )
            holder["beat"] = build_beat(node, policy, directory)
            if node.membership is not None:
                node.membership.add_listener(holder["beat"].on_membership)
        return holder["beat"]

    def post_metrics() -> None:
        """Every coordinator tells the leader how loaded its host is (every few seconds)."""
        now = time.monotonic()
        if now - last_post["at"] < PROBE_EVERY_S:
            return
        last_post["at"] = now
        from ringrift_fleet.resources import probe_resources

        try:
            board.publish(node.node_id, probe_resources(str(node.config.state_dir)))
        except Exception as exc:  # the broker may be down; scheduling goes on without figures
            log.debug("could not post metrics: %s", exc)

    def watch_broker() -> None:
        try:
            failover.poll()
        except Exception as exc:  # the view is for people; scheduling goes on without it
            log.debug("broker topology: %s", exc)

    async def on_tick() -> None:
        await asyncio.to_thread(post_metrics)
        await asyncio.to_thread(watch_broker)
        if node.ledger is None or node.leadership is None:
            return
        b = beat()
        await asyncio.to_thread(b.tick)

    node.add_tick_handler(on_tick)
    node.add_status_section("scheduler", lambda: holder["beat"].status() if holder else {})
    node.add_status_section(
        "broker",
        lambda: {
            **(holder["beat"].broker_status() if holder else {}),
            "topology": failover.status(),
        },
    )
    return holder.get("beat")  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ringrift_fleet.scheduler.service",
        description="A coordinator with the scheduler attached.",
    )
    ap.add_argument("--node", help="this host's name (default NODE_ID)")
    ap.add_argument("--hosts-file", help="distributed_hosts.yaml (default HOSTS_FILE)")
    ap.add_argument("--standalone", action="store_true", help="no inventory: a fleet of one")
    ap.add_argument("--demo", action="store_true", help="one-machine demo thresholds")
    ap.add_argument("--slots", type=int, default=1, help="without an inventory: worker slots")
    ap.add_argument("--gpu-type", default="CPU", help="without an inventory: this host's GPU")
    ap.add_argument("--gpu-vram-gb", type=float, default=0.0, help="… and its VRAM")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except FleetError as exc:
        print(f"scheduler: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ringrift_fleet.config import check_state_dirs, resolve_hosts_file, unknown_env_warnings
    from ringrift_fleet.consensus.voters import load_inventory
    from ringrift_fleet.node import CoordinatorNode

    config = get_p2p_config()
    for warning in unknown_env_warnings():
        log.warning(warning)
    node_id = args.node or config.NODE_ID
    hosts_file = resolve_hosts_file(args.hosts_file, standalone=args.standalone)
    check_state_dirs(config)
    inventory = load_inventory(hosts_file) if hosts_file is not None else None
    config = config.replace(NODE_ID=node_id, HOSTS_FILE=hosts_file or "")
    node = CoordinatorNode(config, inventory, node_id, flags=get_feature_flags())
    policy = demo_policy(config) if args.demo else SchedulerPolicy.from_config(config)
    hosts = None
    if inventory is None:
        from ringrift_fleet.resources import probe_resources

        hosts = LocalHosts(
            node_id,
            config,
            slots=args.slots,
            gpu=args.gpu_type,
            vram_gb=args.gpu_vram_gb,
            probe=lambda: probe_resources(config.STATE_DIR),
        )
    attach(node, policy, hosts)
    asyncio.run(_serve(node))
    return 0


async def _serve(node: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()


if __name__ == "__main__":
    sys.exit(main())
